"""The Ray Data path (``index_dataset``) vs the single-process ``QdrantIndexer`` at equal cores
(issue #11), both into the embedded Qdrant store.

    .venv/bin/python benchmarks/bench_ray.py
    .venv/bin/python benchmarks/bench_ray.py --docs 100 --runs 1
    .venv/bin/python benchmarks/bench_ray.py --docs 2619 --skip-one-actor

Documents: the sentences of data/gensim/lee_background.cor (2,619; ~23 words each), the
first ``--docs`` of them, one chunk each. Encoder: the real default model
(``load_default_model``, SmolLM2-135M + the bundled adapters) through its ``EncoderSpec``.
Cores: ``ray.init(num_cpus=C)`` against one process with C torch threads. Ray settings: 1
actor x C threads, and C actors x 1 thread (each actor then asks for 0.75 CPU so that the
chunking tasks, 0.5 CPU each, still get scheduled). Times are end to end (``report.seconds``:
the Ray path includes its encoder probe and the actors' model load, the single process its
run only; its model load is reported apart). Repeats are interleaved; medians are reported.
The 10k-document time is projected from each measured rate (fixed start-up + per-document
time, both measured: start-up = the time to index ``--small`` documents minus their share).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import lee_sentences  # noqa: E402


def single(encoder, docs: list[dict]) -> float:
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    with tempfile.TemporaryDirectory() as tmp, QdrantIndexer(
            encoder, "kb", path=os.path.join(tmp, "q"), chunk_size=256) as ix:
        report = ix.index(docs, show_progress=False)
        assert report.indexed == len(docs), report
        return report.seconds


def with_ray(spec, docs: list[dict], actors: int, threads: int) -> float:
    import ray

    from llm2vec_rag.integrations.ray import index_dataset

    with tempfile.TemporaryDirectory() as tmp:
        report = index_dataset(ray.data.from_items(docs), spec, collection="kb",
                               path=os.path.join(tmp, "q"), chunk_size=256,
                               concurrency=actors, threads_per_worker=threads,
                               num_cpus=1 if actors == 1 else 0.75, batch_size=64)
        assert report.indexed == len(docs), report
        return report.seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=800)
    p.add_argument("--small", type=int, default=100, help="run size that measures start-up")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--skip-one-actor", action="store_true",
                   help="leave out the 1 actor x C threads setting (halves a long run)")
    args = p.parse_args(argv)

    import ray
    import torch

    from llm2vec_rag.default_model import load_default_model

    torch.set_num_threads(args.cores)
    start = time.perf_counter()
    encoder = load_default_model(device="cpu")
    load_s = time.perf_counter() - start
    spec = encoder.spec
    docs = [{"id": f"lee-s{i}", "text": t} for i, t in enumerate(lee_sentences()[:args.docs])]
    tokens = sum(len(encoder.tokenizer(d["text"])["input_ids"]) for d in docs)
    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    settings = {"single process": lambda d: single(encoder, d),
                f"ray, 1 actor x {args.cores} threads":
                    lambda d: with_ray(spec, d, 1, args.cores),
                f"ray, {args.cores} actors x 1 thread":
                    lambda d: with_ray(spec, d, args.cores, 1)}
    if args.skip_one_actor:
        del settings[f"ray, 1 actor x {args.cores} threads"]
    try:
        encoder.encode(["warm up"], show_progress=False)
        times: dict[str, list[float]] = {k: [] for k in settings}
        small: dict[str, float] = {}
        for name, fn in settings.items():  # start-up: one small run each
            small[name] = fn(docs[:args.small])
        for _ in range(args.runs):
            for name, fn in settings.items():
                times[name].append(fn(docs))
                print(name, round(times[name][-1], 1), "s", flush=True)
    finally:
        ray.shutdown()

    n, m = len(docs), args.small
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.cores} used; torch {torch.__version__}, ray {ray.__version__}; {n} Lee "
          f"sentences ({tokens} tokens); medians of {args.runs} interleaved runs; default "
          f"model load {load_s:.1f} s (not in the single-process times)")
    print("| path | median s | docs/s (measured) | tokens/s | vs single process | "
          "start-up s | 10k docs, min (projected) |")
    print("|---|---|---|---|---|---|---|")
    base = statistics.median(times["single process"])
    for name in settings:
        t = statistics.median(times[name])
        per_doc = max((t - small[name]) / (n - m), 1e-9)  # marginal seconds per document
        startup = max(t - n * per_doc, 0.0)
        print(f"| {name} | {t:.1f} | {n / t:.1f} | {tokens / t:.0f} | {base / t:.2f}x | "
              f"{startup:.1f} | {(startup + 10_000 * per_doc) / 60:.1f} |")
    print("raw:", {k: [round(x, 1) for x in v] for k, v in times.items()},
          "small runs:", {k: round(v, 1) for k, v in small.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
