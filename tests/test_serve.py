"""``llm2vec-rag serve`` as a subprocess on 127.0.0.1: concurrency, limits, auth, shutdown."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from serve_util import KEY, Server

from tiny import CORPUS

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

WORDS = " ".join(CORPUS).split()


@pytest.fixture(scope="module")
def server(served_dir):
    srv = Server(served_dir, "--max-wait-ms", "20", "--max-client-batch", "8",
                 "--max-chars", "2000", "--max-body-bytes", "100000").start()
    yield srv
    srv.stop()


def text(rng: np.random.Generator, lo: int = 1, hi: int = 30) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi))))


def mixed_request(i: int, j: int, server: Server, reference):
    """One of five request shapes; returns (path, body, expected vectors)."""
    rng = np.random.default_rng(1000 * i + j)
    kind = (i + j) % 5
    texts = [text(rng) for _ in range(int(rng.integers(1, 6)))]
    if kind == 0:  # a single string, document
        body = {"input": texts[0], "model": server.name}
        expected = reference.encode([texts[0]], normalize=True)
    elif kind == 1:  # a list of documents, base64
        body = {"input": texts, "model": server.name, "encoding_format": "base64"}
        expected = reference.encode(texts, normalize=True)
    elif kind == 2:  # queries through the '-query' model id
        body = {"input": texts, "model": server.name + "-query"}
        expected = reference.encode_queries(texts, normalize=True)
    elif kind == 3:  # an explicit instruction
        body = {"input": texts, "model": server.name, "instruction": "Represent the topic"}
        expected = reference.encode(texts, instruction="Represent the topic", normalize=True)
    else:  # TEI, raw vectors, queries by prompt_name
        return "/embed", {"inputs": texts, "normalize": False, "prompt_name": "query"}, \
            reference.encode_queries(texts)
    return "/v1/embeddings", body, expected


def vectors_of(path: str, answer) -> np.ndarray:
    if path == "/embed":
        return np.array(answer, dtype=np.float32)
    rows = []
    for item in answer["data"]:
        emb = item["embedding"]
        rows.append(np.frombuffer(base64.b64decode(emb), "<f4")
                    if isinstance(emb, str) else np.array(emb, dtype=np.float32))
    return np.stack(rows)


def test_64_concurrent_clients_get_exactly_their_vectors_and_batches_merge(server, reference):
    batches_before = server.metric("llm2vec_rag_batch_requests_count")
    single_before = server.metric('llm2vec_rag_batch_requests_bucket{le="1.0"}')
    plans = {(i, j): mixed_request(i, j, server, reference) for i in range(64) for j in range(3)}
    answers: dict = {}
    barrier = threading.Barrier(64)

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http:
            barrier.wait()
            for j in range(3):
                path, body, _ = plans[(i, j)]
                r = http.post(path, json=body)
                answers[(i, j)] = (r.status_code, r.json())

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(client, range(64)))
    assert len(answers) == 64 * 3  # none dropped
    for key, (path, body, expected) in plans.items():
        status, answer = answers[key]
        assert status == 200, (key, answer)
        got = vectors_of(path, answer)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=str((key, body)))
        if path != "/embed":
            assert [d["index"] for d in answer["data"]] == list(range(len(expected)))
            assert answer["usage"]["prompt_tokens"] > 0
    batches = server.metric("llm2vec_rag_batch_requests_count") - batches_before
    single = server.metric('llm2vec_rag_batch_requests_bucket{le="1.0"}') - single_before
    assert batches < 64 * 3, "every request ran alone: nothing was merged"
    assert single < batches, "no encode call held more than one request"
    assert server.metric('llm2vec_rag_requests_total{code="200",route="/v1/embeddings"}') > 0


def test_usage_counts_tokens_with_instruction(server, reference):
    r = httpx.post(server.url + "/v1/embeddings", headers=server.headers,
                   json={"input": ["the quick brown fox", "a dog"], "model": "tiny-query"})
    expected = sum(reference.count_tokens(["the quick brown fox", "a dog"],
                                          reference.config.query_instruction))
    assert r.json()["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


BAD = [  # (path, body, status, param, words in the message)
    ("/v1/embeddings", {"input": 5, "model": "tiny"}, 400, "input", ["valid string"]),
    ("/v1/embeddings", {"input": ["a", 3], "model": "tiny"}, 400, "input[1]", ["token-id"]),
    ("/v1/embeddings", {"input": [["a"]], "model": "tiny"}, 400, "input[0]", ["string"]),
    ("/v1/embeddings", {"input": None, "model": "tiny"}, 400, "input", []),
    ("/v1/embeddings", {"input": [], "model": "tiny"}, 400, "input", ["empty"]),
    ("/v1/embeddings", {"input": ["ok", " "], "model": "tiny"}, 400, "input[1]", ["empty"]),
    ("/v1/embeddings", {"input": ["a"] * 9, "model": "tiny"}, 400, "input",
     ["9 texts", "limit of 8", "--max-client-batch"]),
    ("/v1/embeddings", {"input": ["a", "b" * 2001], "model": "tiny"}, 400, "input[1]",
     ["2001 characters", "2000", "--max-chars"]),
    ("/v1/embeddings", {"input": "a"}, 400, "model", ["missing"]),
    ("/v1/embeddings", {"input": "a", "model": "gpt-4"}, 404, "model", ["'tiny'", "tiny-query"]),
    ("/v1/embeddings", {"input": "a", "model": "tiny", "dimensions": 32}, 400, "dimensions",
     ["64-dimensional"]),
    ("/v1/embeddings", {"input": "a", "model": "tiny", "encoding_format": "int8"}, 400,
     "encoding_format", ["float", "base64"]),
    ("/v1/embeddings", {"input": "a", "model": "tiny", "input_type": "passage"}, 400,
     "input_type", ["query"]),
    ("/v1/embeddings", {"input": "a", "model": "tiny-query", "input_type": "document"}, 400,
     "input_type", ["queries"]),
    ("/v1/embeddings", {"input": "a", "model": "tiny", "temperature": 1}, 400, "temperature",
     ["unknown field"]),
    ("/embed", {"inputs": ["short", "fox " * 100]}, 413, "inputs[1]",
     ["tokens", "max_length=64"]),
    ("/embed", {"inputs": ["a"] * 9}, 413, "inputs", ["limit of 8"]),
    ("/embed", {"inputs": "a", "normalize": "yes"}, 400, "normalize", ["boolean"]),
    ("/embed", {"inputs": "a", "truncation_direction": "left"}, 400, "truncation_direction",
     ["right"]),
]


@pytest.mark.parametrize("path,body,status,param,words", BAD,
                         ids=[f"{b[3]}-{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_requests_get_openai_errors_naming_the_field(server, path, body, status, param,
                                                         words):
    r = httpx.post(server.url + path, headers=server.headers, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    for word in words:
        assert word in error["message"], error


@pytest.mark.parametrize("raw,param", [(b'{"input": "a",', "body"), (b"[1, 2]", "body"),
                                       (b"\xff\xfe", "body")])
def test_malformed_json_is_a_400_in_openai_format(server, raw, param):
    r = httpx.post(server.url + "/v1/embeddings", content=raw,
                   headers={**server.headers, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert r.json()["error"]["code"] == "invalid_json"


def test_body_size_limit_declared_and_streamed(server):
    huge = json.dumps({"input": ["x" * 1900] * 60, "model": "tiny"}).encode()
    r = httpx.post(server.url + "/v1/embeddings", content=huge, headers=server.headers)
    assert r.status_code == 413 and r.json()["error"]["param"] == "body"
    assert "--max-body-bytes" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit applies while the body streams in
        for _ in range(40):
            yield b" " * 4096
    r = httpx.post(server.url + "/v1/embeddings", content=chunks(), headers=server.headers)
    assert r.status_code == 413


def test_truncate_true_embeds_the_cut_text(server, reference):
    long = "fox " * 100
    r = httpx.post(server.url + "/embed", headers=server.headers,
                   json={"inputs": long, "truncate": True})
    assert r.status_code == 200
    with pytest.warns(UserWarning, match="truncated"):
        expected = reference.encode([long], normalize=True)
    np.testing.assert_allclose(np.array(r.json()), expected, atol=1e-5)


def test_auth_models_health_and_key_never_logged(server):
    url = server.url + "/v1/embeddings"
    body = {"input": "hello", "model": "tiny"}
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(url, json=body, headers={"Authorization": KEY}).status_code == 401
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.post(url, json=body, headers=server.headers).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # probes need no key
    models = httpx.get(server.url + "/v1/models", headers=server.headers).json()
    assert [m["id"] for m in models["data"]] == ["tiny", "tiny-query"]
    r = httpx.get(server.url + "/nowhere", headers=server.headers)
    assert r.status_code == 404 and "error" in r.json()
    assert server.metric('llm2vec_rag_errors_total{code="401",route="/v1/embeddings"}') >= 3
    log = server.log()
    assert "POST /v1/embeddings" in log  # the access log is on, and still shows no key
    assert KEY not in log and "not-the-key" not in log


def test_full_queue_answers_429_with_retry_after(served_dir):
    with Server(served_dir, "--max-queue", "1", "--max-batch-tokens", "64",
                "--max-wait-ms", "0") as srv:
        body = {"input": [" ".join(WORDS[i: i + 40]) for i in range(8)], "model": "tiny"}
        barrier = threading.Barrier(48)

        def call(_):
            with httpx.Client(headers=srv.headers, timeout=120) as http:
                barrier.wait()
                return http.post(srv.url + "/v1/embeddings", json=body)

        with ThreadPoolExecutor(48) as pool:
            answers = list(pool.map(call, range(48)))
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 429}, codes
        assert 429 in codes, "48 simultaneous requests never filled a queue of 1"
        assert 200 in codes
        refused = next(r for r in answers if r.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
        assert "--max-queue" in refused.json()["error"]["message"]


def test_sigterm_answers_in_flight_requests_then_exits(served_dir, reference):
    # A long batching window holds 8 requests in the worker when SIGTERM arrives.
    srv = Server(served_dir, "--max-wait-ms", "2500", "--max-batch-tokens", "100000").start()
    texts = [[f"request {i} text {k} " + WORDS[i + k] for k in range(4)] for i in range(8)]
    results: dict = {}

    def call(i):
        with httpx.Client(headers=srv.headers, timeout=60) as http:
            r = http.post(srv.url + "/v1/embeddings", json={"input": texts[i], "model": "tiny"})
            results[i] = (r.status_code, r.json())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # all 8 received; the batch fires ~2.5 s after the first
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):  # new connections are refused
            httpx.post(srv.url + "/v1/embeddings", headers=srv.headers, timeout=5,
                       json={"input": "late", "model": "tiny"})
        for t in threads:
            t.join(60)
        code = srv.proc.wait(30)
        elapsed = time.monotonic() - start
    finally:
        srv.stop()
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
    assert elapsed < 20
    assert sorted(results) == list(range(8))
    for i, (status, answer) in results.items():
        assert status == 200, answer
        np.testing.assert_allclose(vectors_of("/v1/embeddings", answer),
                                   reference.encode(texts[i], normalize=True), atol=1e-5)
    assert "Shutting down" in srv.log()
