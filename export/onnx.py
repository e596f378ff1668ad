"""ONNX export of the encoder (decoder + pooling), validated before it is moved into place.

The exported module is ``EncoderModule``, the very module the PyTorch encoder runs, so
pooling exists once: inputs ``input_ids``, ``attention_mask``, ``embed_mask`` ([batch,
sequence] int64), outputs ``sentence_embedding`` ([batch, dim] float32) and
``token_embeddings`` (the last hidden states, [batch, sequence, dim] float32, for token
outputs and late chunking; ONNX Runtime computes only the outputs asked for). The model is loaded
with ``config.is_causal = False``, so transformers builds a padding-only mask and the traced
graph holds no causal branch; the validation proves it on the graph itself.

Folder: ``model.onnx`` (+ ``model.onnx.data`` above 2 GB), tokenizer files,
``llm2vec_config.json`` and ``onnx_export.json`` (variant, pooling, dim, validation numbers).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llm2vec_rag.errors import UsageError

from .calibration import calibration_batches, describe, read_calibration
from .fuse import load_for_export
from .int8 import RECIPES, quantize_int8, quantize_int8_static
from .providers import available, open_session, provider_list
from .staging import check_output, staged_output
from .tokenizer import check_same_ids
from .trt_profile import TENSORRT_INFO
from .validate import (
    INPUT_NAMES,
    OUTPUT_NAME,
    TOKENIZER_TEXTS,
    TOKENS_NAME,
    ExportValidationError,
    agreement,
    causal_mask_ops,
    check_agreement,
    feeds,
    probe_bidirectional,
    validation_batches,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
EXPORT_INFO = "onnx_export.json"
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB; keep a margin
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98, "int8-dynamic": 0.98,
              "int8-static": 0.98}
QUANTIZATIONS = ("int8", "int8-dynamic", "int8-static")
_CHOICES = "None, 'int8', 'int8-dynamic' or 'int8-static'"
_VARIANTS = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float16": "fp16"}


def export_onnx(
    model,
    out: str | os.PathLike,
    adapters: Sequence[str | os.PathLike] | None = None,
    *,
    dtype: str = "fp32",
    quantize: str | None = None,
    calibration: str | os.PathLike | Sequence[str] | None = None,
    external_data: bool | None = None,
    opset: int | None = None,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    min_cosine: float | None = None,
    **load_kwargs,
) -> Path:
    """Export ``model`` (path, hub id or ``LLM2Vec``; + ``adapters``) to an ONNX folder.

    ``dtype``: fp32, or fp16 (for GPUs; validated on CUDA when present, else on CPU).
    ``quantize``: int8 weights from the validated fp32 graph, for CPUs (see ``quantize_int8``):
    "int8" (block-wise, accurate also on short queries), "int8-dynamic" (fastest) or
    "int8-static" (calibrated on ``calibration``: a text / JSONL file or a list of texts,
    default the built-in texts of ``calibration.DEFAULT_TEXTS``; see ``quantize_int8_static``).
    ``external_data``: None = automatic above ~2 GB. The export fails (leaving nothing at
    ``out``) if ONNX Runtime disagrees with PyTorch beyond ``tolerance`` (fp32, relative to
    the output scale) or ``min_cosine`` (every row for fp32, the mean for fp16/int8), or if
    the graph is not bidirectional.
    """
    sources = [model, *(adapters or [])]
    out = check_output(out, overwrite, sources)
    variant = _VARIANTS.get(str(dtype).lower())
    if variant is None:
        raise UsageError(f"dtype must be fp32 or fp16 for ONNX export, got {dtype!r}")
    if quantize not in (None, *QUANTIZATIONS):
        raise UsageError(f"quantize must be {_CHOICES}, got {quantize!r}")
    if calibration is not None and quantize != "int8-static":
        raise UsageError("calibration texts are for quantize='int8-static' (the other recipes "
                         "need none)")
    texts = read_calibration(calibration) if quantize == "int8-static" else None
    if quantize and variant != "fp32":
        raise UsageError("int8 quantization starts from the fp32 graph: use dtype='fp32'")
    final = quantize or variant
    min_cosine = MIN_COSINE[final] if min_cosine is None else min_cosine

    from llm2vec_rag.model import EncoderModule

    encoder = load_for_export(model, adapters, **load_kwargs)
    module = EncoderModule(encoder.model, encoder.config.pooling, with_tokens=True).eval()
    weights_dtype = str(next(module.parameters()).dtype).replace("torch.", "")
    if variant == "fp32" and weights_dtype != "float32":
        raise UsageError(f"The model is loaded in {weights_dtype}; the fp32 export needs "
                         "float32 weights: load it with dtype='float32'.")
    if variant == "fp32" and getattr(encoder, "autocast", None) is not None:
        raise UsageError("The model runs its matmuls in bf16 (dtype='bf16-autocast'); the "
                         "fp32 export is checked against float32 vectors: load it with "
                         "dtype='float32'.")
    batches = validation_batches(encoder.preprocessor)
    reference = [encoder.forward_batch(b) for b in batches]  # [B, D] float32 each
    if variant == "fp16":  # keep the caller's model untouched
        module = (copy.deepcopy(module) if not isinstance(model, (str, os.PathLike))
                  else module).half()

    with staged_output(out, overwrite, "onnx", sources) as tmp:
        stage = tmp / "_graph"
        stage.mkdir()
        _torch_export(module, stage / MODEL_FILE, batches[0], external_data, opset)
        info = {"variant": variant, "pooling": encoder.config.pooling, "dim": encoder.dim,
                "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME,
                "outputs": [OUTPUT_NAME, TOKENS_NAME],
                "vocab_size": int(encoder.model.get_input_embeddings().num_embeddings),
                "model_id": _model_id(model, adapters, encoder)}
        info["validation"] = {variant: _validate(stage / MODEL_FILE, variant, batches,
                                                 reference, encoder, tolerance,
                                                 MIN_COSINE[variant] if quantize else min_cosine)}
        if quantize == "int8-static":
            quantize_int8_static(stage / MODEL_FILE, tmp / MODEL_FILE, calibration_batches(
                encoder.preprocessor, texts, encoder.config.query_instruction))
            shutil.rmtree(stage)
            info["calibration"] = describe(calibration, texts)
            info["validation"][quantize] = _validate(tmp / MODEL_FILE, quantize, batches,
                                                     reference, encoder, tolerance, min_cosine)
            info["variant"] = quantize
        elif quantize:
            quantize_int8(stage / MODEL_FILE, tmp / MODEL_FILE, dynamic=quantize != "int8")
            shutil.rmtree(stage)
            info["validation"][quantize] = _validate(tmp / MODEL_FILE, quantize, batches,
                                                     reference, encoder, tolerance, min_cosine)
            info["variant"] = quantize
        else:
            for f in stage.iterdir():  # external data is referenced by file name: keep names
                os.replace(f, tmp / f.name)
            stage.rmdir()
        encoder.tokenizer.save_pretrained(tmp)
        encoder.config.save(tmp)
        check_same_ids(tmp, encoder.tokenizer, TOKENIZER_TEXTS)
        info["files"] = sorted(f.name for f in tmp.iterdir())
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    logger.info("exported %s ONNX to %s: %s", final, out, info["validation"])
    return out


def _model_id(model, adapters, encoder) -> str:
    """The id the source model is served under, so ``serve --onnx`` keeps it."""
    from llm2vec_rag.default_model import model_id

    if isinstance(model, (str, os.PathLike)):
        return model_id(str(model), [str(a) for a in adapters or []])
    spec = getattr(encoder, "spec", None)
    return model_id(spec.model, spec.adapters) if spec is not None else "llm2vec"


def _torch_export(module, path: Path, example, external_data: bool | None,
                  opset: int | None) -> None:
    """torch.onnx.export (dynamo) with dynamic batch and sequence axes."""
    import torch

    param = next(module.parameters())
    args = tuple(torch.from_numpy(a).to(param.device) for a in
                 (example.input_ids, example.attention_mask, example.embed_mask))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    if external_data is None:
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        external_data = size > EXTERNAL_DATA_BYTES
    chatty = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = chatty.level
    chatty.setLevel(logging.ERROR)  # "torchvision is not installed" is irrelevant here
    with warnings.catch_warnings(), contextlib.redirect_stdout(_Discard()):
        warnings.simplefilter("ignore")  # exporter chatter (axis names, deprecations)
        program = torch.onnx.export(
            module, args, dynamo=True, input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME, TOKENS_NAME], dynamic_shapes=dynamic, opset_version=opset,
            optimize=True, verbose=False, report=False)
        program.save(str(path), external_data=external_data)
    chatty.setLevel(level)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _validate(path: Path, variant: str, batches, reference, encoder, tolerance: float,
              min_cosine: float) -> dict:
    """Agreement with PyTorch, the bidirectionality probe and the causal-op scan."""
    import onnx

    found = causal_mask_ops(onnx.load(str(path), load_external_data=False))
    if found:
        raise ExportValidationError(
            f"The exported graph builds a causal attention mask ({'; '.join(found[:3])}). "
            "The model was not loaded bidirectionally; LLM2Vec exports must be non-causal.")
    provider = "cuda" if variant == "fp16" and available("cuda") else "cpu"
    session = open_session(path, provider_list(provider))

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run([OUTPUT_NAME], inputs)[0]

    stats = agreement([run(feeds(b)) for b in batches], reference)
    stats["provider"] = provider
    check_agreement(stats, variant, tolerance=tolerance, min_cosine=min_cosine)
    # token outputs at real positions: enforced for fp32, recorded for reduced precisions
    real = [b.attention_mask.astype(bool) for b in batches]
    tokens = agreement([session.run([TOKENS_NAME], feeds(b))[0][m] for b, m in zip(batches, real)],
                       [encoder.forward_tokens(b)[m] for b, m in zip(batches, real)])
    stats["tokens"] = tokens
    if variant == "fp32":
        check_agreement(tokens, variant, tolerance=tolerance, min_cosine=min_cosine)
    vocab = int(encoder.model.get_input_embeddings().num_embeddings)
    if not probe_bidirectional(run, vocab, encoder.config.pooling):
        raise ExportValidationError(
            "In ONNX Runtime a later token does not change an earlier token's output: the "
            "graph is causal. Export a model loaded with enable_bidirectional=True.")
    return stats


def quantize_onnx(src: str | os.PathLike, out: str | os.PathLike, method: str = "int8", *,
                  overwrite: bool = False, min_cosine: float | None = None,
                  calibration: str | os.PathLike | Sequence[str] | None = None) -> Path:
    """An int8 folder from an exported fp32 folder, checked against the fp32 graph (no torch).

    ``method``: "int8", "int8-dynamic" (see ``quantize_int8``) or "int8-static"
    (``quantize_int8_static``, calibrated on ``calibration``: see ``export_onnx``)."""
    if method not in QUANTIZATIONS:
        raise UsageError(f"method must be 'int8', 'int8-dynamic' or 'int8-static', got "
                         f"{method!r}")
    if calibration is not None and method != "int8-static":
        raise UsageError("calibration texts are for method='int8-static' (the other recipes "
                         "need none)")
    texts = read_calibration(calibration) if method == "int8-static" else None
    min_cosine = MIN_COSINE[method] if min_cosine is None else min_cosine
    from .runtime import OnnxLLM2Vec

    out = check_output(out, overwrite, [src])
    fp32 = OnnxLLM2Vec.from_pretrained(src, provider="cpu")
    if fp32.info.get("variant") != "fp32":
        raise UsageError(f"{str(src)!r} holds a {fp32.info.get('variant')} graph; int8 "
                         "quantization needs the fp32 export.")
    batches = validation_batches(fp32.preprocessor)
    reference = [fp32.forward_batch(b) for b in batches]
    with staged_output(out, overwrite, "onnx", [src]) as tmp:
        if texts is not None:
            quantize_int8_static(fp32.model_path, tmp / MODEL_FILE, calibration_batches(
                fp32.preprocessor, texts, fp32.config.query_instruction))
        else:
            quantize_int8(fp32.model_path, tmp / MODEL_FILE, dynamic=method != "int8")
        for f in Path(src).iterdir():  # tokenizer and llm2vec config; not fp32 engines
            if f.is_file() and not f.name.startswith(MODEL_FILE) and f.name != TENSORRT_INFO:
                shutil.copy2(f, tmp / f.name)
        session = open_session(tmp / MODEL_FILE, provider_list("cpu"))
        got = [session.run([OUTPUT_NAME], feeds(b))[0] for b in batches]
        stats = agreement(got, reference)
        check_agreement(stats, method, tolerance=0.0, min_cosine=min_cosine)
        info = {**fp32.info, "variant": method, "quantization": RECIPES[method]}
        if texts is not None:
            info["calibration"] = describe(calibration, texts)
        info["validation"] = {**fp32.info.get("validation", {}),
                              f"{method}_vs_fp32_onnx": stats}
        info["files"] = sorted(f.name for f in tmp.iterdir())
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out
