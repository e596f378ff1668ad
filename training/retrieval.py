"""Retrieval quality on a BEIR-format folder: nDCG@10, MRR@10, Recall@10/100.

A BEIR folder holds ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl``
(``{"_id", "text"}``) and ``qrels/<split>.tsv`` (``query-id  corpus-id  score``, a header
line). Documents are ``title + " " + text`` without instruction, queries get the query
instruction (or none), vectors are compared by cosine similarity, exact search.

The metrics are trec_eval's as BEIR reports them: nDCG with linear gains (the qrels score),
the ideal ranking from the qrels; MRR is 1 / rank of the first relevant document (score > 0)
in the top k, else 0; Recall@k = relevant found in the top k / relevant in the qrels. Each
is averaged over the queries that have qrels.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_jsonl

K_VALUES = (10, 100)


def read_beir(folder: str | os.PathLike, split: str = "test"):
    """(corpus {id: text}, queries {id: text}, qrels {query id: {doc id: score}})."""
    folder = str(folder)
    paths = {name: os.path.join(folder, name) for name in ("corpus.jsonl", "queries.jsonl")}
    paths["qrels"] = os.path.join(folder, "qrels", f"{split}.tsv")
    for path in paths.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: a BEIR folder holds corpus.jsonl, "
                                    f"queries.jsonl and qrels/{split}.tsv")
    corpus = {i: (rec.get("title", "") + " " + rec.get("text", "")).strip()
              for i, rec in _jsonl(paths["corpus.jsonl"])}
    queries = {i: rec.get("text", "") for i, rec in _jsonl(paths["queries.jsonl"])}
    qrels: dict[str, dict[str, int]] = {}
    with open(paths["qrels"], encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if n == 1 and row and not row[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                raise UsageError(f"{paths['qrels']}:{n}: expected query-id, corpus-id, score "
                                 f"separated by tabs, got {row!r}")
            qid, did, score = row[0], row[1], int(row[-1])
            if qid not in queries or did not in corpus:
                what, which = ("query", qid) if qid not in queries else ("document", did)
                raise UsageError(f"{paths['qrels']}:{n}: {what} id {which!r} is not in the "
                                 f"folder's {what} file")
            qrels.setdefault(qid, {})[did] = score
    return corpus, queries, qrels


def _jsonl(path: str):
    for n, rec in read_jsonl(path, shape='{"_id": ...}'):
        if "_id" not in rec:
            raise UsageError(f'{path}:{n}: no "_id" field (BEIR files give every record one)')
        yield str(rec["_id"]), rec


def top_k(query_vecs: np.ndarray, doc_vecs: np.ndarray, k: int,
          chunk: int = 256) -> np.ndarray:
    """Indices of the ``k`` highest dot products per query, best first ([Q, k])."""
    k = min(k, len(doc_vecs))
    out = np.empty((len(query_vecs), k), dtype=np.int64)
    for start in range(0, len(query_vecs), chunk):
        scores = query_vecs[start:start + chunk] @ doc_vecs.T  # [q, N]
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def metrics(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]],
            k_values: Sequence[int] = K_VALUES) -> dict[str, float]:
    """nDCG@10, MRR@10 and Recall@k from ranked document ids per query (module docstring)."""
    totals: dict[str, float] = {"ndcg@10": 0.0, "mrr@10": 0.0}
    totals.update({f"recall@{k}": 0.0 for k in k_values})
    judged = [q for q in qrels if q in ranked]
    for qid in judged:
        rels, docs = qrels[qid], ranked[qid]
        dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(docs[:10]))
        ideal = sorted((s for s in rels.values() if s > 0), reverse=True)[:10]
        idcg = sum(s / math.log2(i + 2) for i, s in enumerate(ideal))
        totals["ndcg@10"] += dcg / idcg if idcg else 0.0
        first = next((i for i, d in enumerate(docs[:10]) if rels.get(d, 0) > 0), None)
        totals["mrr@10"] += 0.0 if first is None else 1.0 / (first + 1)
        relevant = {d for d, s in rels.items() if s > 0}
        for k in k_values:
            found = len(relevant.intersection(docs[:k]))
            totals[f"recall@{k}"] += found / len(relevant) if relevant else 0.0
    return {name: value / max(len(judged), 1) for name, value in totals.items()}


def evaluate_beir(encoder, folder: str | os.PathLike, split: str = "test",
                  instruction: str | None = None, batch_size: int = 32,
                  k_values: Sequence[int] = K_VALUES, **encode_kwargs) -> dict[str, float]:
    """Metrics of ``encoder`` on a BEIR folder; queries get ``instruction`` (None: the
    encoder's configured query instruction; "" none). ``encode_kwargs`` go to every encode
    (e.g. ``truncate_dim``)."""
    return evaluate_beir_instructions(encoder, folder, [instruction], split, batch_size,
                                      k_values, **encode_kwargs)[0]


def evaluate_beir_instructions(encoder, folder: str | os.PathLike,
                               instructions: Sequence[str | None], split: str = "test",
                               batch_size: int = 32, k_values: Sequence[int] = K_VALUES,
                               **encode_kwargs) -> list[dict[str, float]]:
    """``evaluate_beir`` once per query instruction, the documents encoded only once (they
    carry no instruction, and they are most of the work)."""
    corpus, queries, qrels = read_beir(folder, split)
    doc_ids = list(corpus)
    query_ids = [q for q in queries if q in qrels]
    kwargs = dict(batch_size=batch_size, normalize=True, **encode_kwargs)
    docs = encoder.encode_documents([corpus[d] for d in doc_ids], **kwargs)
    results = []
    for instruction in instructions:
        qvecs = encoder.encode_queries([queries[q] for q in query_ids],
                                       instruction=instruction, **kwargs)
        best = top_k(qvecs, docs, max(max(k_values), 10))
        ranked = {q: [doc_ids[j] for j in row] for q, row in zip(query_ids, best)}
        result = metrics(ranked, qrels, k_values)
        result.update(queries=len(query_ids), documents=len(doc_ids))
        results.append(result)
    return results
