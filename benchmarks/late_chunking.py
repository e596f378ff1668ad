"""Naive vs late chunking on held-out long-document retrieval (issue 28).

Data: the Debian Reference (``debian-reference-en``, ``scripts/fetch_pairs_data.sh``), a book
no training or tuning step here reads (``benchmarks/build_heldout.py`` says why). Each numbered
section with at least two subsections ("9.3 Data storage tips") is a **document**: its own
text, then its subsections' texts, joined by blank lines, **without any heading**. Each
subsection's text is a **chunk** (the section's own text before its first subsection is a
chunk too, with no query). A **query** is a subsection's heading ("Using SMART to predict
hard disk failure"), relevant to that subsection's chunk only (score 1); headings that occur
twice, and chunks under ``--min-words`` words, give no query. Headings appear nowhere in the
documents, so neither method sees the answer's title.

- naive: every chunk encoded alone (``encode_documents``);
- late: every document encoded once and each chunk pooled over its own span
  (``encode_chunks``; documents longer than ``max_length`` are covered by overlapping windows).

Queries carry the model's query instruction (``encode_queries``). Chunk-level nDCG@10,
Recall@10 and MRR@10 over the whole chunk pool (``llm2vec_rag.training.retrieval.metrics``),
plus the cost: forward passes' real and padded tokens (counted by a hook on the model's
forward) and wall seconds.

    python benchmarks/late_chunking.py --out benchmarks/results/issue28/late_chunking.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_heldout import SOURCE, sections  # noqa: E402

SEPARATOR = "\n\n"


def build(source: str = SOURCE, min_words: int = 20) -> tuple[list[dict], list[dict]]:
    """(documents ``{"id", "text", "chunks": [{"id", "start", "end"}]}``, queries
    ``{"id", "text", "chunk"}``) as the module docstring describes."""
    found = sections(source)
    by_id = {s["id"]: s for s in found}
    children: dict[str, list[dict]] = defaultdict(list)
    for s in found:
        parent = s["id"].rsplit(".", 1)[0]
        if s["id"].count(".") == 2 and parent in by_id:
            children[parent].append(s)
    docs, heads = [], []
    for parent, subs in children.items():
        if len(subs) < 2:
            continue
        parts = ([(f"{parent}.0", by_id[parent]["text"], None)] if by_id[parent]["text"]
                 else []) + [(s["id"], s["text"], s["heading"]) for s in subs if s["text"]]
        text, chunks = "", []
        for cid, body, heading in parts:
            if text:
                text += SEPARATOR
            chunks.append({"id": f"debref-{cid}", "start": len(text),
                           "end": len(text) + len(body)})
            text += body
            if heading and len(body.split()) >= min_words:
                heads.append((heading, f"debref-{cid}"))
        docs.append({"id": f"debref-{parent}", "text": text, "chunks": chunks})
    counts = Counter(h.lower() for h, _ in heads)
    queries = [{"id": f"q-{cid}", "text": h, "chunk": cid} for h, cid in heads
               if counts[h.lower()] == 1]
    return docs, queries


class TokenCounter:
    """Counts the real (attention mask) and padded tokens of every forward pass of a torch
    module, through a public forward pre-hook."""

    def __init__(self, module) -> None:
        self.real = self.padded = self.passes = 0
        self.handle = module.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        shape = (mask if mask is not None else ids).shape
        self.passes += 1
        self.padded += int(shape[0] * shape[1])
        self.real += int(mask.sum()) if mask is not None else int(shape[0] * shape[1])

    def take(self) -> dict:
        out = {"forward_real_tokens": self.real, "forward_padded_tokens": self.padded,
               "forward_passes": self.passes}
        self.real = self.padded = self.passes = 0
        return out


def run(encoder, docs: list[dict], queries: list[dict], batch_size: int = 8) -> dict:
    import numpy as np

    from llm2vec_rag.training.retrieval import metrics, top_k

    chunk_ids = [c["id"] for d in docs for c in d["chunks"]]
    chunk_texts = [d["text"][c["start"]:c["end"]] for d in docs for c in d["chunks"]]
    counter = TokenCounter(encoder.model)
    t = time.perf_counter()
    qvecs = encoder.encode_queries([q["text"] for q in queries], batch_size=batch_size,
                                   normalize=True)
    query_cost = {**counter.take(), "seconds": round(time.perf_counter() - t, 1)}
    results = {}
    for method in ("naive", "late"):
        t = time.perf_counter()
        if method == "naive":
            vecs = encoder.encode_documents(chunk_texts, batch_size=batch_size, normalize=True)
        else:
            per_doc = encoder.encode_chunks([d["text"] for d in docs],
                                            [[(c["start"], c["end"]) for c in d["chunks"]]
                                             for d in docs],
                                            batch_size=batch_size, normalize=True)
            vecs = np.concatenate(per_doc)
        cost = {**counter.take(), "seconds": round(time.perf_counter() - t, 1)}
        best = top_k(qvecs, vecs, 100)
        ranked = {q["id"]: [chunk_ids[j] for j in row] for q, row in zip(queries, best)}
        qrels = {q["id"]: {q["chunk"]: 1} for q in queries}
        scores = metrics(ranked, qrels)
        results[method] = {**{k: round(v, 4) for k, v in scores.items()}, **cost}
    counter.handle.remove()
    return {"queries": len(queries), "chunks": len(chunk_ids), "documents": len(docs),
            "query_encoding": query_cost, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=SOURCE)
    parser.add_argument("--min-words", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-doc-words", type=int, default=None,
                        help="only documents of at most this many words (a smaller run)")
    parser.add_argument("--out", default=None, help="write the JSON result here too")
    args = parser.parse_args()
    if not os.path.isfile(args.source):
        raise SystemExit(f"{args.source} not found: run scripts/fetch_pairs_data.sh "
                         "debian-reference-en")
    docs, queries = build(args.source, args.min_words)
    if args.max_doc_words:
        docs = [d for d in docs if len(d["text"].split()) <= args.max_doc_words]
        kept = {c["id"] for d in docs for c in d["chunks"]}
        queries = [q for q in queries if q["chunk"] in kept]
    import torch

    from llm2vec_rag.default_model import load_default_model

    encoder = load_default_model()
    result = run(encoder, docs, queries, args.batch_size)
    words = [len(d["text"].split()) for d in docs]
    result.update(model="bundled (llm2vec_rag.default_model)", pooling=encoder.config.pooling,
                  max_length=encoder.config.max_length,
                  words_per_document=round(sum(words) / len(words), 1),
                  machine=f"{platform.processor() or platform.machine()}, "
                          f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores")
    print(json.dumps(result, indent=2))
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
