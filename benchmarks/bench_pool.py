"""Multi-process pool vs one process at equal cores (issue #11).

    .venv/bin/python benchmarks/bench_pool.py
    .venv/bin/python benchmarks/bench_pool.py --texts 60 --runs 1

The real default model (``load_default_model``, its ``EncoderSpec``) on a mixed-length Lee
corpus (1-8 sentences per text). On a CPU machine with C cores: N pool workers x k threads
against 1 process x N*k threads (C = N*k). Workers are started once and warmed up; each
repeat times ``encode(texts, pool=pool)`` against ``encode(texts)`` back to back
(interleaved), and the medians are reported. The vectors are checked to agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import mixed_corpus  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--texts", type=int, default=120)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)

    import torch

    from llm2vec_rag.default_model import load_default_model

    threads = max(1, args.cores // args.workers)
    torch.set_num_threads(args.workers * threads)
    encoder = load_default_model(device="cpu")
    texts = mixed_corpus(args.texts)
    tokens = sum(len(encoder.tokenizer(t)["input_ids"]) for t in texts)
    encoder.encode(texts[:8], show_progress=False)  # warm-up
    pool = encoder.start_multi_process_pool(["cpu"] * args.workers, threads_per_worker=threads,
                                            chunk_size=16, min_texts=1)
    try:
        encoder.encode(texts[:32], pool=pool, show_progress=False)  # warm every worker
        single, pooled = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            ref = encoder.encode(texts, show_progress=False)
            single.append(time.perf_counter() - start)
            start = time.perf_counter()
            got = encoder.encode(texts, pool=pool, show_progress=False)
            pooled.append(time.perf_counter() - start)
            np.testing.assert_allclose(got, ref, atol=1e-4)
    finally:
        encoder.stop_multi_process_pool(pool)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; {len(texts)} mixed Lee texts, {tokens} tokens; "
          f"medians of {args.runs} interleaved runs")
    print("| setting | median s | docs/s | tokens/s | vs 1 process |")
    print("|---|---|---|---|---|")
    base = statistics.median(single)
    for name, times in ((f"1 process x {args.workers * threads} threads", single),
                        (f"pool: {args.workers} processes x {threads} thread(s)", pooled)):
        t = statistics.median(times)
        print(f"| {name} | {t:.2f} | {len(texts) / t:.2f} | {tokens / t:.0f} | "
              f"{base / t:.2f}x |")
    print("raw seconds: single", [round(x, 2) for x in single], "pool",
          [round(x, 2) for x in pooled])
    return 0


if __name__ == "__main__":
    sys.exit(main())
