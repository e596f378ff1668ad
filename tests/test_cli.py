"""``llm2vec-rag encode``: file or stdin in, .npy or JSONL out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main

TEXTS = ["The quick brown fox.", "Qdrant stores vectors.", "héllo 😀"]


def test_encode_file_to_npy(tiny_model_dir, tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "vecs.npy"
    assert main(["encode", str(src), "-o", str(out), "--model", tiny_model_dir("llama"),
                 "--instruction", "Retrieve passages"]) == 0
    expected = LLM2Vec.from_pretrained(tiny_model_dir("llama")).encode(
        TEXTS, instruction="Retrieve passages")
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)


def test_encode_jsonl_to_jsonl(tiny_model_dir, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS), encoding="utf-8")
    out = tmp_path / "vecs.jsonl"
    assert main(["encode", str(src), "--field", "body", "-o", str(out),
                 "--model", tiny_model_dir("llama"), "--normalize"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    assert abs(np.linalg.norm(rows[0]["embedding"]) - 1) < 1e-5


def test_encode_stdin_to_stdout(tiny_model_dir):
    done = subprocess.run(
        [sys.executable, "-m", "llm2vec_rag.cli", "encode", "--model", tiny_model_dir("llama")],
        input="first text\nsecond text\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 2 and len(rows[0]["embedding"]) == 64


ENCODE_CHILD = """
import json, os, sys
from llm2vec_rag.cli import main
imported_torch = "torch" in sys.modules
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch_before_main": imported_torch,
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                  "modules": sorted(sys.modules)}))
"""
# What encoding one file with a cached model never needs: the other commands' packages, the
# adapter merge (peft), GGUF parsing and the optional integrations.
NOT_FOR_ENCODE = ("llm2vec_rag.training", "llm2vec_rag.export", "llm2vec_rag.integrations",
                  "llm2vec_rag.serve", "peft", "gguf", "pandas", "datasets", "qdrant_client",
                  "onnxruntime", "ray", "fastapi")


def test_a_cached_encode_imports_only_what_it_needs(tiny_model_dir, tmp_path):
    """And it lets OpenMP threads wait passively (before torch loads OpenMP), unless the
    environment chose a policy."""
    from tiny import make_lora_adapter

    base = tiny_model_dir("llama")
    adapter = make_lora_adapter(base, str(tmp_path / "adapter"), 5)
    src = tmp_path / "one.txt"
    src.write_text("hello world\n", encoding="utf-8")

    def encode(omp_wait_policy: str | None) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env["LLM2VEC_RAG_CACHE"] = str(tmp_path / "cache")
        if omp_wait_policy is not None:
            env["OMP_WAIT_POLICY"] = omp_wait_policy
        done = subprocess.run(
            [sys.executable, "-c", ENCODE_CHILD, "encode", str(src), "-o",
             str(tmp_path / "out.npy"), "--model", base, "--adapter", adapter, "--cache"],
            capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    first = encode("ACTIVE")  # builds the entry: merges the adapter
    assert "peft" in first["modules"] and first["omp_wait_policy"] == "ACTIVE"  # the user's
    second = encode(None)  # loads the entry
    assert second["code"] == 0 and "torch" in second["modules"]
    assert not second["torch_before_main"]  # so OpenMP reads the policy main() sets
    assert second["omp_wait_policy"] == "PASSIVE"
    needless = [m for m in second["modules"]
                if any(m == n or m.startswith(n + ".") for n in NOT_FOR_ENCODE)]
    assert not needless, needless
    expected = LLM2Vec.from_pretrained(base, [adapter]).encode(["hello world"])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)


def test_serve_keeps_the_openmp_wait_policy_of_its_environment():
    """The server's numbers were measured with OpenMP's own policy: main() leaves it unset."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    child = ("import os, sys\nfrom llm2vec_rag.cli import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\nprint(os.environ.get('OMP_WAIT_POLICY'))")
    runs = {command: subprocess.run([sys.executable, "-c", child, command, "--help"],
                                    capture_output=True, text=True, timeout=120, env=env)
            for command in ("serve", "encode")}
    assert runs["serve"].stdout.splitlines()[-1] == "None"
    assert runs["encode"].stdout.splitlines()[-1] == "PASSIVE"


def test_clear_errors(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"body": "x"}) + "\n")
    assert main(["encode", str(src), "--model", tiny_model_dir("llama")]) == 2
    assert "no 'text' field" in capsys.readouterr().err
    good = tmp_path / "texts.txt"
    good.write_text("x\n")
    assert main(["encode", str(good), "--model", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_onnx_with_adapters_is_refused(tmp_path, capsys):
    """An ONNX export has its adapters fused already: --adapter with --onnx is a mistake."""
    good = tmp_path / "texts.txt"
    good.write_text("x\n")
    assert main(["encode", str(good), "--onnx", "--model", str(tmp_path),
                 "--adapter", str(tmp_path / "lora")]) == 2
    assert "adapters cannot be applied to an ONNX export" in capsys.readouterr().err


def test_bad_input_is_one_line_but_a_bug_shows_its_traceback(tmp_path, capsys, monkeypatch):
    from llm2vec_rag import cli

    assert main(["encode", str(tmp_path / "t.txt"), "-o", str(tmp_path / "v.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write .txt files" in err  # bad input: one line

    def bug(args):  # what a programming error in a command looks like
        return len(None)

    monkeypatch.setattr(cli, "cmd_encode", bug)  # the parser binds the command when built
    with pytest.raises(TypeError, match="NoneType"):
        main(["encode", str(tmp_path / "t.txt")])
    monkeypatch.undo()
    monkeypatch.setenv("LLM2VEC_RAG_DEBUG", "1")  # every error with its traceback
    with pytest.raises(ValueError, match="cannot write"):
        main(["encode", str(tmp_path / "t.txt"), "-o", str(tmp_path / "v.txt")])
