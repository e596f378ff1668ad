"""glibc's malloc tuning (llm2vec_rag.allocator) is opt-in for library users and on in the CLI.

Counted, not timed: the minor page faults of a workload shaped like a forward pass (a layer's
worth of few-MB blocks allocated, freed, allocated again), each in a fresh process.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = """
import json, resource, sys
import numpy as np
{setup}
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
blocks = [np.ones(1 << 19) for _ in range(16)]  # 16 x 4 MiB, as one layer's activations
del blocks
start = faults()
for _ in range(5):
    blocks = [np.ones(1 << 19) for _ in range(16)]
    del blocks
print(json.dumps({{"faults": faults() - start, "applied": {applied}}}))
"""


def run(setup: str = "", applied: str = "None", **env: str) -> dict:
    code = WORKLOAD.format(setup=setup, applied=applied)
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "LLM2VEC_RAG_MALLOC"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**environ, **env, "PYTHONPATH": HERE}, check=True, timeout=300)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stderr": out.stderr}


RETAIN = "from llm2vec_rag.allocator import retain_freed_memory\napplied = retain_freed_memory()"
FROM_ENV = "from llm2vec_rag.allocator import tune_from_env\napplied = tune_from_env()"


def test_freed_blocks_are_reused_instead_of_faulted_back_in():
    plain = run()
    kept = run(RETAIN, "applied")
    assert kept["applied"] is True
    # 5 rounds x 64 MiB: tens of thousands of pages faulted in again by default; kept, none
    assert plain["faults"] > 10_000
    assert kept["faults"] < plain["faults"] / 20


def test_env_opt_in_and_the_users_own_malloc_settings_are_respected():
    assert run(FROM_ENV, "applied")["applied"] is False  # a library default: leave malloc be
    assert run(FROM_ENV, "applied", LLM2VEC_RAG_MALLOC="default")["applied"] is False
    assert run(FROM_ENV, "applied", LLM2VEC_RAG_MALLOC="tuned")["applied"] is True
    assert run(FROM_ENV, "applied", LLM2VEC_RAG_MALLOC="retain")["applied"] is True  # old name
    # a misspelt choice leaves malloc alone (with a warning) rather than guessing
    typo = run(FROM_ENV, "applied", LLM2VEC_RAG_MALLOC="tunde")
    assert typo["applied"] is False and "LLM2VEC_RAG_MALLOC='tunde'" in typo["stderr"]
    own = run(RETAIN, "applied", MALLOC_TRIM_THRESHOLD_="1048576")
    assert own["applied"] is False
    assert own["faults"] > 10_000  # the user's 1 MiB trim threshold still rules


def test_an_encoder_leaves_malloc_alone_unless_asked(tiny_model_dir):
    folder = tiny_model_dir("llama")
    setup = (f"from llm2vec_rag import LLM2Vec\n"
             f"LLM2Vec.from_pretrained({folder!r}, device='cpu').encode(['a b c'])")
    plain = run()["faults"]
    assert run(setup)["faults"] > plain / 2  # creating an encoder changed nothing
    assert run(setup, LLM2VEC_RAG_MALLOC="tuned")["faults"] < plain / 20


def test_the_cli_turns_the_tuning_on(tiny_model_dir, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("a b c\n", encoding="utf-8")
    setup = (f"from llm2vec_rag.cli import main\n"
             f"assert main(['encode', {str(texts)!r}, '--model', {tiny_model_dir('llama')!r}, "
             f"'--device', 'cpu', '-o', {str(tmp_path / 'v.npy')!r}]) == 0")
    plain = run()["faults"]
    assert run(setup)["faults"] < plain / 20
    assert run(setup, LLM2VEC_RAG_MALLOC="default")["faults"] > plain / 2
