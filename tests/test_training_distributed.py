"""Every training stage under ``torchrun`` and ``accelerate launch`` with two processes (DDP over
gloo on CPU), through the real CLI, on a tiny Llama written to tmp_path.

What could break under DDP and is checked here: each process trains alone (world size 1)
instead of joining the job; both processes write the log/record/adapter; the data is not
sharded; in-batch negatives stay per process; the loss or gradient is scaled by the number of
processes; GradCache's ``no_sync`` chunks; resuming a checkpoint. The contrastive stages must
give the very adapter a single process gives with the same global batch (dropout off, so
that both runs draw no random numbers): that holds only if each process takes its own half of
every global batch and the embeddings are gathered with their gradients.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_training_stages import write_pairs

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from llm2vec_rag.training.run_record import RUN_FILE
from llm2vec_rag.training.trainer import ADAPTER_FILE, LOG_CSV, LOSS_PNG, read_log
from tiny import CORPUS

pytestmark = pytest.mark.slow  # ~25 s per two-process launch on 2 CPU cores

BIN = os.path.dirname(sys.executable)
PROBES = ["The quick brown fox.", "Qdrant stores vectors.", "A contrastive loss."]
COMMON = ["report_to=none", "logging_steps=1", "lora_r=8", "lora_alpha=16", "max_length=32",
          "adapter_dtype=float32", "lr_scheduler_type=constant", "warmup_steps=0"]
# One script that runs several `llm2vec-rag train` commands in one launch (one process-group
# start-up instead of three); each command is exactly what `-m llm2vec_rag.cli` runs.
DRIVER = """import json, sys
from llm2vec_rag.cli import main
for argv in json.load(open(sys.argv[1])):
    if main(argv):
        sys.exit(1)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cmd: list[str], cwd, stages: int = 1) -> float:
    """Run a launcher command; fail with its output unless it exits 0 and rank 0 alone
    reported each of the ``stages`` adapters. Returns the seconds it took."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert done.stderr.count("adapter written to") == stages, done.stderr[-3000:]
    return time.perf_counter() - start


def stage(name: str, base: str, data: str, out, *extra: str) -> list[str]:
    return ["train", name, "--config", f"{name}-cpu", f"model={base}", f"data=[{data}]",
            f"output_dir={out}", *COMMON, *extra]


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    (folder / "corpus.txt").write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    (folder / "driver.py").write_text(DRIVER, encoding="utf-8")
    return {"base": tiny_model_dir("llama", "bytelevel"), "dir": folder,
            "corpus": str(folder / "corpus.txt"), "pairs": write_pairs(folder / "pairs.jsonl")}


def plans(inputs, root, batch: int, sup_steps: int, mntp=None) -> tuple[list, dict]:
    """The three stages' commands (per-process ``batch``) and their output folders."""
    base, corpus, pairs = inputs["base"], inputs["corpus"], inputs["pairs"]
    outs = {k: root / k for k in ("mntp", "simcse", "supervised")}
    mntp = mntp or outs["mntp"]
    argvs = [
        stage("mntp", base, corpus, outs["mntp"], f"batch_size={batch}", "max_steps=4",
              "learning_rate=2e-2", "mask_probability=0.3", "save_steps=100"),
        stage("simcse", base, corpus, outs["simcse"], f"adapters=[{mntp}]", f"batch_size={batch}",
              "max_steps=3", "learning_rate=5e-3", "dropout=0.0", "save_steps=100"),
        stage("supervised", base, pairs, outs["supervised"], f"adapters=[{mntp}]",
              f"batch_size={batch}", f"max_steps={sup_steps}", "learning_rate=5e-3",
              "lora_dropout=0.0", "grad_cache_chunk_size=2", "save_steps=2"),
    ]
    return argvs, outs


def run_plan(launcher: list[str], inputs, argvs, name: str) -> float:
    plan = inputs["dir"] / f"{name}.json"
    plan.write_text(json.dumps([[str(a) for a in argv] for argv in argvs]), encoding="utf-8")
    return launch([*launcher, str(inputs["dir"] / "driver.py"), str(plan)], inputs["dir"],
                  stages=len(argvs))


@pytest.fixture(scope="module")
def torchrun_runs(inputs):
    """All stages under torchrun; supervised stops at step 2 and a second launch (the plain
    ``-m llm2vec_rag.cli`` command) resumes it to step 4."""
    torchrun = [f"{BIN}/torchrun", "--standalone", "--nproc_per_node", "2"]
    argvs, outs = plans(inputs, inputs["dir"] / "torchrun", batch=4, sup_steps=2)
    run_plan(torchrun, inputs, argvs, "torchrun")
    assert os.path.isdir(outs["supervised"] / "checkpoint-2")
    resume = [str(a) for a in argvs[2]] + ["max_steps=4"]
    launch([*torchrun, "-m", "llm2vec_rag.cli", *resume], inputs["dir"])
    return outs


@pytest.fixture(scope="module")
def one_process(inputs, torchrun_runs):
    """SimCSE and supervised in this process with the same global batch (8 = 2 x 4)."""
    argvs, outs = plans(inputs, inputs["dir"] / "single", batch=8, sup_steps=4,
                        mntp=torchrun_runs["mntp"])
    for argv in argvs[1:]:
        assert main([str(a) for a in argv]) == 0
    return outs


def adapter(folder) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, ADAPTER_FILE))


def assert_same_adapter(a, b, atol=2e-5):
    x, y = adapter(a), adapter(b)
    assert x.keys() == y.keys()
    for key in x:
        torch.testing.assert_close(x[key], y[key], atol=atol, rtol=1e-4, msg=key)


def steps(folder) -> list[int]:
    return [int(r["step"]) for r in read_log(os.path.join(folder, LOG_CSV))]


def losses(folder) -> list[float]:
    return [float(r["loss"]) for r in read_log(os.path.join(folder, LOG_CSV))]


def test_torchrun_trains_every_stage_and_only_rank_zero_writes(inputs, torchrun_runs):
    base = inputs["base"]
    expected = {"mntp": 4, "simcse": 3, "supervised": 4}
    for name, folder in torchrun_runs.items():
        # one row per step: a second writer would have doubled them
        assert steps(folder) == list(range(1, expected[name] + 1)), name
        for f in (ADAPTER_FILE, "adapter_config.json", RUN_FILE, LOSS_PNG,
                  "training_config.yaml", "llm2vec_config.json"):
            assert os.path.isfile(os.path.join(folder, f)), (name, f)
        assert np.isfinite(losses(folder)).all()
        # LoRA B starts at zero: a trained adapter has moved it
        assert any(float(v.abs().max()) > 0 for k, v in adapter(folder).items()
                   if "lora_B" in k), name
    curve = losses(torchrun_runs["mntp"])
    assert np.mean(curve[-2:]) < np.mean(curve[:2]), curve
    mntp = torchrun_runs["mntp"]
    plain = LLM2Vec.from_pretrained(base, device="cpu").encode(PROBES)
    with_mntp = LLM2Vec.from_pretrained(base, adapters=[str(mntp)], device="cpu").encode(PROBES)
    both = LLM2Vec.from_pretrained(base, adapters=[str(mntp), str(torchrun_runs["supervised"])],
                                   device="cpu").encode(PROBES)
    assert not np.allclose(plain, with_mntp, atol=1e-3)
    assert not np.allclose(with_mntp, both, atol=1e-3)


def test_two_processes_give_the_one_process_result_of_the_same_global_batch(
        torchrun_runs, one_process):
    """Each process embeds half of every global batch; the loss sees all of it (gathered).

    Supervised (resumed at step 2, GradCache chunks under ``no_sync``): the same adapter.
    SimCSE without dropout has near-zero gradients (the two views are identical), which Adam
    turns into float-noise-sized updates, so only its losses are compared: over 8 in-batch
    negatives, which they depend on.
    """
    assert_same_adapter(torchrun_runs["supervised"], one_process["supervised"])
    for name in ("simcse", "supervised"):
        np.testing.assert_allclose(losses(torchrun_runs[name]), losses(one_process[name]),
                                   rtol=1e-4, atol=1e-5, err_msg=name)


def test_accelerate_launch_trains_every_stage_like_torchrun(inputs, torchrun_runs):
    """``accelerate launch`` (2 processes, no resume) ends with torchrun's adapters."""
    accelerate = [f"{BIN}/accelerate", "launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(free_port())]
    argvs, outs = plans(inputs, inputs["dir"] / "accelerate", batch=4, sup_steps=4)
    run_plan(accelerate, inputs, argvs, "accelerate")
    for name, folder in outs.items():
        assert steps(folder) == steps(torchrun_runs[name]), name
        assert_same_adapter(folder, torchrun_runs[name])
