"""A wrong Qdrant URL or key: one line naming the URL, the status and what to check.

A real HTTP server on 127.0.0.1 answers every request with one status; the real
qdrant-client talks to it (no Qdrant server can run here, so errors are what is tested).
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from llm2vec_rag.cli import main
from llm2vec_rag.integrations._qdrant_config import QdrantServerError
from llm2vec_rag.integrations.qdrant import QdrantIndexer

KEY = "sekret-key-4242"


@pytest.fixture
def answering():
    """``answering(status)`` -> URL of a loopback server answering ``status`` to everything."""
    servers = []

    def start(status: int) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"status": {"error": "nope"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _reply

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.parametrize("status, hint", [(401, "API key"), (403, "permission"),
                                          (404, "check the URL")])
def test_error_status_is_one_clear_line(tiny_encoder, answering, status, hint):
    url = answering(status)
    with QdrantIndexer(tiny_encoder, url=url, api_key=KEY, retries=0) as ix:
        with pytest.raises(QdrantServerError) as err:
            ix.index(["a text"], show_progress=False)
    msg = str(err.value)
    assert url in msg and f"HTTP {status}" in msg and hint in msg and KEY not in msg
    assert "\n" not in msg and err.value.__cause__ is None


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_cli_prints_one_line_without_a_traceback_or_the_key(tiny_model_dir, answering,
                                                            tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QDRANT_API_KEY", KEY)
    url = answering(401)
    (tmp_path / "a.txt").write_text("hello", encoding="utf-8")
    flags = ["--model", tiny_model_dir(), "--device", "cpu", "--qdrant-url", url,
             "--retries", "0"]
    assert main(["index", str(tmp_path / "a.txt"), *flags, "--no-progress"]) == 1
    assert main(["search", "hello", *flags]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 2 and all(f"{url}" in line and "HTTP 401" in line for line in lines)
    assert "Traceback" not in captured.err and KEY not in captured.err + captured.out


def test_connection_refused_names_the_url(tiny_model_dir, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert main(["search", "x", "--model", tiny_model_dir(), "--device", "cpu",
                 "--qdrant-url", url, "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert url in err and "after 1 attempts" in err and "Traceback" not in err


def test_negative_retries_are_refused(tiny_encoder, tiny_model_dir, capsys):
    with pytest.raises(SystemExit):
        main(["search", "x", "--model", tiny_model_dir(), "--retries", "-1"])
    assert "--retries: must be >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="retries"):
        QdrantIndexer(tiny_encoder, url="http://127.0.0.1:1", retries=-1)
    with pytest.raises(TypeError, match="batch_size"):
        QdrantIndexer(tiny_encoder, path=":memory:", batch_size=1.5)
