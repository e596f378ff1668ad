"""Encode throughput: llm2vec-rag vs the reference llm2vec 0.2.3, side by side in one run.

    .venv/bin/python benchmarks/bench_encode.py --corpus mixed --texts 300 --rounds 3
    .venv/bin/python benchmarks/bench_encode.py --corpus long --texts 32 --rounds 3
    .venv/bin/python benchmarks/bench_encode.py --corpus mixed --texts 100 \
        --profile --variants default
    .venv/bin/python benchmarks/bench_encode.py --corpus long --texts 32 --profile  # budget, rows

Both implementations run as persistent worker processes (the reference in .venv-ref, built
by scripts/setup_reference_env.sh) on the same dequantized SmolLM2-135M weights and the same
corpus: mixed (1-8 Lee sentences), short (~20 tokens) or long (512 tokens). Rounds alternate
between them (the order rotates) and medians are reported, with achieved FLOP/s against
this machine's fp32 matrix-multiply peak measured in the same run (2 x non-embedding
parameters per real token; attention score FLOPs are not counted). ``--profile`` prints
where our encoder's time goes instead, for each of ``--variants`` (torch.profiler, top
operators).

``--dtypes float32,bfloat16`` runs both implementations at each weight dtype (ours:
``dtype=``; the reference: ``torch_dtype=`` in its own ``LLM2Vec.from_pretrained``), all
workers interleaved in the same rounds, each of ours compared with the reference at the same
dtype:

    .venv/bin/python benchmarks/bench_encode.py --corpus mixed --texts 200 --rounds 3 \
        --variants default --dtypes float32,bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from common import (  # noqa: E402
    ROOT,
    WORKDIR,
    corpus,
    linear_ceiling_tokens_s,
    machine_line,
    matmul_peak_gflops,
    smollm2_gguf,
)

REF = "llm2vec 0.2.3 (reference)"
# Weight dtypes both sides take (the reference has no autocast choice).
DTYPES = ("float32", "bfloat16", "float16")
# Our variants: (label, encode options). "rows only" is the pre-budget behaviour.
OURS = {"default": ("llm2vec-rag (default: token budget)", {}),
        "rows": ("llm2vec-rag, batches of 32 rows only (before)",
                 {"max_batch_tokens": 10**9}),
        "glibc": ("llm2vec-rag, token budget, glibc malloc as it comes",
                  {"env": {"LLM2VEC_RAG_MALLOC": "default"}}),
        # what a user gets without choosing: bf16 autocast on a CPU with native bf16
        "cpu-default": ("llm2vec-rag, the CPU's default dtype", {"dtype": "auto"})}


def resolved(dtype: str) -> str:
    """What a variant's dtype means on this machine ("auto": the CPU's default)."""
    from llm2vec_rag.model import default_cpu_dtype

    return default_cpu_dtype() if dtype == "auto" else dtype


# ---------------------------------------------------------------- workers (one per process)
def worker(kind: str, folder: str, corpus_path: str, batch_size: int, options: dict) -> None:
    warnings.simplefilter("ignore")  # long texts are truncated at 512 on purpose
    with open(corpus_path, encoding="utf-8") as f:
        texts = json.load(f)
    batch_size = options.pop("batch_size", batch_size)
    dtype = options.pop("dtype", "float32")
    if kind == "ours":
        from llm2vec_rag import LLM2Vec

        load = {k: options.pop(k) for k in ("compile", "attn_implementation") if k in options}
        model = LLM2Vec.from_pretrained(folder, device="cpu", dtype=dtype, **load)

        def run() -> np.ndarray:
            return model.encode(texts, batch_size=batch_size, show_progress=False, **options)
    else:
        import torch
        from llm2vec import LLM2Vec as RefLLM2Vec

        # The reference loads as its users load it, through its own from_pretrained, which
        # passes torch_dtype on to transformers; doc_max_length: its default (400) cuts every
        # text over 400 tokens by words before it tokenizes, so it would encode fewer tokens
        # than it is credited with here; at 512 both sides encode the same tokens (the parity
        # tests' setting).
        ref = RefLLM2Vec.from_pretrained(reference_folder(folder), pooling_mode="mean",
                                         max_length=512, doc_max_length=512,
                                         torch_dtype=getattr(torch, dtype))
        pairs = [["", t] for t in texts]

        def run() -> np.ndarray:
            return np.asarray(ref.encode(pairs, batch_size=batch_size, show_progress_bar=False))
    start = time.perf_counter()  # warm-up (and the compile, when asked) on a slice
    if kind == "ours":
        model.encode(texts[:32], batch_size=batch_size, show_progress=False, **options)
    else:
        ref.encode(pairs[:32], batch_size=batch_size, show_progress_bar=False)
    print(json.dumps({"warmup": time.perf_counter() - start}), flush=True)
    vectors = None
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "save":  # the last run's vectors, to check both sides did the same work
            np.save(arg, vectors)
            print(json.dumps({"saved": arg}), flush=True)
            continue
        if command != "run":
            break
        start = time.perf_counter()
        vectors = run()
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def reference_folder(plain: str) -> str:
    """A transformers model folder of the plain weights, written once by the reference's own
    transformers (4.44), so that its ``LLM2Vec.from_pretrained`` loads it (with
    ``torch_dtype``). Runs in the reference environment."""
    import shutil

    from ref_encode import load_plain

    folder = plain + "-hf"
    if not os.path.isfile(os.path.join(folder, "config.json")):
        model, tokenizer = load_plain(plain)
        tmp = folder + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(folder, ignore_errors=True)  # a partial copy from an interrupted run
        os.replace(tmp, folder)
    return folder


# ---------------------------------------------------------------- driver
class Worker:
    def __init__(self, python: str, kind: str, folder: str, corpus: str, batch_size: int,
                 options: dict | None = None):
        options = dict(options or {})
        env = {**os.environ, **options.pop("env", {})}  # e.g. the allocator setting
        self.proc = subprocess.Popen(
            [python, __file__, "--worker", kind, "--folder", folder, "--corpus-file", corpus,
             "--batch-size", str(batch_size), "--options", json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        line = self.proc.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError(f"{kind} worker failed to start")
        self.warmup = json.loads(line)["warmup"]

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def vectors(self, path: str) -> np.ndarray:
        self.proc.stdin.write(f"save {path}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()
        return np.load(path)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def prepare(workdir: str):
    """The dequantized SmolLM2 weights as our folder and the reference's plain folder (once)."""
    from plain_export import write_plain_folder

    from llm2vec_rag import LLM2Vec

    ours, plain = os.path.join(workdir, "smollm2"), os.path.join(workdir, "smollm2-plain")
    if not os.path.isdir(plain):
        model = LLM2Vec.from_pretrained(smollm2_gguf(), device="cpu")
        model.save_pretrained(ours)
        write_plain_folder(model, plain)
    return ours, plain


def padded_tokens(model, texts: list[str], batch_size: int, options: dict) -> dict:
    pre = model.preprocessor
    enc = pre.encode(texts)
    budget = options.get("max_batch_tokens", model.max_batch_tokens)
    rows = options.get("batch_size", batch_size)
    ours = sum(b.input_ids.size for b in pre.batches(enc, rows, budget))
    # The reference sorts by characters, then pads each batch of batch_size to its longest.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    ref = sum(len(chunk) * max(len(enc[i].ids) for i in chunk)
              for chunk in (order[j: j + batch_size] for j in range(0, len(order), batch_size)))
    return {"real": sum(len(e.ids) for e in enc), "ours": ours, "ref": ref}


def profile(model, texts: list[str], batch_size: int, variants: dict[str, dict],
            top: int = 12) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model.encode(texts[:8], show_progress=False)
    for name, opts in variants.items():
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            model.encode(texts, batch_size=batch_size, show_progress=False,
                         **{k: v for k, v in opts.items() if k not in ("env", "dtype")})
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{name}: where the time goes (torch.profiler, self CPU time, {len(texts)} "
              f"texts; total {total / 1e6:.1f} s)\n\n| operator | calls | self s | share |\n"
              f"|---|---|---|---|")
        for e in events[:top]:
            print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e6:.2f} | "
                  f"{100 * e.self_cpu_time_total / total:.1f}% |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", choices=["mixed", "short", "long"], default="mixed")
    p.add_argument("--texts", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--variants", default="default,rows",
                   help=f"our variants to run, of {sorted(OURS)}, or JSON {{label: options}}")
    p.add_argument("--no-ref", action="store_true", help="only our variants")
    p.add_argument("--dtypes", default="float32",
                   help=f"weight dtypes to run both sides at, comma-separated, of {DTYPES}")
    p.add_argument("--profile", action="store_true", help="profile ours (each variant), no timing")
    p.add_argument("--workdir", default=WORKDIR, help="model folders (reused)")
    p.add_argument("--json-out", default=None)
    p.add_argument("--ref-python", default=os.path.join(ROOT, ".venv-ref", "bin", "python"))
    p.add_argument("--worker", choices=["ours", "ref"])
    p.add_argument("--folder")
    p.add_argument("--corpus-file")
    p.add_argument("--options", default="{}")
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.folder, args.corpus_file, args.batch_size,
                      json.loads(args.options))

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.similarity import similarity_pairwise

    for d in args.dtypes.split(","):
        if d not in DTYPES:
            raise SystemExit(f"--dtypes: {d!r} is not a weight dtype both implementations take; "
                             f"use some of {', '.join(DTYPES)}")
    warnings.simplefilter("ignore")
    os.makedirs(args.workdir, exist_ok=True)
    folder, plain = prepare(args.workdir)
    ours = LLM2Vec.from_pretrained(folder, device="cpu", dtype="float32")
    texts = corpus(args.corpus, args.texts, ours.tokenizer)
    variants = (json.loads(args.variants) if args.variants.startswith("{") else
                {OURS[v][0]: OURS[v][1] for v in args.variants.split(",")})
    if args.profile:
        return profile(ours, texts, args.batch_size, variants)
    corpus_path = os.path.join(args.workdir, f"corpus-{args.corpus}-{args.texts}.json")
    with open(corpus_path, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    pads = {name: padded_tokens(ours, texts, args.batch_size, opts)
            for name, opts in variants.items()}
    real = next(iter(pads.values()))["real"]
    embed = ours.model.get_input_embeddings().weight.numel()
    flops_per_token = 2 * (sum(q.numel() for q in ours.model.parameters()) - embed)
    ceiling = linear_ceiling_tokens_s(ours.model)  # again after the runs: the best counts

    peak = matmul_peak_gflops()
    dtypes = [d for d in args.dtypes.split(",") if d]
    # label -> (dtype, our variant or REF); labels carry the dtype unless only float32 runs
    entries: dict[str, tuple[str, str]] = {}
    for d in dtypes:
        for name in [*variants, *([] if args.no_ref else [REF])]:
            own = None if name == REF else variants[name].get("dtype")
            if own is not None:  # a variant with its own dtype runs once, beside the first
                if d == dtypes[0]:
                    entries[f"{name} ({resolved(own)})"] = (d, name)
                continue
            entries[name if dtypes == ["float32"] else f"{name}, {d}"] = (d, name)
    workers = {}
    for label, (d, name) in entries.items():
        if name == REF:
            workers[label] = Worker(args.ref_python, "ref", plain, corpus_path, args.batch_size,
                                    {"dtype": d})
        else:
            workers[label] = Worker(sys.executable, "ours", folder, corpus_path,
                                    args.batch_size, {"dtype": d, **variants[name]})
    times: dict[str, list[float]] = {name: [] for name in workers}
    names = list(workers)
    for r in range(args.rounds):  # interleaved, rotating order: drift hits all alike
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(workers[name].run())
    vectors = {label: w.vectors(os.path.join(args.workdir, "vectors.npy"))
               for label, w in workers.items()}
    for w in workers.values():
        w.close()
    peak = max(peak, matmul_peak_gflops())
    ref_of = {d: label for label, (d, name) in entries.items() if name == REF}
    # Same texts, same tokens: ours must agree with the reference at the same dtype; and
    # each side at a lower precision with itself at float32.
    agreement = {label: float(similarity_pairwise(vectors[label], vectors[ref_of[d]]).min())
                 for label, (d, name) in entries.items() if name != REF and d in ref_of}
    fp32_of = {name: label for label, (d, name) in entries.items() if d == "float32"}
    to_fp32 = {label: float(similarity_pairwise(vectors[label], vectors[fp32_of[name]]).min())
               for label, (d, name) in entries.items() if d != "float32" and name in fp32_of}

    ref_median = {d: statistics.median(times[label]) for d, label in ref_of.items()}
    print(f"\nmachine: {machine_line()}; "
          f"fp32 matmul peak {peak:.0f} GFLOP/s (measured in this run)")
    print(f"corpus: {args.corpus}, {len(texts)} texts, {real} real tokens (mean "
          f"{real / len(texts):.0f}); batch_size {args.batch_size}; {args.rounds} interleaved "
          "rounds, medians\n")
    print("| implementation | texts/s | real tokens/s | padded / real | GFLOP/s | % of fp32 peak "
          "| x reference (same dtype) |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    for label, ts in times.items():
        d, name = entries[label]
        med = statistics.median(ts)
        gflops = real * flops_per_token / med / 1e9
        padded = pads[name]["ours"] if name in pads else next(iter(pads.values()))["ref"]
        ratio = f"{ref_median[d] / med:.2f}x" if d in ref_median else "-"
        rows[label] = {"dtype": d, "implementation": name, "median_s": med, "runs": ts,
                       "padded": padded, "warmup_s": workers[label].warmup,
                       "tokens_per_s": real / med}
        print(f"| {label} | {len(texts) / med:.1f} | {real / med:.0f} | {padded / real:.2f}"
              f"{' (est.)' if name == REF else ''} | {gflops:.0f} | {100 * gflops / peak:.0f}% "
              f"| {ratio} |")
    same = [v for v in variants if "dtype" not in variants[v]]  # those run at every dtype
    if len(dtypes) > 1 and ref_median and same:
        print("\n| dtype | " + " | ".join(f"{v}: real tokens/s" for v in same)
              + " | reference: real tokens/s | " + " | ".join(f"{v} x reference" for v in same)
              + " |\n|---|" + "---|" * (2 * len(same) + 1))
        for d in dtypes:
            ours_rows = [rows[label] for label, e in entries.items()
                         if e[0] == d and e[1] in same]
            ref_row = rows[ref_of[d]] if d in ref_of else None
            cells = [f"{r['tokens_per_s']:.0f}" for r in ours_rows]
            cells.append(f"{ref_row['tokens_per_s']:.0f}" if ref_row else "-")
            cells += [f"{r['tokens_per_s'] / ref_row['tokens_per_s']:.2f}x" if ref_row else "-"
                      for r in ours_rows]
            print(f"| {d} | " + " | ".join(cells) + " |")
    ceiling = max(ceiling, linear_ceiling_tokens_s(ours.model))
    print(f"\nceiling: every real token through the model's linear layers alone (measured at "
          f"their shapes, 2048 rows; no attention, norms, padding): {ceiling:.0f} tokens/s"
          + (f" = {ceiling * ref_median['float32'] / real:.2f}x the fp32 reference"
             if "float32" in ref_median else ""))
    if agreement:
        print(f"\nmin cosine, ours vs the reference at the same dtype (same texts and tokens): "
              f"{json.dumps({k: round(v, 6) for k, v in agreement.items()})}")
    if to_fp32:
        print(f"min cosine, each implementation vs itself at float32: "
              f"{json.dumps({k: round(v, 6) for k, v in to_fp32.items()})}")
    print(f"\nruns (s): {json.dumps({k: [round(t, 2) for t in v] for k, v in times.items()})}")
    print(f"warm-up (first call, s): "
          f"{json.dumps({k: round(w.warmup, 1) for k, w in workers.items()})}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({"corpus": args.corpus, "texts": len(texts), "real_tokens": real,
                       "peak_gflops": peak, "ceiling_tokens_s": ceiling, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
