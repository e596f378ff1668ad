"""Engine choices, measured side by side in one process: attention kernel (SDPA vs eager),
torch.compile (inductor, dynamic shapes), threads, and the order batches run in.

    .venv/bin/python benchmarks/bench_engine.py --corpus long --texts 16 --rounds 3 \
        --variants sdpa,eager,threads1,shortest_first
    .venv/bin/python benchmarks/bench_engine.py --corpus mixed --texts 100 --variants sdpa,compile

Same dequantized SmolLM2-135M weights (the folder bench_encode.py writes), fp32, default
token budget; rounds interleave the variants (rotating order) and medians are reported,
with each variant's largest difference from the SDPA vectors.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import WORKDIR, corpus  # noqa: E402
from llm2vec_rag.similarity import similarity_pairwise  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", choices=["mixed", "short", "long"], default="long")
    p.add_argument("--texts", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default="sdpa,eager")
    p.add_argument("--folder", default=os.path.join(WORKDIR, "smollm2"),
                   help="model folder (written by bench_encode.py --workdir)")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    from llm2vec_rag import LLM2Vec

    base = LLM2Vec.from_pretrained(args.folder, device="cpu", dtype="float32")
    texts = corpus(args.corpus, args.texts, base.tokenizer)
    real = sum(len(e.ids) for e in base.preprocessor.encode(texts))
    threads = torch.get_num_threads()
    runners, notes = {}, {}
    for name in args.variants.split(","):
        if name == "sdpa":
            runners[name] = (base, {})
        elif name == "eager":
            runners[name] = (LLM2Vec.from_pretrained(args.folder, device="cpu",
                                                     attn_implementation="eager"), {})
        elif name == "compile":
            model = LLM2Vec.from_pretrained(args.folder, device="cpu", compile=True)
            start = time.perf_counter()
            model.encode(texts[:4], show_progress=False)
            notes["compile (first call) s"] = round(time.perf_counter() - start, 1)
            start = time.perf_counter()
            model.encode(texts[4:12], batch_size=3, show_progress=False)  # new shapes
            notes["first call with new shapes s"] = round(time.perf_counter() - start, 1)
            runners[name] = (model, {})
        elif name == "bf16":  # precision changes: an option, never the CPU default
            runners[name] = (LLM2Vec.from_pretrained(args.folder, device="cpu",
                                                     dtype="bfloat16"), {})
        elif name == "autocast_bf16":  # fp32 weights and residual stream, bf16 matmuls
            runners[name] = (base, {"autocast": True})
        elif name == "threads1":
            runners[name] = (base, {"threads": 1})
        elif name == "shortest_first":
            runners[name] = (base, {"reverse": True})
        else:
            raise SystemExit(f"unknown variant {name!r}")

    def run(model, opts) -> tuple[float, np.ndarray]:
        torch.set_num_threads(opts.get("threads", threads))
        start = time.perf_counter()
        if opts.get("reverse"):  # same batches, run shortest first
            pre = model.preprocessor
            out = np.zeros((len(texts), model.dim), dtype=np.float32)
            for batch in reversed(list(pre.batches(pre.encode(texts), 32,
                                                   model.max_batch_tokens))):
                out[batch.index] = model.forward_batch(batch)
        elif opts.get("autocast"):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model.encode(texts, show_progress=False)
        else:
            out = model.encode(texts, show_progress=False)
        seconds = time.perf_counter() - start
        torch.set_num_threads(threads)
        return seconds, out

    ref_vectors = run(base, {})[1]  # also the warm-up
    times = {n: [] for n in runners}
    diffs = {}
    names = list(runners)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            seconds, out = run(*runners[name])
            times[name].append(seconds)
            diffs[name] = (float(np.abs(out - ref_vectors).max()),
                           float(similarity_pairwise(out, ref_vectors).min()))
    first = statistics.median(times[names[0]])
    print(f"\ncorpus {args.corpus}: {len(texts)} texts, {real} real tokens; torch threads "
          f"{threads}; {args.rounds} interleaved rounds, medians\n")
    print(f"| variant | real tokens/s | x {names[0]} | max abs diff vs fp32 SDPA | "
          "min cosine vs fp32 SDPA |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {real / med:.0f} | {first / med:.2f}x | {diffs[name][0]:.1e} | "
              f"{diffs[name][1]:.6f} |")
    print(f"\nruns (s): {json.dumps({k: [round(t, 2) for t in v] for k, v in times.items()})}")
    if notes:
        print(f"notes: {json.dumps(notes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
