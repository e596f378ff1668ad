"""``llm2vec-rag serve`` under load: dynamic batching vs one request per forward, and against
a peer serving stack (infinity-emb) on the same weights.

The servers run as subprocesses on 127.0.0.1 (ours: the default model, PyTorch or an ONNX
export), the load generator as another process (asyncio + httpx, keep-alive connections);
all share the machine's cores. For each concurrency level, clients send requests back to
back for ``--seconds`` (after a warm-up) and we report requests/s and p50/p99 latency.

    .venv/bin/python benchmarks/bench_serve.py --backend torch
    .venv/bin/python benchmarks/bench_serve.py --backend onnx --onnx-dir out/onnx-default
    bash scripts/setup_infinity_env.sh   # once: the peer's own environment
    .venv/bin/python benchmarks/bench_serve.py --modes batched --peer infinity --rounds 3

Every server is started once and stays up; only the one being measured runs: the others are
paused (SIGSTOP) so an idle server's threads take no CPU from it. With ``--rounds`` each
(clients, texts/request) level is measured once per server per round, the order of the
servers rotating, and the medians are reported. All servers get the same torch thread
budget (``--threads``, via OMP_NUM_THREADS / MKL_NUM_THREADS) and weight dtype (``--dtype``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
from common import machine_line  # noqa: E402

HOST = "127.0.0.1"
PEER_DTYPES = ("float32", "bfloat16", "float16")  # what infinity-emb's --dtype accepts


def short_queries(n: int = 512) -> list[str]:
    """One sentence of a Lee article each (mean ~25 tokens), cut to <= 12 words: a query."""
    from common import mixed_corpus

    return [" ".join(t.split()[:12]) for t in mixed_corpus(n, seed=1, max_sentences=1)]


def documents(n: int = 512) -> list[str]:
    from common import mixed_corpus

    return mixed_corpus(n, seed=2, max_sentences=3)


async def load(url: str, concurrency: int, seconds: float, warmup: float, batch: int,
               model: str, extra: dict, max_requests: int = 0) -> dict:
    """``concurrency`` clients, each sending ``batch`` texts per request back to back, until
    the window closes (or, with ``max_requests``, after that many requests per client)."""
    import httpx

    pool = short_queries() if batch == 1 else documents()
    latencies: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter()
    measure_from, stop_at = t0 + warmup, t0 + warmup + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        k, sent, checked = i * 7, 0, False
        while not max_requests or sent < max_requests:
            start = time.perf_counter()
            if start >= stop_at:
                return
            texts = [pool[(k + j) % len(pool)] for j in range(batch)]
            k, sent = k + batch, sent + 1
            try:
                r = await http.post("/v1/embeddings", json={"input": texts, "model": model,
                                                            **extra})
            except httpx.HTTPError as err:
                errors.append(f"{type(err).__name__}: {err}")
                await asyncio.sleep(0.1)  # a refused connection fails at once: no busy loop
                continue
            end = time.perf_counter()
            if r.status_code != 200:
                errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                await asyncio.sleep(0.1)
                continue
            if not checked:  # one vector per text, once per client (parsing costs CPU)
                checked = True
                if len(r.json().get("data", ())) != batch:
                    errors.append(f"{len(r.json().get('data', ()))} vectors for {batch} texts")
                    continue
            if measure_from <= end <= stop_at:  # completed inside the window
                latencies.append(end - start)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    # A request that takes longer than the whole run is an error, not something to wait for.
    timeout = httpx.Timeout(warmup + seconds + 60)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(concurrency)))
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"concurrency": concurrency, "batch": batch, "requests": len(latencies),
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "rps": len(latencies) / seconds, "texts_per_s": len(latencies) * batch / seconds,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


# ---------------------------------------------------------------- servers
@dataclass
class Server:
    """One server under test: its label, where it listens, what clients send it."""

    label: str
    url: str
    model: str = "bench"
    extra: dict = field(default_factory=dict)  # fields of the request body besides input/model
    proc: subprocess.Popen | None = None  # None: started elsewhere (--peer-url)

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a stopped process does not act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def server_env(threads: int) -> dict[str, str]:
    """The same thread budget for every server; no API key; no hub, no telemetry."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LLM2VEC_RAG_API_KEY", "INFINITY_API_KEY")}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               INFINITY_ANONYMOUS_USAGE_STATS="0", DO_NOT_TRACK="1")
    return env


def wait_healthy(proc: subprocess.Popen, health_url: str, name: str, log: str) -> None:
    import httpx

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log, encoding="utf-8", errors="replace") as f:
                raise SystemExit(f"{name} exited (log {log}):\n{f.read()[-3000:]}")
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{name} not healthy in 900 s (log {log})")


def wait_serving(server: Server, seconds: float = 600) -> None:
    """A server started elsewhere: wait until it embeds one text (it may still be loading)."""
    import httpx

    deadline, answer = time.monotonic() + seconds, "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{server.url}/v1/embeddings", timeout=60,
                           json={"input": ["ready?"], "model": server.model, **server.extra})
            if r.status_code == 200:
                return
            answer = f"HTTP {r.status_code}: {r.text[:300]}"
        except httpx.HTTPError as err:
            answer = f"{type(err).__name__}: {err}"
        time.sleep(1)
    raise SystemExit(f"{server.label}: POST {server.url}/v1/embeddings with model "
                     f"{server.model!r} did not succeed in {seconds:.0f} s (last: {answer}); "
                     f"check --peer-url and --peer-model")


def start_ours(args: argparse.Namespace, batching: bool, port: int) -> Server:
    cmd = [sys.executable, "-m", "llm2vec_rag.cli", "serve", "--host", HOST, "--port", str(port),
           "--served-model-name", "bench", "--max-batch-tokens", str(args.max_batch_tokens),
           "--max-wait-ms", str(args.max_wait_ms), "--max-queue", "4096"]
    if args.backend == "onnx":
        cmd += ["--onnx", "--model", args.onnx_dir]
    else:
        cmd += ["--dtype", args.dtype]
    if not batching:
        cmd.append("--no-batching")
    label = f"llm2vec-rag {args.backend}, {'batched' if batching else 'unbatched'}"
    log = os.path.join(args.workdir, f"server-{port}.log")
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, env=server_env(args.threads), stdout=subprocess.DEVNULL,
                                stderr=f, cwd=ROOT)
    wait_healthy(proc, f"http://{HOST}:{port}/health", label, log)
    # long documents: cut at max_length (infinity cuts at max_seq_length by itself)
    return Server(label, f"http://{HOST}:{port}", extra={"truncate": True}, proc=proc)


def state_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def infinity_folder(args: argparse.Namespace) -> str:
    """The weights our server loads (the default model: base + its adapters, merged), as a
    sentence-transformers folder that infinity-emb's transformers 4 reads: written once, and
    again whenever those weights change."""
    from plain_export import write_plain_folder

    from llm2vec_rag.default_model import load_default_model

    model = load_default_model(device="cpu", dtype="float32")
    fingerprint = state_fingerprint(model)
    out = os.path.join(args.workdir, "infinity-model")
    stamp = os.path.join(out, "llm2vec_source.json")
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as f:
            if json.load(f).get("sha256") == fingerprint:
                return out
    plain = os.path.join(args.workdir, "infinity-plain")
    write_plain_folder(model, plain)
    subprocess.run([args.infinity_python, os.path.join(ROOT, "benchmarks", "infinity_model.py"),
                    plain, out], check=True, env=server_env(args.threads), cwd=ROOT)
    with open(stamp, "w", encoding="utf-8") as f:
        json.dump({"sha256": fingerprint, "source": "llm2vec_rag.default_model"}, f)
    return out


def start_infinity(args: argparse.Namespace, port: int) -> Server:
    if args.dtype not in PEER_DTYPES:
        raise SystemExit(f"--dtype {args.dtype}: infinity-emb takes one of {PEER_DTYPES}; "
                         f"measure that choice without --peer")
    exe = os.path.join(os.path.dirname(args.infinity_python), "infinity_emb")
    if not os.path.isfile(exe):
        raise SystemExit(f"{exe} missing: build the peer's environment with "
                         f"bash scripts/setup_infinity_env.sh")
    folder = infinity_folder(args)
    cmd = [exe, "v2", "--model-id", folder, "--served-model-name", "bench", "--host", HOST,
           "--port", str(port), "--url-prefix", "/v1", "--engine", "torch", "--device", "cpu",
           "--dtype", args.dtype, "--batch-size", str(args.peer_batch_size),
           "--pooling-method", "mean", "--no-bettertransformer", "--no-compile",
           "--no-trust-remote-code", "--no-vector-disk-cache", "--log-level", "warning",
           # its start-up warm-up encodes 2 x batch-size texts of 512 tokens (minutes on 2
           # cores); each level's own warm-up (--warmup) serves both servers alike
           "--no-model-warmup"]
    log = os.path.join(args.workdir, f"server-{port}.log")
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, env=server_env(args.threads), stdout=f,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    wait_healthy(proc, f"http://{HOST}:{port}/health", "infinity-emb", log)
    return Server("infinity-emb torch", f"http://{HOST}:{port}", proc=proc)


def run_load(server: Server, concurrency: int, args: argparse.Namespace, batch: int) -> dict:
    """The load generator in its own process, as a real client would be."""
    cmd = [sys.executable, __file__, "--load", server.url, "--concurrency", str(concurrency),
           "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--batch", str(batch),
           "--load-model", server.model, "--load-extra", json.dumps(server.extra),
           "--max-requests", str(args.max_requests)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=args.warmup + args.seconds + 300)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report
def summarize(rows: list[dict]) -> list[dict]:
    """One row per (server, clients, texts/request): medians over rounds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["server"], r["concurrency"], r["batch"]), []).append(r)
    return [{"server": s, "concurrency": c, "batch": b, "rounds": len(rs),
             "errors": sum(r["errors"] for r in rs),
             **{k: statistics.median(r[k] for r in rs)
                for k in ("rps", "texts_per_s", "p50_ms", "p99_ms")}}
            for (s, c, b), rs in groups.items()]


def print_tables(summary: list[dict], labels: list[str]) -> None:
    print("\n| server | clients | texts/request | requests/s | texts/s | p50 ms | p99 ms | "
          "errors |\n|---|---|---|---|---|---|---|---|")
    for r in summary:
        print(f"| {r['server']} | {r['concurrency']} | {r['batch']} | {r['rps']:.1f} | "
              f"{r['texts_per_s']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |")
    by = {(r["server"], r["concurrency"], r["batch"]): r for r in summary}
    levels = sorted({(r["concurrency"], r["batch"]) for r in summary}, key=lambda x: (x[1], x[0]))
    head = " | ".join(f"{s} req/s | p50 / p99 ms" for s in labels)
    ratios = labels[1:]
    print(f"\n| clients | texts/request | {head} |"
          + "".join(f" {labels[0]} / {s} |" for s in ratios))
    print("|---|---|" + "---|---|" * len(labels) + "---|" * len(ratios))
    for c, b in levels:
        cells = []
        for s in labels:
            r = by.get((s, c, b))
            cells += ([f"{r['rps']:.1f}", f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f}"] if r
                      else ["-", "-"])
        first = by.get((labels[0], c, b))
        for s in ratios:
            other = by.get((s, c, b))
            cells.append(f"{first['rps'] / other['rps']:.2f}x"
                         if first and other and other["rps"] > 0 else "-")
        print(f"| {c} | {b} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--onnx-dir", default=None, help="folder of `llm2vec-rag export onnx`")
    p.add_argument("--levels", default="1,8,32,64", help="concurrent clients (short queries)")
    p.add_argument("--doc-levels", default="1,4", help="concurrent clients sending documents")
    p.add_argument("--doc-batch", type=int, default=8, help="documents per request")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every level this many times per server, interleaved; medians")
    p.add_argument("--max-requests", type=int, default=0,
                   help="stop each client after this many requests (0: only the time window)")
    p.add_argument("--max-batch-tokens", type=int, default=8192)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--modes", default="batched,unbatched",
                   help="our server's modes: batched, unbatched (comma-separated; may be empty)")
    p.add_argument("--dtype", default="float32",
                   help="weight dtype for every server (ours: --dtype; infinity: --dtype)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads of every server (OMP_NUM_THREADS, MKL_NUM_THREADS)")
    p.add_argument("--peer", choices=("infinity",), default=None,
                   help="also start and measure infinity-emb on the same weights")
    p.add_argument("--peer-batch-size", type=int, default=64,
                   help="infinity-emb's --batch-size (texts per forward)")
    p.add_argument("--peer-url", default=None,
                   help="also measure an OpenAI-compatible server already running at this URL "
                        "(POST URL/v1/embeddings); it is not started, paused or stopped here")
    p.add_argument("--peer-model", default="bench", help="model name sent to --peer-url")
    p.add_argument("--infinity-python",
                   default=os.path.join(ROOT, ".venv-infinity", "bin", "python"))
    p.add_argument("--port", type=int, default=18710)
    p.add_argument("--workdir", default=os.path.join(ROOT, "out", "bench-serve"),
                   help="server logs and the peer's model folder (reused)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    # load-generator mode (internal)
    p.add_argument("--load", default=None, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--load-model", default="bench", help=argparse.SUPPRESS)
    p.add_argument("--load-extra", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(load(args.load, args.concurrency, args.seconds,
                                          args.warmup, args.batch, args.load_model,
                                          json.loads(args.load_extra), args.max_requests))))
        return
    if args.backend == "onnx" and not args.onnx_dir:
        raise SystemExit("--backend onnx needs --onnx-dir (llm2vec-rag export onnx --out DIR)")
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in ("batched", "unbatched"):
            raise SystemExit(f"--modes: unknown mode {mode!r}; use batched and/or unbatched")
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    os.makedirs(args.workdir, exist_ok=True)
    # SIGTERM (a timeout, a CI stop): stop the servers on the way out, as on Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = [(int(c), 1) for c in args.levels.split(",") if c] + \
           [(int(c), args.doc_batch) for c in args.doc_levels.split(",") if c]
    servers: list[Server] = []
    try:
        port = args.port
        for mode in modes:
            servers.append(start_ours(args, mode == "batched", port))
            servers[-1].pause()
            port += 1
        if args.peer == "infinity":
            servers.append(start_infinity(args, port))
            servers[-1].pause()
        if args.peer_url:
            servers.append(Server(f"peer at {args.peer_url}", args.peer_url.rstrip("/"),
                                  model=args.peer_model))
            wait_serving(servers[-1])
        if not servers:
            raise SystemExit("nothing to measure: give --modes, --peer or --peer-url")
        print(json.dumps({"machine": machine_line(),
                          "servers": {s.label: s.url for s in servers}, "dtype": args.dtype,
                          "threads": args.threads, "max_batch_tokens": args.max_batch_tokens,
                          "max_wait_ms": args.max_wait_ms,
                          "peer_batch_size": args.peer_batch_size}), flush=True)
        rows = []
        for rnd in range(args.rounds):
            for concurrency, batch in plan:
                k = rnd % len(servers)  # rotate which server goes first
                for server in servers[k:] + servers[:k]:
                    server.resume()
                    try:
                        row = {"server": server.label, "round": rnd,
                               **run_load(server, concurrency, args, batch)}
                    finally:
                        server.pause()
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        for server in servers:
            server.stop()
    print(f"\nmachine: {machine_line()}; every server: {args.threads} torch threads, weights "
          f"{args.dtype}; {args.rounds} round(s) of {args.warmup:g} s warm-up + "
          f"{args.seconds:g} s per level{', medians' if args.rounds > 1 else ''}")
    print_tables(summarize(rows), [s.label for s in servers])
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
