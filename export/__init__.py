"""Export: fuse adapters, export to ONNX (fp32 / fp16 / int8), TensorRT engines, OpenVINO IR
(fp32 / NNCF int8), and the encoders that run an export: ``OnnxLLM2Vec`` (ONNX Runtime) and
``OpenVINOLLM2Vec`` (OpenVINO).

Imports are lazy: serving with ``OnnxLLM2Vec`` must not pull in torch, while the export
functions need it.
"""

from __future__ import annotations

import importlib

__all__ = ["OnnxLLM2Vec", "OpenVINOLLM2Vec", "FastTokenizer", "fuse_adapters", "export_onnx",
           "quantize_onnx", "export_openvino", "build_tensorrt", "TensorRTProfile",
           "ExportValidationError", "OutputExistsError"]

_LAZY = {
    "OnnxLLM2Vec": ".runtime",
    "OpenVINOLLM2Vec": ".openvino_runtime",
    "export_openvino": ".openvino_export",
    "FastTokenizer": ".tokenizer",
    "fuse_adapters": ".fuse",
    "export_onnx": ".onnx",
    "quantize_onnx": ".onnx",
    "build_tensorrt": ".tensorrt",
    "TensorRTProfile": ".tensorrt",
    "ExportValidationError": ".validate",
    "OutputExistsError": ".staging",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'llm2vec_rag.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
