"""Output size and precision, with sentence-transformers' names and semantics.

``truncate_dim`` keeps the first N dimensions (before normalising, as sentence-transformers
does, so truncated unit vectors are unit vectors). ``precision``:

- ``float32``: unchanged;
- ``int8`` / ``uint8``: each dimension's [min, max] range cut into 256 buckets
  (``floor((x - min) / step)``, clipped; int8 = uint8 - 128). The ranges come from
  ``ranges`` (a ``(2, dim)`` array: mins, maxes), else from ``calibration_embeddings``,
  else from the batch itself (as ``sentence_transformers.quantize_embeddings``; fine for a
  large batch, unstable for a small one: compute ranges once on a sample of the corpus
  with :func:`calibration_ranges` and pass them to every call, queries included);
- ``binary`` / ``ubinary``: one bit per dimension (``x > 0``), packed 8 per byte
  (``np.packbits``): ``(n, ceil(dim / 8))`` uint8, or int8 = uint8 - 128.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def check_output_options(precision: str, truncate_dim: int | None, dim: int) -> None:
    """Clear errors before any work is done."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if truncate_dim is not None and (not isinstance(truncate_dim, int) or
                                     not 1 <= truncate_dim <= dim):
        raise UsageError(f"truncate_dim must be an integer in 1..{dim} (the model's "
                         f"dimension), got {truncate_dim!r}")


def truncation_warning(truncate_dim: int | None, dim: int,
                       trained_dims: list[int] | None) -> str | None:
    """Why ``truncate_dim`` may cost quality on this model (None when it is fine): a model
    not trained for truncation keeps no order of importance in its dimensions."""
    if truncate_dim is None or truncate_dim >= dim:
        return None
    if not trained_dims:
        return (f"truncate_dim={truncate_dim}: this model was not trained for truncation "
                f"(its llm2vec_config.json records no matryoshka_dims), so its first "
                f"{truncate_dim} of {dim} dimensions are not its most informative; measure "
                f"retrieval at this size, or train with matryoshka_dims")
    if truncate_dim < min(trained_dims):
        return (f"truncate_dim={truncate_dim} is below the smallest dimension this model was "
                f"trained for (matryoshka_dims={trained_dims}); expect a larger loss than at "
                f"{min(trained_dims)}")
    return None


def calibration_ranges(embeddings: np.ndarray) -> np.ndarray:
    """``(2, dim)``: each dimension's min and max over a representative sample."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise UsageError("calibration needs a 2-D array of at least 2 embeddings (a sample of "
                         f"the corpus), got shape {embeddings.shape}")
    return np.vstack((embeddings.min(axis=0), embeddings.max(axis=0)))


def quantize(embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None,
             calibration_embeddings: np.ndarray | None = None) -> np.ndarray:
    """``embeddings`` (float, ``(n, dim)``) at ``precision``; see the module docstring."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if precision == "float32":
        return embeddings
    if precision.endswith("binary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return packed if precision == "ubinary" else (packed.astype(np.int16) - 128).astype(
            np.int8)
    if ranges is None:
        source = embeddings if calibration_embeddings is None else calibration_embeddings
        if len(source) < 2:
            raise UsageError(f"{precision} needs quantization ranges: pass ranges= (from "
                             "llm2vec_rag.quantize.calibration_ranges on a sample of the corpus) "
                             "or encode at least 2 texts together")
        ranges = calibration_ranges(source)
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, embeddings.shape[-1]):
        raise UsageError(f"ranges must have shape (2, {embeddings.shape[-1]}) (mins, maxes per "
                         f"dimension, after truncate_dim), got {ranges.shape}")
    starts = ranges[0]
    steps = (ranges[1] - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit rows (an all-zero row stays zero): the one normalisation encode, the pool and
    the server's batcher share."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def finish(vectors: np.ndarray, normalize: bool, truncate_dim: int | None, precision: str,
           ranges: np.ndarray | None) -> np.ndarray:
    """What ``encode`` does to its float32 output, once: truncate, normalise, quantize."""
    if truncate_dim is not None:
        vectors = np.ascontiguousarray(vectors[:, :truncate_dim])
    if normalize:
        vectors = normalize_rows(vectors)
    if precision == "float32":
        return vectors
    if not len(vectors):
        width = (vectors.shape[1] + 7) // 8 if precision.endswith("binary") else vectors.shape[1]
        return np.zeros((0, width), dtype=np.int8 if precision in ("int8", "binary")
                        else np.uint8)
    return quantize(vectors, precision, ranges)
