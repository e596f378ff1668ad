"""A real ``llm2vec-rag serve`` subprocess on 127.0.0.1 for the server tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

QUERY_INSTRUCTION = "Given a question, retrieve passages that answer it"
KEY = "test-key-5f1c9e"  # checked never to appear in the server's log


def save_served_model(tiny_dir: str, out: str) -> str:
    """The tiny Llama with a query instruction and a short max_length (truncation reachable)."""
    from llm2vec_rag import LLM2Vec

    model = LLM2Vec.from_pretrained(tiny_dir, max_length=64, query_instruction=QUERY_INSTRUCTION)
    model.save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``with Server(model_dir, "--max-queue", "4") as srv: httpx.get(srv.url + "/health")``"""

    def __init__(self, model_dir: str, *flags: str, key: str | None = KEY,
                 log_path: str | None = None, name: str = "tiny") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key, self.name = key, name
        self.log_path = log_path or os.path.join(model_dir, f"server-{self.port}.log")
        env = {k: v for k, v in os.environ.items() if k != "LLM2VEC_RAG_API_KEY"}
        if key:
            env["LLM2VEC_RAG_API_KEY"] = key
        env.setdefault("OMP_NUM_THREADS", "1")
        self.cmd = [sys.executable, "-m", "llm2vec_rag.cli", "serve", "--model", model_dir,
                    "--served-model-name", name, "--host", "127.0.0.1",
                    "--port", str(self.port), "--access-log", *flags]
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def start(self, timeout: float = 180.0) -> Server:
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not healthy within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def metric(self, name: str) -> float:
        """The value of one sample line of /metrics (``name`` with its labels)."""
        text = httpx.get(self.url + "/metrics", headers=self.headers, timeout=10).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(f"{name} not in /metrics")

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
