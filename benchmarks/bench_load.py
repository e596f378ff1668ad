"""Seconds to the first vector: loading the default model, cold and warm, with and without
the fused-model cache, and ``llm2vec-rag encode`` of one text end to end.

    .venv/bin/python benchmarks/bench_load.py --runs 3 [--before-python /path/to/old/python]

Every measurement is a fresh process: "imports s" = torch + transformers + llm2vec_rag,
"load s" = ``load_default_model()`` after them, "process s" = the whole process.
"first use" = the cache entry does not exist yet (it is built); "warm" = a later process,
the entry built and the files in the OS page cache. ``--before-python`` times the same
load with another installation (e.g. the code before this change) for the "before" row.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LOAD = """
import time, sys
t0 = time.perf_counter()
import llm2vec_rag.model  # torch, transformers: the imports every load pays
from llm2vec_rag.default_model import load_default_model
t1 = time.perf_counter()
kw = {} if sys.argv[1] == "default" else {"cache": sys.argv[1] == "cache"}
m = load_default_model(device="cpu", **kw)
t2 = time.perf_counter()
m.encode(["hello world"])
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def timed(cmd: list[str], env: dict, stdin: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()  # cwd: never the checkout, whose package `-c` would import
    out = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return time.perf_counter() - start, out.stdout


def load(python: str, mode: str, env: dict) -> dict:
    wall, out = timed([python, "-c", LOAD, mode], env)
    imp, load_s, first = map(float, out.split()[-3:])
    return {"process": wall, "import": imp, "load": load_s, "first_vector": first}


def row(name: str, runs: list[dict]) -> str:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return (f"| {name} | {len(runs)} | {med['import']:.1f} | {med['load']:.1f} | "
            f"{med['first_vector']:.2f} | {med['process']:.1f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--before-python", default=None)
    p.add_argument("--skip-uncached", action="store_true")
    args = p.parse_args()
    here = sys.executable
    cache = tempfile.mkdtemp(prefix="bench-load-cache-")
    env = {**os.environ, "LLM2VEC_RAG_CACHE": cache}
    table = []
    if args.before_python:
        table.append(row("before (no cache, GGUF parsed 3x)",
                         [load(args.before_python, "default", env)]))
    if not args.skip_uncached:
        table.append(row("cache=False (GGUF parsed once)", [load(here, "nocache", env)]))
    fused = os.path.join(cache, "fused")
    assert not os.path.isdir(fused) or not os.listdir(fused), "the cache must start empty"
    table.append(row("cache=True, first use (builds the entry)", [load(here, "cache", env)]))
    assert len([n for n in os.listdir(fused) if not n.endswith(".lock")]) == 1, "no entry built"
    table.append(row("cache=True, warm (default)",
                     [load(here, "default", env) for _ in range(args.runs)]))

    cli = os.path.join(os.path.dirname(here), "llm2vec-rag")
    encode = [timed([cli, "encode", "-"], env, stdin="hello world\n")[0]
              for _ in range(args.runs)]
    helps = [timed([cli, "--help"], env)[0] for _ in range(args.runs)]
    shutil.rmtree(cache, ignore_errors=True)

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"model: the bundled default (SmolLM2-135M GGUF + 2 LoRA adapters), fp32, CPU\n")
    print("| load_default_model() | runs | imports s | load s | first vector s | process s |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table))
    print(f"\n`echo 'hello world' | llm2vec-rag encode -` (warm cache), end to end: median "
          f"{statistics.median(encode):.1f} s of {[round(t, 1) for t in encode]}; "
          f"`llm2vec-rag --help`: {statistics.median(helps):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
