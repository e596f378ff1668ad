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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from llm2vec_rag.errors import SetupError, UsageError

from .providers import open_session, provider_list, resolve_provider
from .staging import OutputExistsError, make_staging
from .trt_profile import (  # noqa: F401 - public here too, where they were first defined
    CACHE_DIR,
    TENSORRT_INFO,
    TensorRTProfile,
    read_tensorrt,
    tensorrt_options,
)
from .validate import INPUT_NAMES, VALIDATION_INSTRUCTION, VALIDATION_TEXTS, agreement


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
        raise UsageError("TensorRT cannot run ONNX Runtime's int8 operators; build the "
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
            raise SetupError(
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
