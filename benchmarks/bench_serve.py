"""``llm2vec-rag serve`` under load: dynamic batching vs one request per forward.

The server runs as one subprocess (the default model, PyTorch or an ONNX export), the load
generator as another (asyncio + httpx, keep-alive connections); both share the machine's
cores. For each concurrency level, clients send requests back to back for ``--seconds``
(after a warm-up) and we report requests/s and p50/p99 latency.

    .venv/bin/python benchmarks/bench_serve.py --backend torch
    .venv/bin/python benchmarks/bench_serve.py --backend onnx --onnx-dir out/onnx-default
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def short_queries(n: int = 512) -> list[str]:
    """One sentence of a Lee article each (mean ~25 tokens), cut to <= 12 words: a query."""
    from common import mixed_corpus

    return [" ".join(t.split()[:12]) for t in mixed_corpus(n, seed=1, max_sentences=1)]


def documents(n: int = 512) -> list[str]:
    from common import mixed_corpus

    return mixed_corpus(n, seed=2, max_sentences=3)


async def load(url: str, concurrency: int, seconds: float, warmup: float, batch: int,
               model: str) -> dict:
    """``concurrency`` clients, each sending ``batch`` texts per request back to back."""
    import httpx

    pool = short_queries() if batch == 1 else documents()
    latencies: list[float] = []
    errors = 0
    t0 = time.perf_counter()
    measure_from, stop_at = t0 + warmup, t0 + warmup + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        k = i * 7
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            texts = [pool[(k + j) % len(pool)] for j in range(batch)]
            k += batch
            r = await http.post("/v1/embeddings",  # long documents: cut at max_length
                                json={"input": texts, "model": model, "truncate": True})
            end = time.perf_counter()
            if r.status_code != 200:
                errors += 1
            elif measure_from <= end <= stop_at:  # completed inside the window
                latencies.append(end - start)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(concurrency)))
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"concurrency": concurrency, "batch": batch, "requests": len(latencies),
            "errors": errors, "rps": len(latencies) / seconds,
            "texts_per_s": len(latencies) * batch / seconds,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def start_server(args: argparse.Namespace, batching: bool, port: int) -> subprocess.Popen:
    import httpx

    cmd = [sys.executable, "-m", "llm2vec_rag.cli", "serve", "--port", str(port),
           "--served-model-name", "bench", "--max-batch-tokens", str(args.max_batch_tokens),
           "--max-wait-ms", str(args.max_wait_ms), "--max-queue", "4096"]
    if args.backend == "onnx":
        cmd += ["--onnx", "--model", args.onnx_dir]
    if not batching:
        cmd.append("--no-batching")
    env = {k: v for k, v in os.environ.items() if k != "LLM2VEC_RAG_API_KEY"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server not healthy in 600 s")


def run_load(url: str, concurrency: int, args: argparse.Namespace, batch: int) -> dict:
    """The load generator in its own process, as a real client would be."""
    out = subprocess.run([sys.executable, __file__, "--load", url, "--concurrency",
                          str(concurrency), "--seconds", str(args.seconds), "--warmup",
                          str(args.warmup), "--batch", str(batch)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--onnx-dir", default=None, help="folder of `llm2vec-rag export onnx`")
    p.add_argument("--levels", default="1,8,32,64", help="concurrent clients (short queries)")
    p.add_argument("--doc-levels", default="1,4", help="concurrent clients sending documents")
    p.add_argument("--doc-batch", type=int, default=8, help="documents per request")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--max-batch-tokens", type=int, default=8192)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--modes", default="batched,unbatched")
    p.add_argument("--port", type=int, default=18710)
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    # load-generator mode (internal)
    p.add_argument("--load", default=None, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.concurrency, args.seconds,
                                          args.warmup, args.batch, "bench"))))
        return
    if args.backend == "onnx" and not args.onnx_dir:
        raise SystemExit("--backend onnx needs --onnx-dir (llm2vec-rag export onnx --out DIR)")
    rows = []
    for mode in args.modes.split(","):
        proc = start_server(args, mode == "batched", args.port)
        url = f"http://127.0.0.1:{args.port}"
        try:
            plan = [(int(c), 1) for c in args.levels.split(",") if c] + \
                   [(int(c), args.doc_batch) for c in args.doc_levels.split(",") if c]
            for concurrency, batch in plan:
                row = {"backend": args.backend, "mode": mode,
                       **run_load(url, concurrency, args, batch)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            proc.terminate()
            proc.wait(60)
    print("\n| backend | mode | clients | texts/request | requests/s | texts/s | p50 ms | "
          "p99 ms | errors |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['mode']} | {r['concurrency']} | {r['batch']} | "
              f"{r['rps']:.1f} | {r['texts_per_s']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['errors']} |")
    base = {(r["concurrency"], r["batch"]): r["rps"] for r in rows if r["mode"] == "unbatched"}
    for r in rows:
        if r["mode"] == "batched" and (r["concurrency"], r["batch"]) in base:
            ratio = r["rps"] / max(base[(r["concurrency"], r["batch"])], 1e-9)
            print(f"batched/unbatched, {r['concurrency']} clients x {r['batch']} texts: "
                  f"{ratio:.2f}x")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
