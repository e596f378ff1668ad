"""Choosing ONNX Runtime execution providers and opening sessions (torch-free).

``provider`` is one of cpu / cuda / tensorrt; ``device`` ("cpu", "cuda", "cuda:1") is
accepted too, so the CLI's shared ``--device`` flag works unchanged. A provider that was
asked for but is missing is an error, not a silent fall-back to CPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidGraph, InvalidProtobuf

from llm2vec_rag.errors import SetupError, UsageError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}


def available(provider: str) -> bool:
    return PROVIDERS[provider] in ort.get_available_providers()


def resolve_provider(provider: str | None, device: str | None,
                     prefer_gpu: bool = True) -> tuple[str, int]:
    """(provider, device_id) from the user's words; GPU by default when one is usable."""
    device_id = 0
    if device is not None:
        kind, _, index = str(device).partition(":")
        if kind not in ("cpu", "cuda"):
            raise UsageError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        device_id = int(index) if index else 0
        if provider is None:
            provider = kind
        elif (provider == "cpu") != (kind == "cpu"):
            raise UsageError(f"provider={provider!r} contradicts device={device!r}")
    if provider is None:
        provider = "cuda" if prefer_gpu and available("cuda") else "cpu"
    if provider not in PROVIDERS:
        raise UsageError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    if not available(provider):
        raise SetupError(
            f"{PROVIDERS[provider]} is not available in this onnxruntime build (available: "
            f"{', '.join(ort.get_available_providers())}). For cuda/tensorrt install "
            "onnxruntime-gpu (pip install 'llm2vec-rag[onnx-gpu]') with matching CUDA/TensorRT "
            "libraries, or use provider='cpu'."
        )
    return provider, device_id


def provider_list(provider: str, device_id: int = 0,
                  tensorrt_options: dict | None = None) -> list:
    """The ordered ORT provider list: TensorRT falls back to CUDA, everything to CPU."""
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if provider == "tensorrt":
        options = {"device_id": device_id, **(tensorrt_options or {})}
        return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: str | os.PathLike, providers: Sequence, threads: int | None = None,
                 options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An InferenceSession that really runs on the first provider asked for."""
    if options is None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about CPU fall-back of shape ops are noise
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=list(providers))
    except (InvalidProtobuf, InvalidGraph) as err:
        raise UsageError(
            f"{path}: ONNX Runtime cannot read this model, it is truncated or corrupt "
            f"({type(err).__name__}: {str(err).split(':')[-1].strip().rstrip('.')}). Re-export it "
            f"(llm2vec-rag export onnx --model M --out DIR --overwrite) or re-copy the folder."
        ) from None
    wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
    if wanted not in session.get_providers():
        raise SetupError(
            f"onnxruntime could not start {wanted} (got {session.get_providers()}); check the "
            "CUDA/TensorRT libraries and the GPU driver, or use provider='cpu'."
        )
    return session
