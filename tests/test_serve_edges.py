"""The server at its edges (issue 31): start-up validation, the API key, hostile bodies, one
truncation rule for both routes, slow clients, and shutdown under load. Real servers on
127.0.0.1, raw sockets where a client misbehaves; every wait is bounded."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from serve_util import KEY, Server, free_port

from tiny import CORPUS

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

WORDS = " ".join(CORPUS).split()


@pytest.fixture(scope="module")
def server(served_dir):
    srv = Server(served_dir, "--max-chars", "2000", "--headers-timeout", "1",
                 "--body-timeout", "2").start()
    yield srv
    srv.stop()


def serve_cli(*flags: str, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "LLM2VEC_RAG_API_KEY"},
           "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "llm2vec_rag.cli", "serve", "--host",
                           "127.0.0.1", *flags], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.parametrize("flags, message", [
    (("--port", "70000"), "--port must be between 0 and 65535, got 70000"),
    (("--graceful-timeout", "-5"), "--graceful-timeout must be >= 0, got -5"),
    (("--headers-timeout", "0"), "--headers-timeout must be > 0"),
])
def test_bad_flags_are_one_line_errors_before_loading(served_dir, flags, message):
    out = serve_cli("--model", served_dir, *flags)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_token_budget_below_max_length_is_refused_at_start(served_dir):
    out = serve_cli("--model", served_dir, "--port", str(free_port()), "--max-batch-tokens", "1")
    assert out.returncode == 2
    assert "--max-batch-tokens 1 is smaller than the model's max_length 64" in out.stderr
    assert "Traceback" not in out.stderr.split("llm2vec-rag serve: error")[-1]


def test_an_empty_api_key_refuses_to_start_and_says_how_to_disable_auth(served_dir):
    out = serve_cli("--model", served_dir, env={"LLM2VEC_RAG_API_KEY": ""})
    assert out.returncode == 2
    assert "LLM2VEC_RAG_API_KEY is set but empty" in out.stderr
    assert "unset LLM2VEC_RAG_API_KEY" in out.stderr


def test_a_key_with_a_trailing_newline_is_stripped_with_a_warning(served_dir):
    with Server(served_dir, key=KEY + "\n") as srv:
        body = {"input": "hello", "model": "tiny"}
        r = httpx.post(srv.url + "/v1/embeddings", json=body,
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert r.status_code == 200
        assert httpx.post(srv.url + "/v1/embeddings", json=body, timeout=30).status_code == 401
        log = srv.log()
    assert "whitespace" in log and KEY not in log


def test_deeply_nested_json_is_a_400(server):
    for depth in (5_000, 100_000):
        body = '{"input": ' + "[" * depth + "]" * depth + ', "model": "tiny"}'
        r = httpx.post(server.url + "/v1/embeddings", content=body, timeout=30,
                       headers={**server.headers, "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert "nested too deeply" in r.json()["error"]["message"] or \
            r.json()["error"]["param"].startswith("input")


def test_a_huge_instruction_is_refused_before_tokenization(server):
    start = time.monotonic()
    r = httpx.post(server.url + "/v1/embeddings", headers=server.headers, timeout=60,
                   json={"input": "text", "model": "tiny", "instruction": "word " * 15_000})
    assert time.monotonic() - start < 10
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["param"] == "instruction" and "--max-chars" in error["message"]
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_one_truncation_rule_for_both_routes(server, reference):
    """TEI's ``truncate`` flag, default off, on /v1/embeddings and /embed alike."""
    long = "fox " * 100
    routes = {"/v1/embeddings": {"input": [long], "model": "tiny"}, "/embed": {"inputs": [long]}}
    for path, body in routes.items():
        refused = httpx.post(server.url + path, json=body, headers=server.headers, timeout=30)
        assert refused.status_code == 413, (path, refused.text)
        assert '"truncate": true' in refused.json()["error"]["message"]
        ok = httpx.post(server.url + path, json={**body, "truncate": True},
                        headers=server.headers, timeout=30)
        assert ok.status_code == 200
    with pytest.warns(UserWarning, match="truncated"):
        expected = reference.encode([long], normalize=True)
    got = ok.json()
    np.testing.assert_allclose(np.array(got), expected, atol=1e-5)


def test_auto_truncate_flag_sets_the_default(served_dir):
    with Server(served_dir, "--auto-truncate") as srv:
        r = httpx.post(srv.url + "/v1/embeddings", headers=srv.headers, timeout=30,
                       json={"input": "fox " * 100, "model": "tiny"})
        assert r.status_code == 200


def wait_closed(sock: socket.socket, bound: float) -> float:
    """Seconds until the server closes ``sock`` (reads what it sends); fails after ``bound``."""
    start = time.monotonic()
    sock.settimeout(0.5)
    while time.monotonic() - start < bound:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    raise AssertionError(f"the server kept the connection open for {bound} s")


def test_slow_clients_are_disconnected(server):
    """Headers never finished, a body trickled at 1 B/s, a declared body never sent."""
    post = (f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    socks[0].sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # never finished
    socks[1].sendall(post + b"{")
    socks[2].sendall(post)  # the 100 bytes never come
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.5):
            try:
                socks[1].sendall(b" ")
            except OSError:
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        for sock in socks:
            assert wait_closed(sock, bound=10) < 10
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200


def test_health_503_while_loading_is_not_an_error_in_metrics(tiny_encoder):
    from llm2vec_rag.serve import ServeSettings, create_app

    loaded = threading.Event()

    def load():
        loaded.wait(60)
        return tiny_encoder

    app = create_app(load, ServeSettings(model_name="tiny"))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):
            assert httpx.get(url + "/health", timeout=10).status_code == 503
        loaded.set()
        deadline = time.monotonic() + 60
        while httpx.get(url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.get(url + "/nowhere", timeout=10).status_code == 404
        text = httpx.get(url + "/metrics", timeout=10).text
    finally:
        srv.should_exit = True
        thread.join(30)
    assert 'llm2vec_rag_requests_total{code="503",route="/health"} 3.0' in text
    assert 'llm2vec_rag_errors_total{code="503"' not in text
    assert 'llm2vec_rag_errors_total{code="404",route="other"} 1.0' in text


def load(srv: Server, n: int, results: dict) -> list:
    """``n`` requests in flight: every connection is opened (and accepted) first, then each
    thread sends its request and reads the answer; ``results[i]`` = status code or the
    exception's name. Each request fits the server's token budget of 64 alone, two together
    do not: every batch carries a request over into the next (issue 31 item 7's case)."""
    conns = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=180) for _ in range(n)]
    for conn in conns:
        conn.connect()
    time.sleep(1.0)  # accepted by the server before any request is sent

    def call(i: int) -> None:
        texts = [" ".join(WORDS[(i + k) % 50: (i + k) % 50 + 10]) for k in range(3)]
        try:
            conns[i].request("POST", "/v1/embeddings",
                             json.dumps({"input": texts, "model": "tiny"}),
                             {**srv.headers, "Content-Type": "application/json"})
            results[i] = conns[i].getresponse().status
        except (OSError, http.client.HTTPException) as err:
            results[i] = type(err).__name__
        finally:
            conns[i].close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads


def test_sigterm_under_load_finishes_every_in_flight_request(served_dir):
    """Issue 31 (8): SIGTERM with 64 requests in flight dropped them all (the batcher had
    died on a carried request, item 7); requests sent on connections accepted before the
    signal but not read yet were closed unanswered."""
    srv = Server(served_dir, "--max-batch-tokens", "64", "--max-wait-ms", "20",
                 "--graceful-timeout", "150").start()
    results: dict = {}
    try:
        threads = load(srv, 64, results)
        deadline = time.monotonic() + 30
        while srv.metric('llm2vec_rag_queue_depth') < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(180)
        code = srv.proc.wait(60)
    finally:
        srv.stop()
    assert sorted(results) == list(range(64))
    assert set(results.values()) == {200}, results
    assert code in (0, -signal.SIGTERM)


def test_two_sigints_under_load_exit_cleanly(smollm2_gguf, tmp_path):
    """Issue 31 (12): a second Ctrl-C while the batcher ran SmolLM2 forward passes aborted the
    process (``terminate called without an active exception``, exit -6) and answered 500s:
    uvicorn skips the app's shutdown on a second signal, so the interpreter finalized under
    a running forward pass. Then it exited 130 but still answered 500 to every request in
    flight (their tasks cancelled by the closing event loop); now they get 503. Real weights,
    so a batch takes long enough to be interrupted."""
    srv = Server(smollm2_gguf, "--max-wait-ms", "5", key=None, name="smol",
                 log_path=str(tmp_path / "serve.log")).start(timeout=420)
    texts = [" ".join((WORDS * 20)[i: i + 150]) for i in range(0, 600, 150)]  # 4 x ~200 tokens
    results: list = []

    def client() -> None:
        for _ in range(20):  # bounded: each request is in flight until the server goes
            try:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
                conn.request("POST", "/v1/embeddings", json.dumps({"input": texts,
                                                                   "model": "smol"}),
                             {"Content-Type": "application/json"})
                results.append(conn.getresponse().status)
                conn.close()
            except (OSError, http.client.HTTPException) as err:
                results.append(type(err).__name__)
                return

    threads = [threading.Thread(target=client) for _ in range(16)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while 200 not in results and time.monotonic() < deadline:  # batches are running
            time.sleep(0.1)
        srv.proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        srv.proc.send_signal(signal.SIGINT)
        code = srv.proc.wait(120)
        for t in threads:
            t.join(150)
    finally:
        srv.stop()
    log = srv.log()
    assert 200 in results, results
    assert "terminate called" not in log and "Aborted" not in log, log[-2000:]
    assert code in (130, -signal.SIGINT), code  # interrupted, not aborted (-6)
    # a forced stop answers what it did not finish with 503 (or closes the connection),
    # never a 500: uvicorn answered the request tasks the closing event loop cancelled so
    closed = {"RemoteDisconnected", "ConnectionResetError", "BrokenPipeError",
              "ConnectionRefusedError"}  # refused: a client's next request after the stop
    assert 500 not in results, results
    assert set(results) <= {200, 503} | closed, results
    assert 503 in results, results  # requests were in flight at the second signal





def test_a_worker_that_keeps_crashing_turns_health_503_over_http(tiny_encoder):
    """Issue 31 (supervised batcher), seen by a client: each crash fails its request with a
    500 (no hang), and once the worker gives up ``/health`` answers 503 ``worker_failed``, so
    an orchestrator restarts the server instead of routing traffic to it."""
    openai = pytest.importorskip("openai")
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.batcher import MAX_CRASHES
    from llm2vec_rag.serve import ServeSettings, create_app

    class CrashingEncoder(LLM2Vec):
        """The real tiny encoder whose forward passes raise while ``crash`` is set: an error
        outside any one request's handling, as a worker thread dying would."""

        crash = False

        def encode_tokenized(self, encoded, batch_size=32, max_batch_tokens=None):
            if self.crash:
                raise KeyboardInterrupt("simulated worker crash")
            return super().encode_tokenized(encoded, batch_size, max_batch_tokens)

    encoder = CrashingEncoder(tiny_encoder.model, tiny_encoder.tokenizer, tiny_encoder.config)
    app = create_app(lambda: encoder, ServeSettings(model_name="tiny"))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while not srv.started or httpx.get(url + "/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the server never became healthy"
            time.sleep(0.1)
        assert len(client.embeddings.create(model="tiny", input=CORPUS[:2]).data) == 2
        encoder.crash = True
        for _ in range(MAX_CRASHES):
            with pytest.raises(openai.InternalServerError) as crashed:
                client.embeddings.create(model="tiny", input=CORPUS[:1])
            assert crashed.value.response.json()["error"]["code"] == "worker_crashed"
        deadline = time.monotonic() + 30
        while (health := httpx.get(url + "/health", timeout=10)).status_code == 200:
            assert time.monotonic() < deadline, "/health stayed 200 after the worker gave up"
            time.sleep(0.1)
        assert health.status_code == 503 and health.json()["error"]["code"] == "worker_failed"
        encoder.crash = False  # even a healthy model: the stopped worker takes no more work
        with pytest.raises(openai.APIStatusError) as stopped:
            client.embeddings.create(model="tiny", input=CORPUS[:1])
        assert stopped.value.status_code in (500, 503)
    finally:
        srv.should_exit = True
        thread.join(30)
