"""The server's late_chunking field: a request's inputs are one document's chunks, each
vector pooled in the whole document's context (a real server subprocess on 127.0.0.1)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from serve_util import Server

from llm2vec_rag.serve.late import document_and_spans
from tiny import CORPUS

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.timeout(600)  # a server that never answers fails instead of hanging

CHUNKS = CORPUS[:6]  # about 90 tokens: beyond the served max_length of 64, so windowed


@pytest.fixture(scope="module")
def server(served_dir):
    srv = Server(served_dir, "--max-wait-ms", "5").start()
    yield srv
    srv.stop()


def test_document_and_spans():
    doc, spans = document_and_spans(["ab", "c", "de"])
    assert doc == "ab c de" and [doc[a:b] for a, b in spans] == ["ab", "c", "de"]


def test_openai_and_tei_routes_late_chunk(server, reference):
    doc, spans = document_and_spans(CHUNKS)
    want = reference.encode_chunks(doc, spans, normalize=True)
    naive = reference.encode(CHUNKS, normalize=True)
    answer = httpx.post(server.url + "/v1/embeddings", headers=server.headers, timeout=60,
                        json={"input": CHUNKS, "model": server.name, "late_chunking": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - naive).max() > 1e-3  # not the chunks embedded alone
    assert body["usage"]["prompt_tokens"] == reference.count_tokens(doc)[0]

    raw = httpx.post(server.url + "/embed", headers=server.headers, timeout=60,
                     json={"inputs": CHUNKS, "normalize": False, "late_chunking": True})
    assert raw.status_code == 200, raw.text
    np.testing.assert_allclose(np.array(raw.json(), dtype=np.float32),
                               reference.encode_chunks(doc, spans), atol=1e-5)


def test_late_chunking_is_for_documents(server):
    for path, body in (("/v1/embeddings", {"input": CHUNKS, "model": server.name + "-query",
                                            "late_chunking": True}),
                       ("/embed", {"inputs": CHUNKS, "prompt_name": "query",
                                   "late_chunking": True})):
        answer = httpx.post(server.url + path, headers=server.headers, timeout=60, json=body)
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "late_chunking"
    answer = httpx.post(server.url + "/embed", headers=server.headers, timeout=60,
                        json={"inputs": CHUNKS, "late_chunking": "yes"})
    assert answer.status_code in (400, 422) and "late_chunking" in answer.text
