"""A TensorRT engine's profile and provider options, as recorded in an ONNX folder.

What the ONNX Runtime encoder needs to open a built engine; building one is
``export.tensorrt``'s job. Kept apart so the runtime never imports the builder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from llm2vec_rag.errors import UsageError

from .validate import INPUT_NAMES

TENSORRT_INFO = "tensorrt.json"
CACHE_DIR = "trt_cache"


@dataclass
class TensorRTProfile:
    """Shapes the engine accepts: batch in [min_batch, max_batch], tokens in [min_seq,
    max_seq]; kernels are tuned for (opt_batch, opt_seq)."""

    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 32
    min_seq: int = 1
    opt_seq: int = 128
    max_seq: int = 512

    def __post_init__(self) -> None:
        for axis in ("batch", "seq"):
            lo, opt, hi = (getattr(self, f"{k}_{axis}") for k in ("min", "opt", "max"))
            if not (isinstance(lo, int) and 1 <= lo <= opt <= hi):
                raise UsageError(f"TensorRT profile needs 1 <= min_{axis} <= opt_{axis} <= "
                                 f"max_{axis}, got {lo}, {opt}, {hi}")

    def shapes(self, which: str) -> str:
        """ORT's profile syntax: ``input_ids:BxT,attention_mask:BxT,embed_mask:BxT``."""
        b, t = getattr(self, f"{which}_batch"), getattr(self, f"{which}_seq")
        return ",".join(f"{name}:{b}x{t}" for name in INPUT_NAMES)


def tensorrt_options(cache: str | os.PathLike, profile: TensorRTProfile, fp16: bool = True,
                     workspace_gb: float | None = None) -> dict:
    """TensorRT provider options: explicit profile, engine + timing cache, precision."""
    options = {
        "trt_fp16_enable": bool(fp16),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": profile.shapes("min"),
        "trt_profile_opt_shapes": profile.shapes("opt"),
        "trt_profile_max_shapes": profile.shapes("max"),
    }
    if workspace_gb is not None:
        options["trt_max_workspace_size"] = int(workspace_gb * 2**30)
    return options


def read_tensorrt(folder: str | os.PathLike) -> tuple[dict, TensorRTProfile]:
    """Provider options (absolute cache path) and profile of a folder's built engine."""
    folder = Path(folder)
    path = folder / TENSORRT_INFO
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no {TENSORRT_INFO}: build the TensorRT engine first "
            "(llm2vec-rag export tensorrt --model DIR --max-batch B --max-seq T).")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    profile = TensorRTProfile(**info["profile"])
    return tensorrt_options(folder / CACHE_DIR, profile, info["fp16"],
                            info.get("workspace_gb")), profile
