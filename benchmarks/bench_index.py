"""Bulk indexing into the embedded Qdrant store vs pure encoding, and peak memory vs corpus size.

    python benchmarks/bench_index.py                # full: 300 articles x3 runs, 1k vs 20k docs
    python benchmarks/bench_index.py --quick        # a smoke run (20 articles, 200 vs 2k docs)

Throughput: the same encoder (default SmolLM2-135M GGUF) on the same chunks of
data/gensim/lee_background.cor: "encode" = encode_documents over the chunk texts only;
"index" = QdrantIndexer.index (read, chunk, embed, upload in a background thread) into a fresh
embedded store. Median docs/s over --runs. Memory: peak RSS of a fresh process indexing N
synthetic documents with a tiny random model (so it is quick); note that qdrant-client's local
mode keeps every point in RAM by design, so its share grows with N while ours stays flat.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA as DATA_DIR  # noqa: E402
from common import ROOT, smollm2_gguf  # noqa: E402

DATA = os.path.join(DATA_DIR, "lee_background.cor")

MEMORY_CHILD = r"""
import sys, threading, time
import psutil
sys.path.insert(0, sys.argv[4])
from tiny import CORPUS, make_tiny_model
from llm2vec_rag import LLM2Vec
from llm2vec_rag.integrations.qdrant import QdrantIndexer
n, store, model_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
enc = LLM2Vec.from_pretrained(make_tiny_model(model_dir), device="cpu")
proc, peak, done = psutil.Process(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.02)
def docs():
    for i in range(n):
        yield {"id": f"d{i}", "text": " ".join(CORPUS[(i + j) % len(CORPUS)] for j in range(3))}
with QdrantIndexer(enc, "mem", path=store, chunk_size=64, batch_size=256) as ix:
    ix.index(["warm up"], show_progress=False)
    base = proc.memory_info().rss
    threading.Thread(target=sample, daemon=True).start()
    report = ix.index(docs(), show_progress=False)
    done.set()
    assert ix.count() >= n, ix.count()
print(base / 2**20, max(peak[0], base) / 2**20, report.seconds)
"""


def throughput(model: str, limit: int, runs: int, chunk_size: int, batch_size: int = 64,
               max_batch_tokens: int | None = None) -> dict:
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    encoder = LLM2Vec.from_pretrained(model, device="cpu", cache=True)
    encode_options = {"batch_size": batch_size, "max_batch_tokens": max_batch_tokens}
    with open(DATA, encoding="utf-8") as f:
        docs = [{"id": f"lee-{n}", "text": line.strip()}
                for n, line in enumerate(f) if line.strip()][:limit]
    probe = QdrantIndexer(encoder, path=":memory:", chunk_size=chunk_size)
    chunks = [c for d in docs for c in probe.chunker.chunk(d["text"])]
    probe.close()
    encode_rates, index_rates = [], []
    for _ in range(runs):
        start = time.perf_counter()
        encoder.encode_documents(chunks, normalize=True, show_progress=False, **encode_options)
        encode_rates.append(len(docs) / (time.perf_counter() - start))
        with tempfile.TemporaryDirectory() as tmp, QdrantIndexer(
                encoder, path=os.path.join(tmp, "q"), chunk_size=chunk_size,
                **encode_options) as ix:
            report = ix.index(docs, show_progress=False)
            assert report.indexed == len(docs)
            index_rates.append(report.docs_per_s)
    return {"docs": len(docs), "chunks": len(chunks), "encode": statistics.median(encode_rates),
            "index": statistics.median(index_rates)}


def peak_rss(n: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(n), os.path.join(tmp, "q"),
             os.path.join(tmp, "model"), os.path.join(ROOT, "tests")],
            capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
        before, peak, seconds = map(float, out.stdout.split()[-3:])
        return before, peak, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="encoder for throughput (default SmolLM2)")
    p.add_argument("--quick", action="store_true", help="small sizes: checks that it works")
    p.add_argument("--limit", type=int, default=None, help="articles (default 300, quick 20)")
    p.add_argument("--runs", type=int, default=None, help="runs, median taken (default 3)")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64, help="chunks per encode batch")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="token budget per encode batch (default: the encoder's)")
    p.add_argument("--no-memory", action="store_true", help="throughput only")
    p.add_argument("--sizes", type=int, nargs=2, default=None, metavar=("SMALL", "LARGE"),
                   help="documents for the memory runs (default 1000 20000, quick 200 2000)")
    args = p.parse_args(argv)
    limit = args.limit or (20 if args.quick else 300)
    runs = args.runs or (1 if args.quick else 3)
    sizes = args.sizes or ((200, 2000) if args.quick else (1000, 20000))
    args.model = args.model or smollm2_gguf()

    t = throughput(args.model, limit, runs, args.chunk_size, args.batch_size,
                   args.max_batch_tokens)
    mem = {} if args.no_memory else {n: peak_rss(n) for n in sizes}
    command = " ".join(["python", "benchmarks/bench_index.py", *map(shlex.quote, argv
                                                                     or sys.argv[1:])])
    print(f"\n`{command}`  ({'QUICK, noisy' if args.quick else 'full'}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"model {os.path.basename(args.model)}, chunk {args.chunk_size} tokens, "
          f"median of {runs})\n")
    print("| corpus | encode-only docs/s | index docs/s | index / encode |")
    print("|---|---|---|---|")
    print(f"| lee_background, {t['docs']} docs ({t['chunks']} chunks) | {t['encode']:.2f} | "
          f"{t['index']:.2f} | {t['index'] / t['encode']:.0%} |")
    print("\n| documents (tiny model) | RSS before index, MiB | peak RSS while indexing, MiB "
          "| growth, MiB | index s |")
    print("|---|---|---|---|---|")
    for n, (before, peak, seconds) in mem.items():
        print(f"| {n} | {before:.0f} | {peak:.0f} | {peak - before:.0f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
