"""Retrieval per byte of a Matryoshka-trained model against the bundled one (issue #29, item 5):
nDCG@10 / Recall@10 at full, 256, 128 and 64 dimensions, each with float32, int8 and binary
output, on the held-out retrieval sets; Lee Spearman at each dimension.

    .venv/bin/python benchmarks/bench_matryoshka.py \
        --model bundle=default \
        --model matryoshka=default,out/matryoshka/supervised

A model is ``NAME=ADAPTERS``: a comma-separated adapter chain on the bundled base
(SmolLM2-135M GGUF), where ``default`` stands for the bundled chain (MNTP, SimCSE, supervised).
The first model is the reference every row is compared with. Each model encodes every set
once, float32 and normalised (vectors kept in ``--work-dir``, reused while the encoder's source
is the same); every row is scored from those vectors as ``encode(truncate_dim=d,
precision=p)`` would return them (``llm2vec_rag.quantize``):

- float32: the first ``d`` dimensions, renormalised, cosine;
- int8: the truncated vectors quantized with ranges calibrated on that set's corpus (queries
  with the same ranges), scored by the dot of the codes (what an int8 index computes);
- binary: the sign bits of the truncated vectors, scored by Hamming distance.

"vs reference" is the paired bootstrap (2000 resamples over queries, 95% interval) of the
per-query nDCG@10 difference to the reference model at the same dimension and precision.
Queries get each model's own query instruction (``encode_queries``). Output: ``rows.jsonl``
and ``table.md`` in ``--out-dir``. ``--dims 576 --precisions float32`` scores the full-size
float32 rows only (e.g. a model trained without Matryoshka dims).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_precision import hamming_scores  # noqa: E402
from gate import SETS, ensure_sets, paired_bootstrap  # noqa: E402

from common import ROOT  # noqa: E402

DIMS = (576, 256, 128, 64)
PRECISIONS = ("float32", "int8", "binary")


def parse_model(spec: str) -> tuple[str, list[str]]:
    """``NAME=a,b,...`` -> (name, adapter chain), ``default`` expanded to the bundled chain."""
    from llm2vec_rag.default_model import DEFAULT_ADAPTERS

    name, sep, chain = spec.partition("=")
    if not sep or not name or not chain:
        raise SystemExit(f"--model {spec!r}: expected NAME=ADAPTER[,ADAPTER...] "
                         f"(e.g. bundle=default)")
    adapters: list[str] = []
    for part in chain.split(","):
        adapters += list(DEFAULT_ADAPTERS) if part == "default" else [os.path.abspath(part)]
    return name, adapters


def cached(path: str, encoder, compute) -> dict:
    """``compute()``'s arrays, kept in ``path`` and reused while the encoder's source is the
    same (a scoring change re-runs without encoding)."""
    source = json.dumps(encoder.source, sort_keys=True)
    if os.path.isfile(path):
        saved = np.load(path, allow_pickle=False)
        if str(saved["source"]) == source:
            return dict(saved)
    out = compute()
    np.savez(path, **out, source=np.array(source))
    return out


def vectors(encoder, folder: str, work: str, name: str) -> tuple[dict, dict]:
    """Float32 unit vectors of a BEIR set's corpus and judged queries (kept in ``work``),
    and the set's judgements."""
    from llm2vec_rag.training.retrieval import read_beir

    corpus, queries, qrels = read_beir(folder)

    def encode() -> dict:
        doc_ids = list(corpus)
        query_ids = [q for q in queries if q in qrels]
        return dict(doc_ids=np.array(doc_ids), query_ids=np.array(query_ids),
                    docs=encoder.encode_documents([corpus[d] for d in doc_ids], batch_size=16,
                                                  normalize=True),
                    queries=encoder.encode_queries([queries[q] for q in query_ids],
                                                   batch_size=16, normalize=True))

    path = os.path.join(work, f"{name}-{os.path.basename(folder.rstrip('/'))}.npz")
    return cached(path, encoder, encode), qrels


def truncate(x: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` dimensions, renormalised (what ``truncate_dim`` returns)."""
    x = x[:, :dim]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def scores(qs: np.ndarray, docs: np.ndarray, dim: int, precision: str) -> np.ndarray:
    """Query x document scores of ``encode(truncate_dim=dim, precision=precision)`` output."""
    from llm2vec_rag.quantize import calibration_ranges, quantize

    q, d = truncate(qs, dim), truncate(docs, dim)
    if precision == "float32":
        return q @ d.T
    if precision == "int8":
        ranges = calibration_ranges(d)
        return (quantize(q, "int8", ranges).astype(np.float32)
                @ quantize(d, "int8", ranges).astype(np.float32).T)
    return hamming_scores(quantize(q, "ubinary"), quantize(d, "ubinary")).astype(np.float32)


def per_query_metrics(s: np.ndarray, saved: dict, qrels: dict) -> tuple[np.ndarray, float]:
    """Per-query nDCG@10 and the mean Recall@10 of a score matrix."""
    from llm2vec_rag.training.retrieval import metrics

    doc_ids = [str(x) for x in saved["doc_ids"]]
    top = np.argsort(-s, axis=1, kind="stable")[:, :10]
    ndcg, recall = [], []
    for qid, row in zip((str(x) for x in saved["query_ids"]), top):
        m = metrics({qid: [doc_ids[j] for j in row]}, {qid: qrels[qid]})
        ndcg.append(m["ndcg@10"])
        recall.append(m["recall@10"])
    return np.array(ndcg), float(np.mean(recall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="NAME=ADAPTER[,ADAPTER...] ('default' = the bundled chain); "
                             "the first is the reference")
    parser.add_argument("--sets", nargs="+", default=SETS, help="held-out BEIR folders")
    parser.add_argument("--dims", nargs="+", type=int, default=list(DIMS),
                        help="embedding sizes to score (default: %(default)s)")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="output precisions to score (default: all)")
    parser.add_argument("--machine", default=platform.processor() or platform.machine())
    parser.add_argument("--work-dir", default=os.path.join(ROOT, "out", "bench-matryoshka"))
    parser.add_argument("--out-dir", default=os.path.join(ROOT, "benchmarks", "results",
                                                          "issue29", "matryoshka"))
    args = parser.parse_args()

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.default_model import smollm2_gguf
    from llm2vec_rag.training.evaluate import pairs_spearman, read_lee

    ensure_sets(args.sets)
    os.makedirs(args.work_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    models = [parse_model(m) for m in args.model]
    lee_docs, lee_ratings = read_lee()
    per_query: dict[tuple, np.ndarray] = {}
    rows = []
    for name, adapters in models:
        start = time.perf_counter()
        encoder = LLM2Vec.from_pretrained(smollm2_gguf(), adapters=adapters, device="cpu",
                                          cache=True)

        def lee_vectors(enc=encoder) -> dict:  # documents, as lee_spearman encodes them
            return dict(docs=enc.encode(lee_docs, batch_size=8, normalize=True))

        lee_vecs = cached(os.path.join(args.work_dir, f"{name}-lee.npz"), encoder,
                          lee_vectors)["docs"]
        sets = {os.path.basename(f.rstrip("/")): vectors(encoder, f, args.work_dir, name)
                for f in args.sets}
        print(f"{name}: encoded in {time.perf_counter() - start:.0f} s", flush=True)
        for dim in args.dims:
            lee = pairs_spearman(truncate(lee_vecs, dim), lee_ratings)
            for precision in args.precisions:
                row = dict(model=name, adapters=[os.path.relpath(a, ROOT) for a in adapters],
                           dim=dim, precision=precision,
                           lee=round(float(lee), 4) if precision == "float32" else None)
                for set_name, (saved, qrels) in sets.items():
                    ndcg, recall = per_query_metrics(
                        scores(saved["queries"], saved["docs"], dim, precision), saved, qrels)
                    per_query[(name, set_name, dim, precision)] = ndcg
                    ref = per_query.get((models[0][0], set_name, dim, precision))
                    diff = ndcg - ref
                    row[set_name] = dict(queries=len(ndcg), ndcg10=round(float(ndcg.mean()), 4),
                                         recall10=round(recall, 4),
                                         delta=round(float(diff.mean()), 4),
                                         delta_ci95=paired_bootstrap(diff))
                rows.append(row)
        del encoder

    with open(os.path.join(args.out_dir, "rows.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    names = list(sets)
    ref = models[0][0]
    lines = [f"Machine: {args.machine}. Reference: {ref}.", "",
             "| model | dims | output | bytes | " + " | ".join(
                 f"{n} nDCG@10 (R@10) vs {ref} [95% CI]" for n in names) + " | Lee |",
             "|---|---|---|---|" + "---|" * (len(names) + 1)]
    for r in rows:
        nbytes = {"float32": 4 * r["dim"], "int8": r["dim"], "binary": r["dim"] // 8}
        cells = [f"{r[n]['ndcg10']:.4f} ({r[n]['recall10']:.3f}) {r[n]['delta']:+.4f} "
                 f"[{r[n]['delta_ci95'][0]:+.4f}, {r[n]['delta_ci95'][1]:+.4f}]" for n in names]
        lee = f"{r['lee']:.4f}" if r["lee"] is not None else ""
        lines.append(f"| {r['model']} | {r['dim']} | {r['precision']} | "
                     f"{nbytes[r['precision']]} | " + " | ".join(cells) + f" | {lee} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
