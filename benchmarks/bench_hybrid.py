"""Retrieval quality of dense, sparse (BM25) and hybrid search through ``QdrantIndexer``.

Each BEIR folder's documents are indexed once with ``hybrid=True`` (a dense and a BM25
vector per chunk, embedded Qdrant), then every query is searched in each mode: ``dense``,
``sparse``, ``hybrid`` with RRF and with DBSF fusion (fused in Qdrant). A document is ranked
at its best chunk. Metrics are ``training.retrieval.metrics``' (nDCG@10, Recall@10).
Each query is encoded once and its vector reused by the three modes that need it.
``--store DIR`` keeps the collections, so a re-run re-embeds nothing (the indexer skips
unchanged documents) and only searches.

    python benchmarks/bench_hybrid.py data/heldout/manpage-options --limit 400 \\
        --store out/bench-hybrid --out benchmarks/results/issue29/hybrid.jsonl
    python benchmarks/bench_hybrid.py data/heldout/debian-reference --sample-docs 120 \\
        --store out/bench-hybrid --out benchmarks/results/issue29/hybrid.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

MODES = (("dense", None), ("sparse", None), ("hybrid", "rrf"), ("hybrid", "dbsf"))


def cache_queries(encoder) -> None:
    """Memoise ``encode_queries`` of single queries on this encoder object (benchmark only)."""
    encode, memo = encoder.encode_queries, {}

    def cached(texts, *args, **kwargs):
        key = (tuple(texts), repr(args), repr(sorted(kwargs.items())))
        if key not in memo:
            memo[key] = encode(texts, *args, **kwargs)
        return memo[key].copy()

    encoder.encode_queries = cached


def sample(corpus: dict, queries: dict, qrels: dict, n: int | None, seed: int = 0):
    """``n`` documents drawn at random (seeded) and the queries whose answers are all among
    them: a smaller set with the same kind of queries (fewer distractors, so higher scores
    than the whole set; modes compare fairly on it)."""
    if n is None or n >= len(corpus):
        return corpus, queries, qrels
    import random

    keep = set(random.Random(seed).sample(sorted(corpus), n))
    qrels = {q: rels for q, rels in qrels.items() if set(rels) <= keep}
    return ({d: t for d, t in corpus.items() if d in keep},
            {q: t for q, t in queries.items() if q in qrels}, qrels)


def run(folder: str, encoder, out: str | None, limit: int | None, chunk_size: int | None,
        batch_size: int, store: str | None, sample_docs: int | None = None) -> list[dict]:
    from llm2vec_rag.integrations.qdrant import QdrantIndexer
    from llm2vec_rag.training.retrieval import metrics, read_beir

    corpus, queries, qrels = sample(*read_beir(folder), sample_docs)
    query_ids = [q for q in queries if q in qrels][:limit]
    room = encoder.max_text_tokens(encoder.config.document_instruction)
    rows = []
    name = os.path.basename(os.path.normpath(folder)) + (
        f"-sample{sample_docs}" if sample_docs else "")
    with tempfile.TemporaryDirectory() as tmp:
        ix = QdrantIndexer(encoder, name, path=store or tmp, hybrid=True,
                           chunk_size=min(chunk_size or room, room), batch_size=batch_size)
        start = time.perf_counter()
        report = ix.index([{"id": d, "text": t} for d, t in corpus.items()], prune=True,
                          show_progress=False)  # prune: exactly this set, also in a kept store
        index_s = time.perf_counter() - start
        for mode, fusion in MODES:
            start = time.perf_counter()
            ranked = {}
            for q in query_ids:
                hits = ix.search(queries[q], k=50, mode=mode, fusion=fusion or "rrf")
                docs: list[str] = []
                for h in hits:  # a document is ranked at its best chunk
                    if h.metadata["doc_id"] not in docs:
                        docs.append(h.metadata["doc_id"])
                ranked[q] = docs[:10]
            result = metrics(ranked, qrels, k_values=(10,))
            rows.append({"set": name,
                         "mode": mode if fusion is None else f"{mode}-{fusion}",
                         "ndcg@10": round(result["ndcg@10"], 4),
                         "recall@10": round(result["recall@10"], 4),
                         "mrr@10": round(result["mrr@10"], 4),
                         "queries": len(query_ids), "documents": len(corpus),
                         "chunks": ix.count(), "embedded": report.chunks,
                         "index_s": round(index_s, 1),
                         "search_s": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
        ix.close()
    if out:
        with open(out, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({**row, "machine": f"{platform.processor() or 'cpu'}, "
                                    f"{os.cpu_count()} cpus"}) + "\n")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="BEIR folders (corpus, queries, qrels)")
    parser.add_argument("--out", help="append one JSON line per set and mode")
    parser.add_argument("--limit", type=int, help="first N queries of each set only")
    parser.add_argument("--chunk-size", type=int, help="tokens per chunk (default: the most "
                                                       "the encoder takes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--sample-docs", type=int,
                        help="N documents of each set (seeded) and the queries they answer")
    parser.add_argument("--store", help="a Qdrant folder kept between runs (default: a "
                                        "temporary one)")
    args = parser.parse_args()
    import torch

    from llm2vec_rag.default_model import load_default_model

    encoder = load_default_model(device="cpu", dtype=getattr(torch, args.dtype))
    cache_queries(encoder)
    for folder in args.folders:
        run(folder, encoder, args.out, args.limit, args.chunk_size, args.batch_size,
            args.store, args.sample_docs)


if __name__ == "__main__":
    main()
