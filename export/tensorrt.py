"""TensorRT engines for an exported ONNX folder, through ONNX Runtime's TensorRT provider.

TensorRT compiles one engine per optimization profile: the batch and sequence ranges the
engine accepts, tuned for the ``opt`` shape. The engine (and a timing cache) is written to
``trt_cache/`` inside the ONNX folder, and ``tensorrt.json`` records the profile and options,
so ``OnnxLLM2Vec.from_pretrained(dir, provider="tensorrt")`` reuses the engine instead of
rebuilding it (minutes). Engines are specific to the GPU model and the TensorRT version.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .providers import open_session, provider_list, resolve_provider
from .staging import OutputExistsError, make_staging
from .validate import INPUT_NAMES, VALIDATION_INSTRUCTION, VALIDATION_TEXTS, agreement

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
                raise ValueError(f"TensorRT profile needs 1 <= min_{axis} <= opt_{axis} <= "
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


def build_tensorrt(
    folder: str | os.PathLike,
    profile: TensorRTProfile | None = None,
    *,
    fp16: bool = True,
    device: str | None = None,
    workspace_gb: float | None = None,
    min_cosine: float = 0.999,
    overwrite: bool = False,
) -> Path:
    """Build (and cache) the TensorRT engine for an ONNX folder, then check it against
    ONNX Runtime on CPU. Needs onnxruntime-gpu with TensorRT libraries and an NVIDIA GPU."""
    from .runtime import OnnxLLM2Vec

    folder = Path(folder).expanduser()
    profile = profile or TensorRTProfile()
    cpu = OnnxLLM2Vec.from_pretrained(folder, provider="cpu")  # checks the folder first
    if str(cpu.info.get("variant", "")).startswith("int8"):
        raise ValueError("TensorRT cannot run ONNX Runtime's int8 operators; build the "
                         "engine from the fp32 (or fp16) export.")
    if (folder / TENSORRT_INFO).exists() and not overwrite:
        raise OutputExistsError(f"{str(folder / TENSORRT_INFO)!r} exists: an engine was built "
                                "already. Pass overwrite=True (--overwrite) to rebuild it.")
    _, device_id = resolve_provider("tensorrt", device)  # clear error without TensorRT
    staging = make_staging(folder, CACHE_DIR)
    try:
        options = tensorrt_options(staging, profile, fp16, workspace_gb)
        session = open_session(cpu.model_path,
                               provider_list("tensorrt", device_id, options))
        for which in ("min", "opt", "max"):  # the first run builds the engine
            b, t = getattr(profile, f"{which}_batch"), getattr(profile, f"{which}_seq")
            ones = np.ones((b, t), dtype=np.int64)
            session.run(None, {name: ones for name in INPUT_NAMES})
        stats = _compare_with_cpu(session, folder, profile, device_id)
        if stats["min_cosine"] < min_cosine:
            raise RuntimeError(
                f"The TensorRT engine's vectors have cosine {stats['min_cosine']:.4f} to ONNX "
                f"Runtime CPU (< {min_cosine}); try fp16=False.")
        del session
        final = folder / CACHE_DIR
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    info = {"profile": asdict(profile), "fp16": fp16, "workspace_gb": workspace_gb,
            "cache_dir": CACHE_DIR, "validation": stats}
    (folder / TENSORRT_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return folder / CACHE_DIR


def _compare_with_cpu(session, folder: Path, profile: TensorRTProfile,
                      device_id: int) -> dict:
    """Encode the validation texts through the engine and through the CPU graph."""
    from llm2vec_rag.config import EncoderConfig

    from .runtime import OnnxLLM2Vec

    cpu = OnnxLLM2Vec.from_pretrained(folder, provider="cpu", max_length=profile.max_seq)
    trt = OnnxLLM2Vec(session, cpu.tokenizer, EncoderConfig(**{
        **cpu.config.__dict__, "max_length": profile.max_seq}), info=cpu.info,
        io_binding=True, device_id=device_id, profile=profile)
    got, want = [], []
    for instruction in (None, VALIDATION_INSTRUCTION):
        got.append(trt.encode(VALIDATION_TEXTS, instruction=instruction))
        want.append(cpu.encode(VALIDATION_TEXTS, instruction=instruction))
    return agreement(got, want)
