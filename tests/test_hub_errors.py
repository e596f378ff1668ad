"""A hub that cannot be reached and a folder that is not a model each fail in one line that
says what to do, whatever HTTP library huggingface_hub is built on (httpx in 1.x, httpx2 in
2.x: the hub-unreachable check once caught only httpx's errors)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from llm2vec_rag import LLM2Vec


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(tmp_path, *args, env_extra=None):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0",
           **(env_extra or {})}
    env.pop("HF_HUB_CACHE", None)
    texts = tmp_path / "in.txt"
    texts.write_text("hello\n")
    return subprocess.run([sys.executable, "-m", "llm2vec_rag.cli", "encode", str(texts),
                           "-o", str(tmp_path / "out.npy"), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_hub_unreachable_is_one_line_with_the_offline_advice(tmp_path):
    """The real CLI, the real huggingface_hub, an endpoint that refuses connections."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    proc = run_cli(tmp_path, "--model", "no-such-org/no-such-model",
                   env_extra={"HF_ENDPOINT": endpoint})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'no-such-org/no-such-model' is neither a local folder nor reachable" in lines[0]
    assert endpoint in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]


def test_hub_unreachable_through_httpx2(monkeypatch):
    """huggingface_hub 2.x talks through httpx2: its ConnectError gets the same one line."""
    httpx2 = pytest.importorskip("httpx2")
    import huggingface_hub
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.devnull + "-no-cache")
    huggingface_hub.set_client_factory(lambda: httpx2.Client(follow_redirects=True))
    try:
        with pytest.raises(OSError, match="neither a local folder nor reachable") as err:
            LLM2Vec.from_pretrained("no-such-org/httpx2-model")
    finally:
        huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    message = str(err.value)
    assert "ConnectError" in message and "HF_HUB_OFFLINE=1" in message
    assert "\n" not in message


def test_folder_that_is_not_a_model(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match="is not a model folder") as err:
        LLM2Vec.from_pretrained(str(folder))
    assert "config.json" in str(err.value) and "sentencepiece" not in str(err.value)
    (folder / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match="holds 'model.gguf': pass that file's path"):
        LLM2Vec.from_pretrained(str(folder))
    proc = run_cli(tmp_path, "--model", str(folder))
    assert proc.returncode == 2 and "is not a model folder" in proc.stderr
    assert "Traceback" not in proc.stderr and "sentencepiece" not in proc.stderr


def test_model_folder_without_tokenizer(tmp_path, tiny_model_dir):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    src = tiny_model_dir("llama")
    for name in ("config.json", "model.safetensors"):
        os.link(os.path.join(src, name), folder / name)
    with pytest.raises(FileNotFoundError, match="holds config.json but no tokenizer"):
        LLM2Vec.from_pretrained(str(folder))
