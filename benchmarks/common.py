"""What the benchmarks share: the real model, a mixed-length real corpus, the machine's peak."""

from __future__ import annotations

import os
import platform
import random
import re
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "gensim")
# Model folders and corpora the encode benchmarks write once and reuse (out/ is not tracked).
WORKDIR = os.path.join(ROOT, "out", "bench-encode")


def machine_line() -> str:
    """The CPU, its core count and its native bf16 support, for a table's machine line."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    bf16 = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return (f"{name}, {os.cpu_count()} cores, "
            f"{'bf16: ' + ' '.join(bf16) if bf16 else 'no native bf16'}")


def smollm2_gguf() -> str:
    from llm2vec_rag.default_model import smollm2_gguf as locate

    try:
        return locate()
    except FileNotFoundError as err:
        raise SystemExit(f"{err} (scripts/bootstrap.sh installs it)") from err


def mixed_corpus(n: int = 600, seed: int = 0, max_sentences: int = 8) -> list[str]:
    """Pieces of 1..max_sentences consecutive sentences from the Lee background articles.

    A realistic spread of lengths (one sentence to a few paragraphs), deterministic.
    """
    path = os.path.join(DATA, "lee_background.cor")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} missing: run scripts/fetch_data.sh")
    with open(path, encoding="utf-8") as f:
        articles = [line.strip() for line in f if line.strip()]
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < n:
        sentences = re.split(r"(?<=[.!?])\s+", rng.choice(articles))
        k = rng.randint(1, min(max_sentences, len(sentences)))
        start = rng.randrange(len(sentences) - k + 1)
        texts.append(" ".join(sentences[start: start + k]))
    return texts


def best_seconds(fn, *args, reps: int) -> float:
    """The fastest of ``reps`` timed calls ``fn(*args)``: the least disturbed one on a shared
    machine."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_gflops(size: int = 2048, reps: int = 10) -> float:
    """The machine's practical fp32 ceiling: best time of a large torch matmul."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / best_seconds(torch.mm, a, b, reps=reps) / 1e9


def linear_ceiling_tokens_s(model, rows: int = 2048, reps: int = 5) -> float:
    """Real tokens/s if every token went through the model's linear layers (the only
    ``torch.nn.Linear`` modules, at their own weight shapes, ``rows`` tokens at a time) and
    nothing else ran: no attention, norms, activations, padding or Python. An upper bound on
    any fp32 encoder of this model on this machine."""
    import torch

    shapes: dict[tuple[int, int], int] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            key = tuple(module.weight.shape)
            shapes[key] = shapes.get(key, 0) + 1
    seconds = 0.0
    with torch.inference_mode():
        for (out_f, in_f), count in shapes.items():
            x, w = torch.randn(rows, in_f), torch.randn(out_f, in_f)
            torch.nn.functional.linear(x, w)  # warm
            seconds += count * best_seconds(torch.nn.functional.linear, x, w, reps=reps)
    return rows / seconds


def lee_sentences() -> list[str]:
    path = os.path.join(DATA, "lee_background.cor")
    with open(path, encoding="utf-8") as f:
        return [s for line in f if line.strip()
                for s in re.split(r"(?<=[.!?])\s+", line.strip()) if s]


def uniform_corpus(tokenizer, n: int, tokens: int, seed: int = 0) -> list[str]:
    """``n`` texts of about ``tokens`` tokens each: windows of the Lee articles' token stream,
    decoded back to text (they re-tokenize to within a token or two of ``tokens``)."""
    ids = tokenizer(" ".join(lee_sentences()), add_special_tokens=False)["input_ids"]
    rng = random.Random(seed)
    starts = [rng.randrange(len(ids) - tokens) for _ in range(n)]
    return [tokenizer.decode(ids[s: s + tokens]).strip() for s in starts]


def corpus(kind: str, n: int, tokenizer=None) -> list[str]:
    """mixed (1-8 Lee sentences), short (~20 tokens) or long (512 tokens: max_length)."""
    if kind == "mixed":
        return mixed_corpus(n)
    return uniform_corpus(tokenizer, n, 20 if kind == "short" else 520)
