"""Encode throughput: llm2vec-rag vs the reference llm2vec 0.2.3, side by side in one run.

    .venv/bin/python benchmarks/bench_encode.py --texts 600 --rounds 5

Both implementations run as persistent worker processes (the reference in .venv-ref, built
by scripts/setup_reference_env.sh) on the same dequantized SmolLM2-135M weights and the same
mixed-length corpus; rounds alternate between them and medians are reported, with achieved
FLOP/s against this machine's measured fp32 matrix-multiply peak (2 x non-embedding
parameters per real token; attention score FLOPs are not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from common import ROOT, matmul_peak_gflops, mixed_corpus, smollm2_gguf  # noqa: E402


# ---------------------------------------------------------------- workers (one per process)
def worker(kind: str, folder: str, corpus_path: str, batch_size: int) -> None:
    with open(corpus_path, encoding="utf-8") as f:
        texts = json.load(f)
    if kind == "ours":
        from llm2vec_rag import LLM2Vec

        model = LLM2Vec.from_pretrained(folder, device="cpu", dtype="float32")

        def run() -> None:
            model.encode(texts, batch_size=batch_size, show_progress=False)
    else:
        from llm2vec import LLM2Vec as RefLLM2Vec
        from ref_encode import load_plain

        ref = RefLLM2Vec(*load_plain(folder), pooling_mode="mean", max_length=512)
        pairs = [["", t] for t in texts]

        def run() -> None:
            ref.encode(pairs, batch_size=batch_size, show_progress_bar=False)
    run()  # warm-up
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        run()
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


# ---------------------------------------------------------------- driver
class Worker:
    def __init__(self, python: str, kind: str, folder: str, corpus: str, batch_size: int):
        self.proc = subprocess.Popen(
            [python, __file__, "--worker", kind, "--folder", folder, "--corpus", corpus,
             "--batch-size", str(batch_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{kind} worker failed to start")

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=600)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--ref-python", default=os.path.join(ROOT, ".venv-ref", "bin", "python"))
    p.add_argument("--worker", choices=["ours", "ref"])
    p.add_argument("--folder")
    p.add_argument("--corpus")
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.folder, args.corpus, args.batch_size)

    from plain_export import write_plain_folder

    from llm2vec_rag import LLM2Vec

    texts = mixed_corpus(args.texts)
    tmp = tempfile.mkdtemp(prefix="bench-encode-")
    corpus_path = os.path.join(tmp, "corpus.json")
    with open(corpus_path, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    ours = LLM2Vec.from_pretrained(smollm2_gguf(), device="cpu")
    folder = os.path.join(tmp, "smollm2")
    ours.save_pretrained(folder)
    write_plain_folder(ours, os.path.join(tmp, "smollm2-plain"))
    tokens = sum(len(e.ids) for e in ours.preprocessor.encode(texts))
    embed = ours.model.get_input_embeddings().weight.numel()
    flops_per_token = 2 * (sum(p.numel() for p in ours.model.parameters()) - embed)
    del ours

    peak = matmul_peak_gflops()
    workers = {
        "llm2vec-rag (PyTorch, fp32)": Worker(sys.executable, "ours", folder, corpus_path,
                                              args.batch_size),
        "llm2vec 0.2.3 (reference)": Worker(args.ref_python, "ref",
                                            os.path.join(tmp, "smollm2-plain"), corpus_path,
                                            args.batch_size),
    }
    times: dict[str, list[float]] = {name: [] for name in workers}
    for _ in range(args.rounds):
        for name, w in workers.items():  # interleaved rounds: noise hits both alike
            times[name].append(w.run())
    for w in workers.values():
        w.close()
    peak = max(peak, matmul_peak_gflops())

    ref_name = "llm2vec 0.2.3 (reference)"
    ref_median = statistics.median(times[ref_name])
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads default; fp32 matmul peak {peak:.0f} GFLOP/s")
    print(f"corpus: {len(texts)} texts, {tokens} real tokens (mean {tokens / len(texts):.0f}); "
          f"batch {args.batch_size}; {args.rounds} interleaved rounds, medians\n")
    print("| implementation | texts/s | real tokens/s | GFLOP/s | % of peak | vs reference |")
    print("|---|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        gflops = tokens * flops_per_token / med / 1e9
        print(f"| {name} | {len(texts) / med:.1f} | {tokens / med:.0f} | {gflops:.0f} | "
              f"{100 * gflops / peak:.0f}% | {ref_median / med:.2f}x |")
    print(f"\nruns (s): {json.dumps({k: [round(t, 2) for t in v] for k, v in times.items()})}")


if __name__ == "__main__":
    main()
