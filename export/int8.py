"""The int8 recipes for CPUs, from a validated fp32 graph (ONNX Runtime's quantizers).

- "int8": block-wise int8 weights and activations (MatMulNBits), accurate on short queries;
- "int8-dynamic": per-channel int8 weights, per-tensor activation ranges computed at run
  time (MatMulInteger), fastest on long documents;
- "int8-static": per-channel int8 weights, per-tensor activation ranges fixed by
  calibration on real texts (QDQ), no range computed at run time.

Attention products and embeddings stay fp32 in all three. The per-channel recipes keep
their int8 weights in 7 bits (``reduce_range``): CPUs with AVX2 or AVX-512 but no VNNI
multiply uint8 activations by int8 weights in pairs summed into int16, which saturates
with full-range weights (ONNX Runtime's own advice for those CPUs). An export is run on
CPUs other than the one that made it, so every export takes the safe range: on an AVX2
AMD EPYC the full range dropped the tiny test model's cosine to PyTorch from 0.998 to 0.986.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from llm2vec_rag.errors import UsageError

from .validate import feeds

logger = logging.getLogger(__name__)

# What each recipe does, recorded in the export's onnx_export.json ("quantization"): a
# change here is a different graph, and whatever keys on the recipe (the gate's saved
# scores) must see it.
RECIPES = {
    "int8": {"weights": "int8, blocks of 32, symmetric (MatMulNBits)",
             "activations": "int8, blocks of 32, at run time (accuracy_level 4)"},
    "int8-dynamic": {"weights": "int8 per output channel, 7-bit range (reduce_range)",
                     "activations": "uint8 per tensor, at run time (MatMulInteger)",
                     "mlp_down_projections": "as int8"},
    "int8-static": {"weights": "int8 per output channel, symmetric, 7-bit range "
                               "(reduce_range)",
                    "activations": "uint8 per tensor, calibrated (MinMax, QDQ)",
                    "mlp_down_projections": "as int8"},
}


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, dynamic: bool = False) -> None:
    """Int8 weights for every linear layer; attention products and embeddings stay fp32.

    Default: MatMulNBits (8-bit weights in blocks of 32, activations quantized block-wise
    at run time, accuracy_level 4). ``dynamic=True``: MatMulInteger with per-tensor
    activation scales, about twice as fast on CPU, but an LLM's outlier activations (the
    first token, the gated MLP's output) then cost precision: long texts keep cosine ~0.999,
    short instructed queries can drop far lower (SmolLM2: 0.62). The MLP down projections
    (input wider than the model) keep block-wise activations even then.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    src, dst = Path(src), Path(dst)
    linear, wide, external = linear_layers(src)
    narrow = [n for n in linear if n not in wide]
    middle = dst.with_name(dst.stem + ".dynamic.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantizer advice ("run pre-processing") is noise here
    try:
        if dynamic:
            quantize_dynamic(src, middle, op_types_to_quantize=["MatMul"],
                             nodes_to_quantize=narrow, per_channel=True,
                             weight_type=QuantType.QInt8, reduce_range=True,
                             use_external_data_format=external)
        blockwise = wide if dynamic else linear
        quantizer = MatMulNBitsQuantizer(onnx.load(str(middle if dynamic else src)), bits=8,
                                         block_size=32, is_symmetric=True, accuracy_level=4,
                                         nodes_to_include=blockwise or ["<none>"])
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
    finally:
        root.setLevel(level)
        for leftover in (middle, middle.with_name(middle.name + ".data")):
            leftover.unlink(missing_ok=True)


def linear_layers(path: str | os.PathLike) -> tuple[list[str], list[str], bool]:
    """(every linear layer's MatMul node, those whose input is wider than the model - the
    MLP down projections -, whether the weights are external data) of an fp32 graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    weights = {t.name: list(t.dims) for t in graph.initializer}
    hidden = graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    linear = [n for n in graph.node if n.op_type == "MatMul" and len(weights.get(
        n.input[1], [])) == 2]
    if not linear:
        raise UsageError(f"{str(path)!r} has no linear layers to quantize")
    wide = [n.name for n in linear if hidden and weights[n.input[1]][0] > hidden]
    return [n.name for n in linear], wide, external


def quantize_int8_static(src: str | os.PathLike, dst: str | os.PathLike, batches: list) -> None:
    """Static (calibrated) int8 with ONNX Runtime's own machinery: shape inference and graph
    pre-processing (``quant_pre_process``), then ``quantize_static`` in QDQ format over the
    linear layers, fed ``batches`` (``calibration.calibration_batches``) by a
    ``CalibrationDataReader``. Weights: int8, per output channel, symmetric; activations:
    uint8 with one range per tensor fixed from the calibration batches (MinMax), so no range
    is computed at run time. The MLP down projections (input wider than the model, where
    the gated MLP's outlier activations arrive) keep block-wise int8 (MatMulNBits), as in
    "int8-dynamic"; attention products and embeddings stay fp32."""
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """The batches, one range at a time (ONNX Runtime's strided calibration)."""

        def __init__(self) -> None:
            self.set_range(0, len(batches))

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.rows = iter(batches[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.rows, None)
            return None if batch is None else feeds(batch)

    if not batches:
        raise UsageError("static int8 needs calibration batches; none were given")
    src, dst = Path(src), Path(dst)
    external = linear_layers(src)[2]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizers' progress and advice are noise here
    try:
        with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".int8-static-") as work:
            pre, middle = Path(work) / "pre.onnx", Path(work) / "qdq.onnx"
            try:
                quant_pre_process(src, pre, save_as_external_data=external)
            except Exception as err:  # noqa: BLE001 - symbolic shapes of an unusual graph
                logger.warning("symbolic shape inference failed (%s); quantizing with ONNX "
                               "shape inference only", err)
                quant_pre_process(src, pre, skip_symbolic_shape=True,
                                  save_as_external_data=external)
            linear, wide, _ = linear_layers(pre)
            quantize_static(
                pre, middle, Reader(), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=[n for n in linear if n not in wide] or ["<none>"],
                per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                reduce_range=True,
                use_external_data_format=external,
                # one batch per calibration pass, ranges merged (min/max) between passes:
                # memory stays that of one batch's activations
                extra_options={"WeightSymmetric": True, "CalibStridedMinMax": 1})
            quantizer = MatMulNBitsQuantizer(onnx.load(str(middle)), bits=8, block_size=32,
                                             is_symmetric=True, accuracy_level=4,
                                             nodes_to_include=wide or ["<none>"])
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
    finally:
        root.setLevel(level)
