"""Broken files and environments give one error naming the problem, the file and the fix.

From the CLI: one ``llm2vec-rag CMD: error: ...`` line and exit code 2, never a traceback;
from the library: one exception carrying the same message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from tiny import make_lora_adapter

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: refused at once, like a hub offline


def _error_line(capsys) -> str:
    """The CLI's stderr: exactly one non-warning line, the error (no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


def _encode_cli(tmp_path, *flags) -> int:
    src = tmp_path / "in.txt"
    src.write_text("hello world\n", encoding="utf-8")
    return main(["encode", str(src), "-o", str(tmp_path / "v.npy"), *flags])


def _truncate(path) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_lora_adapter(tiny_model_dir("llama"), str(tmp_path_factory.mktemp("lora")), 1)


def test_truncated_model_safetensors_names_the_file(tiny_model_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir("llama"), tmp_path / "model")
    _truncate(model / "model.safetensors")
    assert _encode_cli(tmp_path, "--model", str(model)) == 2
    line = _error_line(capsys)
    assert f"{model / 'model.safetensors'}: not a readable safetensors file" in line
    assert "truncated or corrupt" in line and "Re-download" in line
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors"):
        LLM2Vec.from_pretrained(model)


def test_truncated_adapter_safetensors_names_the_file(tiny_model_dir, adapter_dir, tmp_path,
                                                      capsys):
    adapter = shutil.copytree(adapter_dir, tmp_path / "adapter")
    _truncate(adapter / "adapter_model.safetensors")
    assert _encode_cli(tmp_path, "--model", tiny_model_dir("llama"),
                       "--adapter", str(adapter)) == 2
    line = _error_line(capsys)
    assert f"{adapter / 'adapter_model.safetensors'}: not a readable safetensors file" in line


@pytest.mark.parametrize("content, where", [('{"r": 4,\n  oops}', "invalid JSON at line 2, "
                                                                  "column 3"),
                                             ("[1, 2]", "expected a JSON object")])
def test_bad_adapter_config_names_the_file_and_line(tiny_model_dir, adapter_dir, tmp_path,
                                                    capsys, content, where):
    adapter = shutil.copytree(adapter_dir, tmp_path / "adapter")
    (adapter / "adapter_config.json").write_text(content, encoding="utf-8")
    assert _encode_cli(tmp_path, "--model", tiny_model_dir("llama"),
                       "--adapter", str(adapter)) == 2
    line = _error_line(capsys)
    assert f"{adapter / 'adapter_config.json'}: {where}" in line
    assert "Restore the adapter's adapter_config.json" in line
    with pytest.raises(ValueError, match="adapter_config.json: "):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), [adapter])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_says_use_cpu(tiny_model_dir, tmp_path, capsys):
    assert _encode_cli(tmp_path, "--model", tiny_model_dir("llama"), "--device", "cuda") == 2
    line = _error_line(capsys)
    assert "device 'cuda': CUDA is not available" in line
    assert "--device cpu" in line and "CUDA build of torch" in line
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), device="cuda:0")


@pytest.mark.parametrize("name, says", [("model.onnx", "ONNX Runtime cannot read this model"),
                                        ("tokenizer.json", "not a readable tokenizer file"),
                                        ("tokenizer_config.json", "invalid JSON at line ")])
def test_corrupt_onnx_folder_names_the_file(llama_onnx, tmp_path, capsys, name, says):
    from llm2vec_rag.export.runtime import OnnxLLM2Vec

    folder = shutil.copytree(llama_onnx, tmp_path / "export")
    _truncate(folder / name)
    assert _encode_cli(tmp_path, "--onnx", "--model", str(folder)) == 2
    line = _error_line(capsys)
    assert f"{folder / name}: {says}" in line and "Re-export" in line
    with pytest.raises(ValueError, match=f"{name}: "):
        OnnxLLM2Vec.from_pretrained(folder)


# -- a local-looking folder that does not exist, and a hub that cannot be reached ----------
@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """The hub endpoint refuses connections (as on a machine without network)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(tmp_path)


def test_missing_relative_folder_is_not_found_at_once(hub_offline, tmp_path, capsys):
    (tmp_path / "models").mkdir()  # its first part exists here: clearly meant as a path
    start = time.perf_counter()
    assert _encode_cli(tmp_path, "--model", "models/mine") == 2
    assert time.perf_counter() - start < 5
    line = _error_line(capsys)
    assert "Model folder 'models/mine' does not exist" in line
    assert _encode_cli(tmp_path, "--model", "a/b/c") == 2  # not a hub id either
    assert "Model folder 'a/b/c' does not exist" in _error_line(capsys)


def test_hub_id_with_the_hub_unreachable_fails_fast_in_one_line(hub_offline, tmp_path,
                                                                 tiny_model_dir, capsys):
    start = time.perf_counter()
    assert _encode_cli(tmp_path, "--model", "no-such-org/no-such-model") == 2
    assert time.perf_counter() - start < 5  # huggingface_hub alone retries for over a minute
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no retry log
    assert ("model 'no-such-org/no-such-model' is neither a local folder nor reachable on the "
            "Hugging Face hub") in err
    assert "Check the path" in err and "HF_HUB_OFFLINE=1" in err
    start = time.perf_counter()
    with pytest.raises(OSError, match="adapter 'org/adapter' is neither a local folder"):
        LLM2Vec.from_pretrained(tiny_model_dir("llama"), ["org/adapter"])
    assert time.perf_counter() - start < 5


# -- a full disk while indexing into the embedded store ------------------------------------
FULL_DISK_RUN = textwrap.dedent("""
    import resource, signal, sys
    from llm2vec_rag.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[2:]))
""")


def test_full_disk_while_indexing_says_what_was_committed_and_resumes(tiny_model_dir,
                                                                      tmp_path):
    from qdrant_client import QdrantClient

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i} " + "the quick "
                                        "brown fox jumps over the lazy dog " * 4}) + "\n"
                            for i in range(120)), encoding="utf-8")
    store = tmp_path / "store"
    args = ["index", str(docs), "--model", tiny_model_dir("llama"), "--qdrant-path",
            str(store), "--batch-size", "8", "--no-progress"]
    run = subprocess.run([sys.executable, "-c", FULL_DISK_RUN, "60000", *args],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f"llm2vec-rag index: error: The embedded Qdrant store {store} "
                           f"could not write: ")
    assert "full disk" in line or "disk is full" in line
    assert "re-run the same command: it resumes" in line
    whole = int(line.split("Committed before the failure: ")[1].split(" documents")[0])
    held = int(line.split("the collection now holds ")[1].split(" points")[0])
    assert 0 < whole <= held < 120
    client = QdrantClient(path=str(store))  # what the message says is what is there
    assert client.count("docs", exact=True).count == held
    client.close()
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    with QdrantIndexer(LLM2Vec.from_pretrained(tiny_model_dir("llama")), path=str(store),
                       batch_size=8) as ix:
        report = ix.index(docs, show_progress=False)
        assert report.unchanged >= whole and report.indexed + report.unchanged == 120
        assert ix.count() == 120


# -- training configs ----------------------------------------------------------------------
def test_invalid_yaml_config_names_file_line_and_column(tmp_path, capsys):
    cfg = tmp_path / "mntp.yaml"
    cfg.write_text("model: m.gguf\ndata: [a.txt\nmax_steps: 3\n", encoding="utf-8")
    assert main(["train", "mntp", "--config", str(cfg)]) == 2
    line = _error_line(capsys)
    assert f"{cfg}: invalid YAML at line 3, column 10" in line
    assert "while parsing a flow sequence at line 2, column 7" in line


@pytest.mark.parametrize("overrides, says", [
    ({"data": 5}, "data: expected a string (str, or a list of them for data), got 5 (int)"),
    ({"data": ["a.txt", {"b": 1}]}, "data[1]: expected a string"),
    ({"adapters": 3}, "adapters: expected a string"),
    ({"text_field": None}, "text_field: expected str, got null")])
def test_wrong_typed_config_field_names_field_and_type(overrides, says):
    from llm2vec_rag.training.config import load_config

    with pytest.raises(ValueError, match=re.escape(says)):
        load_config("mntp", {"model": "m.gguf", "data": ["a.txt"]}, overrides)


def test_wrong_typed_override_from_the_cli(tmp_path, capsys):
    assert main(["train", "mntp", "--config", "mntp-cpu", "model=m.gguf", "data=5"]) == 2
    assert "data: expected a string" in _error_line(capsys)


# -- texts given to `llm2vec-rag encode` ---------------------------------------------------
@pytest.mark.parametrize("content, says", [
    (b'{"text": "a"}\n{"text": "b",}\n', "invalid JSON at column 14"),
    (b'{"text": "a"}\n["b"]\n', 'expected a JSON object {"text": ...}, got a list'),
    (b'{"text": "a"}\n{"text": 7}\n', "'text' is int, not a string")])
def test_bad_jsonl_line_names_file_and_line(tiny_model_dir, tmp_path, capsys, content, says):
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    out = tmp_path / "v.npy"
    assert main(["encode", str(src), "-o", str(out), "--model", tiny_model_dir("llama")]) == 2
    line = _error_line(capsys)
    assert f"{src}:2: {says}" in line
    assert not out.exists()


def test_latin1_text_file_names_file_and_line(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_bytes("first line\nsecond\ncafé au lait\n".encode("latin-1"))
    assert main(["encode", str(src), "--model", tiny_model_dir("llama")]) == 2
    line = _error_line(capsys)
    assert f"{src}:3: not UTF-8 text (byte 3 of the line" in line
    assert "iconv -f latin1 -t utf-8" in line


@pytest.mark.parametrize("data", [b"hello", [b"hello"], ["ok", bytearray(b"x")]])
def test_bytes_say_decode_first_in_encode_and_encode_iter(tiny_encoder, data):
    with pytest.raises(TypeError, match="decode (it|them) first"):
        tiny_encoder.encode(data)
    if isinstance(data, bytes):
        with pytest.raises(TypeError, match="not one bytes: wrap it in a list"):
            tiny_encoder.encode_iter(data)
    else:
        with pytest.raises(TypeError, match="decode them first"):
            list(tiny_encoder.encode_iter(data))
