"""Retrieval loss of each output precision (issue #13, item 4), on a real BEIR-format set.

    .venv/bin/python benchmarks/bench_precision.py

The set is built from the Lee background articles (300 news articles, data/gensim): the
query is an article's first sentence, the one relevant document the rest of that article,
written as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) and read back with
``llm2vec_rag.training.retrieval.read_beir``. The default model encodes queries and documents once
(float32, normalised); every precision is scored from those same vectors:

- float32 (and ``truncate_dim``): cosine = dot of unit vectors;
- int8 / uint8: ``quantize(..., ranges)`` with ranges calibrated on the corpus vectors, the
  query quantized with the same ranges, scored by the dot product of the codes (what an
  int8 index computes);
- binary / ubinary: packed sign bits, scored by Hamming distance (the two differ only in
  how a byte is labelled, so they rank identically);
- binary + rescore: the top 40 by Hamming distance rescored with the float query against
  the unpacked +-1 document bits (sentence-transformers' recommended use of binary).

The interval is a paired bootstrap over queries (2000 resamples) of nDCG@10 minus
float32's. nDCG@10 and Recall@10 come from ``llm2vec_rag.training.retrieval.metrics``
(what ``eval --beir`` reports).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA  # noqa: E402

RESCORE_TOP = 40


def write_lee_beir(folder: str) -> int:
    """Lee articles as a BEIR folder: first sentence -> rest of the article."""
    with open(os.path.join(DATA, "lee_background.cor"), encoding="utf-8") as f:
        articles = [line.strip() for line in f if line.strip()]
    os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
    n = 0
    with open(os.path.join(folder, "corpus.jsonl"), "w", encoding="utf-8") as corpus, \
            open(os.path.join(folder, "queries.jsonl"), "w", encoding="utf-8") as queries, \
            open(os.path.join(folder, "qrels", "test.tsv"), "w", encoding="utf-8") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for i, article in enumerate(articles):
            sentences = re.split(r"(?<=[.!?])\s+", article)
            if len(sentences) < 3:
                continue
            corpus.write(json.dumps({"_id": f"d{i}", "text": " ".join(sentences[1:])}) + "\n")
            queries.write(json.dumps({"_id": f"q{i}", "text": sentences[0]}) + "\n")
            qrels.write(f"q{i}\td{i}\t1\n")
            n += 1
    return n


def hamming_scores(q_bits: np.ndarray, d_bits: np.ndarray) -> np.ndarray:
    """Minus the Hamming distance between packed uint8 rows ([Q, N], higher is closer)."""
    table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(
        np.int32)  # popcount of each byte; signed, so that negating does not wrap
    return -table[np.bitwise_xor(q_bits[:, None, :], d_bits[None, :, :])].sum(-1)


def ranked_from(scores: np.ndarray, query_ids, doc_ids, k: int = 100) -> dict:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {q: [doc_ids[j] for j in row] for q, row in zip(query_ids, order)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--vectors", help="an .npz to keep the float vectors in: loaded "
                        "instead of encoding when it exists (scoring changes need no re-encode)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                      "precision.json"))
    args = parser.parse_args()

    from llm2vec_rag.default_model import load_default_model
    from llm2vec_rag.quantize import calibration_ranges, quantize
    from llm2vec_rag.training.retrieval import metrics, read_beir

    folder = tempfile.mkdtemp(prefix="lee-beir-")
    write_lee_beir(folder)
    corpus, queries, qrels = read_beir(folder)
    doc_ids, query_ids = list(corpus), [q for q in queries if q in qrels]

    seconds = None
    if args.vectors and os.path.isfile(args.vectors):
        saved = np.load(args.vectors)
        docs, qs = saved["docs"], saved["queries"]
        seconds = float(saved["seconds"]) if "seconds" in saved else None
    else:
        model = load_default_model(device="cpu", max_length=args.max_length)
        start = time.perf_counter()
        docs = model.encode_documents([corpus[d] for d in doc_ids], normalize=True)
        qs = model.encode_queries([queries[q] for q in query_ids], normalize=True)
        seconds = round(time.perf_counter() - start, 1)
        if args.vectors:
            np.savez(args.vectors, docs=docs, queries=qs, seconds=seconds)
    dim = docs.shape[1]

    rows = []
    per_query: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    resample = rng.integers(0, len(query_ids), size=(2000, len(query_ids)))

    def add(name: str, scores: np.ndarray, nbytes: int, scoring: str) -> None:
        ranked = ranked_from(scores, query_ids, doc_ids)
        m = metrics(ranked, qrels)
        per_query[name] = np.array([metrics({q: ranked[q]}, {q: qrels[q]})["ndcg@10"]
                                    for q in query_ids])
        # Paired bootstrap over queries: nDCG@10 minus float32's, 95% interval.
        diff = per_query[name] - per_query["float32"]
        boot = diff[resample].mean(axis=1)
        rows.append(dict(precision=name, bytes=nbytes, scoring=scoring,
                         ndcg10=round(m["ndcg@10"], 4), recall10=round(m["recall@10"], 4),
                         delta_ndcg10=round(float(diff.mean()), 4),
                         delta_ci95=[round(float(x), 4) for x in np.percentile(boot, [2.5, 97.5])]))

    add("float32", qs @ docs.T, 4 * dim, "cosine")
    for t in (256, 128):
        qt, dt = qs[:, :t], docs[:, :t]
        qt = qt / np.linalg.norm(qt, axis=1, keepdims=True)
        dt = dt / np.linalg.norm(dt, axis=1, keepdims=True)
        add(f"float32, truncate_dim={t}", qt @ dt.T, 4 * t, "cosine")
    ranges = calibration_ranges(docs)
    for precision in ("int8", "uint8"):
        qc = quantize(qs, precision, ranges).astype(np.float32)
        dc = quantize(docs, precision, ranges).astype(np.float32)
        add(precision, qc @ dc.T, dim, "dot of codes (corpus-calibrated ranges)")
    qc = quantize(qs, "uint8", ranges).astype(np.float32)
    dc = quantize(docs, "uint8", ranges).astype(np.float32)
    add("uint8, Euclidean", -((qc * qc).sum(1)[:, None] + (dc * dc).sum(1)[None] - 2 * qc @ dc.T),
        dim, "minus squared L2 of codes (shift-invariant)")
    for precision in ("binary", "ubinary"):
        qb, db = quantize(qs, precision), quantize(docs, precision)
        if precision == "binary":  # int8 labels of the same bytes
            qb, db = (qb.astype(np.int16) + 128).astype(np.uint8), (
                db.astype(np.int16) + 128).astype(np.uint8)
        ham = hamming_scores(qb, db)
        add(precision, ham.astype(np.float32), (dim + 7) // 8, "Hamming")
    # Binary index, float query: rescore the Hamming top 40 with <q, sign(d)>.
    db = quantize(docs, "ubinary")
    ham = hamming_scores(quantize(qs, "ubinary"), db).astype(np.float32)
    signs = np.unpackbits(db, axis=1)[:, :dim].astype(np.float32) * 2 - 1
    top = np.argsort(-ham, axis=1, kind="stable")[:, :RESCORE_TOP]
    rescored = np.full_like(ham, -np.inf)
    for i, cand in enumerate(top):
        rescored[i, cand] = signs[cand] @ qs[i]
    add(f"ubinary + rescore top {RESCORE_TOP}", rescored, (dim + 7) // 8,
        "Hamming, then float query x sign bits")
    # Diagnostic: sign bits after subtracting the corpus mean (mean-pooled vectors share a
    # large common direction, so raw signs are nearly the same for every text).
    mean = docs.mean(axis=0)
    add("ubinary of (vector - corpus mean)", hamming_scores(
        quantize(qs - mean, "ubinary"), quantize(docs - mean, "ubinary")).astype(np.float32),
        (dim + 7) // 8, "Hamming (diagnostic: centring is not an encode option)")
    for t in (256,):
        qb = quantize(qs[:, :t], "ubinary")
        dbt = quantize(docs[:, :t], "ubinary")
        add(f"ubinary, truncate_dim={t}", hamming_scores(qb, dbt).astype(np.float32),
            (t + 7) // 8, "Hamming")

    result = dict(set="Lee background, first sentence -> rest of article",
                  queries=len(query_ids), documents=len(doc_ids), dim=dim,
                  max_length=args.max_length, encode_seconds=seconds, rows=rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"{len(query_ids)} queries, {len(doc_ids)} documents, dim {dim}, "
          f"encoded in {seconds} s")
    print("| precision | bytes/vector | nDCG@10 | vs float32 [95% CI] | Recall@10 | scoring |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["delta_ci95"]
        print(f"| {r['precision']} | {r['bytes']} | {r['ndcg10']:.4f} | "
              f"{r['delta_ndcg10']:+.4f} [{lo:+.4f}, {hi:+.4f}] | {r['recall10']:.4f} "
              f"| {r['scoring']} |")


if __name__ == "__main__":
    main()
