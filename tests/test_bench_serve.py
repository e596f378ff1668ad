"""The serving benchmark's report: medians over interleaved rounds, one table with every
server and the ratio of the first to each peer (benchmarks/bench_serve.py; the servers
themselves are exercised by running the benchmark, see benchmarks/README.md "Serving")."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_serve",
                                                  ROOT / "benchmarks" / "bench_serve.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_serve"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def row(server, concurrency, rps, p50, p99, rnd, errors=0):
    return {"server": server, "round": rnd, "concurrency": concurrency, "batch": 1,
            "requests": int(rps * 10), "errors": errors, "first_error": None, "rps": rps,
            "texts_per_s": rps, "p50_ms": p50, "p99_ms": p99}


def test_rounds_are_summarized_by_their_medians():
    bench = load_bench()
    rows = [row("ours", 32, rps, 800, 1000 + i, i) for i, rps in enumerate((40.0, 44.0, 42.0))]
    rows += [row("peer", 32, rps, 900, 1200, i, errors=1) for i, rps in enumerate((30, 20, 25))]
    summary = {r["server"]: r for r in bench.summarize(rows)}
    assert summary["ours"]["rps"] == 42.0 and summary["ours"]["rounds"] == 3
    assert summary["ours"]["p99_ms"] == 1001
    assert summary["peer"]["rps"] == 25 and summary["peer"]["errors"] == 3


def test_one_table_holds_both_servers_and_their_ratio(capsys):
    bench = load_bench()
    rows = [row("ours", 1, 15.0, 68, 78, 0), row("peer", 1, 10.0, 90, 120, 0),
            row("ours", 32, 42.0, 800, 1000, 0), row("peer", 32, 0.0, float("nan"),
                                                      float("nan"), 0)]
    bench.print_tables(bench.summarize(rows), ["ours", "peer"])
    lines = capsys.readouterr().out.splitlines()
    wide = [ln for ln in lines if ln.startswith("| clients")]
    assert wide == ["| clients | texts/request | ours req/s | p50 / p99 ms | peer req/s | "
                    "p50 / p99 ms | ours / peer |"]
    assert "| 1 | 1 | 15.0 | 68 / 78 | 10.0 | 90 / 120 | 1.50x |" in lines
    # a peer that completed nothing gets no ratio, not a division by zero
    assert "| 32 | 1 | 42.0 | 800 / 1000 | 0.0 | nan / nan | - |" in lines


def test_a_single_server_gets_no_ratio_column(capsys):
    bench = load_bench()
    bench.print_tables(bench.summarize([row("ours", 8, 39.8, 187, 357, 0)]), ["ours"])
    lines = capsys.readouterr().out.splitlines()
    assert "| clients | texts/request | ours req/s | p50 / p99 ms |" in lines
    assert "| 8 | 1 | 39.8 | 187 / 357 |" in lines
