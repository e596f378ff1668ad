"""Real clients against ``llm2vec-rag serve`` on 127.0.0.1: openai, LangChain, LlamaIndex, TEI."""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
import pytest
from serve_util import KEY, Server

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

DOCS = ["Bushfires threaten homes west of Sydney.", "The central bank raised interest rates.",
        "Qdrant stores vectors and payloads.", "A contrastive loss pulls positive pairs together."]
QUERY = "which fires threaten homes?"


@pytest.fixture(scope="module")
def server(served_dir):
    srv = Server(served_dir, "--max-wait-ms", "20").start()
    yield srv
    srv.stop()


def close(got, expected) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), expected, atol=1e-5)


def test_openai_package_float_base64_and_query_model(server, reference):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    docs = reference.encode(DOCS, normalize=True)
    for fmt in ("float", "base64", openai.omit):  # omitted: the package asks for base64
        r = client.embeddings.create(model="tiny", input=DOCS, encoding_format=fmt)
        got = [np.frombuffer(base64.b64decode(d.embedding), "<f4") if fmt == "base64"
               else d.embedding for d in r.data]  # asked for explicitly: left to the caller
        close(got, docs)
        assert r.model == "tiny" and r.usage.prompt_tokens == sum(reference.count_tokens(DOCS))
    query = reference.encode_queries([QUERY], normalize=True)
    r = client.embeddings.create(model="tiny-query", input=QUERY)
    close([r.data[0].embedding], query)
    r = client.embeddings.create(model="tiny", input=[QUERY], extra_body={"input_type": "query"})
    close([r.data[0].embedding], query)
    assert not np.allclose(query, reference.encode([QUERY], normalize=True), atol=1e-3)
    assert [m.id for m in client.models.list()] == ["tiny", "tiny-query"]
    with pytest.raises(openai.NotFoundError, match="model_not_found|not served"):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model="tiny", input="x", dimensions=8)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong",
                      max_retries=0).embeddings.create(model="tiny", input="x")


def test_async_openai_concurrent_calls(server, reference):
    async def main():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY)
        try:
            return await asyncio.gather(*(client.embeddings.create(model="tiny", input=d)
                                          for d in DOCS * 4))
        finally:
            await client.close()

    answers = asyncio.run(main())
    expected = reference.encode(DOCS * 4, normalize=True)
    close([a.data[0].embedding for a in answers], expected)


def test_langchain_openai_embeddings(server, reference):
    langchain_openai = pytest.importorskip("langchain_openai")
    kwargs = dict(base_url=server.url + "/v1", api_key=KEY, check_embedding_ctx_length=False)
    docs = langchain_openai.OpenAIEmbeddings(model="tiny", **kwargs)
    close(docs.embed_documents(DOCS), reference.encode(DOCS, normalize=True))
    queries = langchain_openai.OpenAIEmbeddings(model="tiny-query", **kwargs)
    close([queries.embed_query(QUERY)], reference.encode_queries([QUERY], normalize=True))
    close(asyncio.run(docs.aembed_documents(DOCS)), reference.encode(DOCS, normalize=True))


def test_llamaindex_openai_embedding(server, reference):
    li = pytest.importorskip("llama_index.embeddings.openai")
    docs = li.OpenAIEmbedding(model_name="tiny", api_base=server.url + "/v1", api_key=KEY)
    close(docs.get_text_embedding_batch(DOCS), reference.encode(DOCS, normalize=True))
    queries = li.OpenAIEmbedding(model_name="tiny-query", api_base=server.url + "/v1",
                                 api_key=KEY)
    close([queries.get_query_embedding(QUERY)], reference.encode_queries([QUERY],
                                                                         normalize=True))
    close([asyncio.run(docs.aget_text_embedding(DOCS[0]))],
          reference.encode(DOCS[:1], normalize=True))


def test_tei_embed_with_httpx(server, reference):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        r = http.post("/embed", json={"inputs": DOCS[0]})  # TEI: normalized by default
        assert r.status_code == 200
        close(r.json(), reference.encode(DOCS[:1], normalize=True))
        r = http.post("/embed", json={"inputs": DOCS, "normalize": False})
        close(r.json(), reference.encode(DOCS))
        r = http.post("/embed", json={"inputs": [QUERY], "prompt_name": "query"})
        close(r.json(), reference.encode_queries([QUERY], normalize=True))
        r = http.post("/embed", json={"inputs": DOCS, "instruction": "Represent the topic"})
        close(r.json(), reference.encode(DOCS, instruction="Represent the topic",
                                         normalize=True))
