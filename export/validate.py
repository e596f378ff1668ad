"""Checks that an exported graph is the model it claims to be.

Run right after export, before the folder is moved into place: ONNX Runtime must agree
with PyTorch on padded, mixed-length batches (with and without an instruction, and a batch
of one), a later token must change an earlier token's output (bidirectional), and the graph
must hold no causal-mask construction. NumPy and onnx only: the runtime side never needs torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from llm2vec_rag.errors import SetupError

INPUT_NAMES = ("input_ids", "attention_mask", "embed_mask")
OUTPUT_NAME = "sentence_embedding"
# The last hidden states [batch, sequence, dim] float32: token embeddings and late chunking.
TOKENS_NAME = "token_embeddings"

VALIDATION_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer it"
VALIDATION_TEXTS = [
    "Qdrant stores vectors.",
    "a",
    "The quick brown fox jumps over the lazy dog near the river bank, then rests in the shade "
    "while the farmer counts his sheep and wonders where the dog has gone.",
    "Large language models can be turned into strong text encoders.",
    "",
    "Numbers like 3.14, 42 and 1e-5 appear in scientific writing and code; "
    "emoji 🚀 and accents (café, naïve) too.",
    "Retrieval augmented generation answers questions from an indexed corpus of documents "
    "that were split into passages, embedded, and stored in a vector database for search.",
]

TOKENIZER_TEXTS = [*VALIDATION_TEXTS, VALIDATION_INSTRUCTION, "</s> <s> <|endoftext|> 日本語 ✓"]

_COMPARISONS = {"Less", "LessOrEqual", "Greater", "GreaterOrEqual"}

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


class ExportValidationError(SetupError):
    """ONNX Runtime disagrees with PyTorch, or the graph is not bidirectional."""


def validation_batches(preprocessor) -> list:
    """Padded batches of mixed lengths from the encoder's own preprocessing path."""
    plain = preprocessor.encode(VALIDATION_TEXTS)
    instructed = preprocessor.encode(VALIDATION_TEXTS[:5], VALIDATION_INSTRUCTION)
    batches = list(preprocessor.batches(plain, batch_size=3))
    batches += list(preprocessor.batches(instructed, batch_size=5))
    batches += list(preprocessor.batches(plain[3:4], batch_size=1))  # B = 1
    return batches


def feeds(batch) -> dict[str, np.ndarray]:
    return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
            "embed_mask": batch.embed_mask}


def agreement(got: list[np.ndarray], ref: list[np.ndarray]) -> dict[str, float]:
    """Max absolute difference (and relative to the output scale) and row cosines."""
    a = np.concatenate(got).astype(np.float64)
    b = np.concatenate(ref).astype(np.float64)
    if a.shape != b.shape:
        raise ExportValidationError(f"ONNX output shape {a.shape} != PyTorch {b.shape}")
    if not np.isfinite(a).all():
        raise ExportValidationError("ONNX Runtime produced NaN or inf embeddings")
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                      1e-12)
    max_abs = float(np.abs(a - b).max())
    return {"max_abs_diff": max_abs, "rel_diff": max_abs / max(1.0, float(np.abs(b).max())),
            "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "rows": int(a.shape[0])}


def check_agreement(stats: dict[str, float], variant: str, *, tolerance: float,
                    min_cosine: float) -> None:
    """fp32 must match closely (every value); reduced precisions must keep the vectors'
    direction on average (their worst row is reported, not enforced: see quantize_int8)."""
    if variant == "fp32" and stats["rel_diff"] > tolerance:
        raise ExportValidationError(
            f"ONNX Runtime differs from PyTorch by {stats['max_abs_diff']:.3g} (relative "
            f"{stats['rel_diff']:.3g} > tolerance {tolerance:g}) on padded mixed-length "
            "batches. The export is not faithful; please report it with the model name.")
    cosine = stats["min_cosine"] if variant == "fp32" else stats["mean_cosine"]
    if cosine < min_cosine:
        raise ExportValidationError(
            f"The {variant} graph's vectors have mean cosine {stats['mean_cosine']:.4f} "
            f"(worst row {stats['min_cosine']:.4f}) to the PyTorch fp32 vectors, below "
            f"{min_cosine}. Use the fp32 (or block-wise int8) export for this model, or lower "
            "the threshold (min_cosine=) if that loss is acceptable.")


def probe_bidirectional(run: Runner, vocab_size: int, pooling: str, seq_len: int = 8) -> bool:
    """True when changing the last token changes the first token's pooled output.

    Pools only the first real token of each row (one row left-padded), so the check sees an
    earlier token's state. With last/eos pooling the earlier states are not observable in the
    output; there the fp32 agreement with the bidirectional PyTorch model (>= 2 layers) and
    ``causal_mask_ops`` carry the check, and this returns True.
    """
    if pooling in ("last", "eos"):
        return True
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab_size, size=(2, seq_len), dtype=np.int64)
    mask = np.ones((2, seq_len), dtype=np.int64)
    mask[1, :2] = 0  # row 1 is left-padded
    embed = np.zeros_like(mask)
    embed[0, 0] = embed[1, 2] = 1  # the first real token of each row
    changed = ids.copy()
    changed[:, -1] = (changed[:, -1] + 1) % vocab_size
    before = run({"input_ids": ids, "attention_mask": mask, "embed_mask": embed})
    after = run({"input_ids": changed, "attention_mask": mask, "embed_mask": embed})
    delta = np.abs(before - after).max(axis=1)
    return bool((delta > 1e-6 * (1 + np.abs(before).max())).all())


def causal_mask_ops(model) -> list[str]:
    """Nodes that build a causal mask: ``Trilu``, or a comparison of two position ranges
    (``kv_idx <= q_idx``). A padding-only mask compares positions with constants at most;
    a symmetric sliding window compares ``|q - kv|`` with a constant, which is allowed."""
    graph = model.graph
    found = [f"{n.op_type} {n.name}" for n in graph.node if n.op_type == "Trilu"]
    found += [f"Trilu in function {f.name}" for f in model.functions
              for n in f.node if n.op_type == "Trilu"]
    ranges: dict[str, frozenset[str]] = {}  # value -> the Range nodes it derives from
    for node in graph.node:  # ONNX graphs are topologically sorted
        inherited = frozenset().union(*(ranges.get(i, frozenset()) for i in node.input))
        if node.op_type == "Range":
            inherited |= {node.name or node.output[0]}
        if node.op_type in _COMPARISONS and len(node.input) == 2:
            if ranges.get(node.input[0]) and ranges.get(node.input[1]):
                found.append(f"{node.op_type} {node.name} ({node.input[0]} vs {node.input[1]})")
        for out in node.output:
            ranges[out] = inherited
    return found
