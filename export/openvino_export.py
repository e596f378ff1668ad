"""``export_openvino``: an OpenVINO IR folder (fp32, or int8 by NNCF) from an fp32 ONNX export.

OpenVINO runs the ONNX export as it is (``OpenVINOLLM2Vec.from_pretrained(onnx_dir)``);
this step is for int8, which is decided once, at export time, not at every load: NNCF's
post-training quantization (``nncf.quantize``, transformer preset, SmoothQuant) is
calibrated on real texts fed through the encoder's own preprocessing
(``calibration.calibration_batches``) and takes seconds to minutes. The result is checked
against the fp32 graph on the export's validation batches and written to a staging folder,
moved into place only when complete. The folder holds ``openvino_model.xml`` / ``.bin``,
the tokenizer, ``llm2vec_config.json`` and ``onnx_export.json`` (variant ``openvino-int8``
or ``openvino-fp32``, the calibration, the check). Torch-free.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from llm2vec_rag.errors import UsageError

from .calibration import calibration_batches, describe, read_calibration
from .folder import EXPORT_INFO, MODEL_FILE, OPENVINO_FILE
from .openvino_runtime import INSTALL, MissingExtraError, OpenVINOLLM2Vec, import_openvino
from .staging import check_output, staged_output
from .trt_profile import TENSORRT_INFO
from .validate import agreement, check_agreement, feeds, validation_batches

QUANTIZATIONS = ("int8",)
MIN_COSINE = {"openvino-fp32": 0.9999, "openvino-int8": 0.98}
SMOOTH_QUANT_ALPHA = 0.5
# recorded in onnx_export.json ("quantization"), as export/int8.py's RECIPES
RECIPE = {"weights": "int8 per output channel, 7-bit range (OverflowFix.ENABLE)",
          "activations": "uint8 per tensor, calibrated",
          "smooth_quant_alpha": SMOOTH_QUANT_ALPHA}


def export_openvino(
    onnx_folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    quantize: str | None = "int8",
    calibration: str | os.PathLike | Sequence[str] | None = None,
    overwrite: bool = False,
    min_cosine: float | None = None,
) -> Path:
    """An OpenVINO IR folder at ``out`` from the fp32 ONNX export ``onnx_folder``.

    ``quantize``: "int8" (NNCF, default) or None (the fp32 graph as IR: the same vectors
    as the ONNX folder, saved without fp16 compression). ``calibration``: a text file (one
    text per line), a JSONL file ("text" field) or a list of texts (default: the built-in
    texts; see ``calibration``); each text is calibrated as a document and as a query with
    the model's query instruction. The IR must keep a mean cosine of ``min_cosine``
    (default 0.98 int8, every row 0.9999 fp32) to the fp32 graph, else nothing is written.
    """
    if quantize not in (None, *QUANTIZATIONS):
        raise UsageError(f"quantize must be None or 'int8' for OpenVINO, got {quantize!r}")
    if calibration is not None and quantize is None:
        raise UsageError("calibration texts are for quantize='int8' (fp32 needs none)")
    ov = import_openvino()
    nncf = _import_nncf() if quantize else None
    variant = f"openvino-{quantize or 'fp32'}"
    min_cosine = MIN_COSINE[variant] if min_cosine is None else min_cosine
    src = Path(onnx_folder).expanduser()
    out = check_output(out, overwrite, [src])
    texts = read_calibration(calibration) if quantize else None
    fp32 = OpenVINOLLM2Vec.from_pretrained(src, file_name=MODEL_FILE)
    if fp32.info.get("variant", "fp32") != "fp32":
        raise UsageError(f"{str(src)!r} holds a graph of variant {fp32.info.get('variant')!r}; "
                         "OpenVINO IR is made from the fp32 export (llm2vec-rag export onnx "
                         "without --quantize or --dtype).")
    model = ov.Core().read_model(fp32.model_path)
    if quantize:
        # int8 weights and activations; the transformer preset applies SmoothQuant first,
        # moving activation outliers into the weights. Its matmul strength 0.5 instead of
        # NNCF's 0.95: in a trial on a cut of the bundled model, 0.95 let the worst
        # instructed query drift much further from fp32. The gate (benchmarks/gate.py,
        # openvino-int8) is where the choice is to be confirmed on the whole model. Weights
        # in half the int8 range everywhere (OverflowFix.ENABLE; NNCF's default fixes only
        # the first layer): CPUs without VNNI saturate otherwise (see export/int8.py).
        from nncf.quantization.advanced_parameters import (
            AdvancedQuantizationParameters,
            AdvancedSmoothQuantParameters,
            OverflowFix,
        )

        nncf.set_log_level(logging.ERROR)  # statistics chatter
        batches = calibration_batches(fp32.preprocessor, texts, fp32.config.query_instruction)
        advanced = AdvancedQuantizationParameters(
            overflow_fix=OverflowFix.ENABLE,
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA))
        model = nncf.quantize(model, nncf.Dataset(batches, feeds),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches),
                              advanced_parameters=advanced)
    batches = validation_batches(fp32.preprocessor)
    reference = [fp32.forward_batch(b) for b in batches]
    with staged_output(out, overwrite, "openvino", [src]) as tmp:
        ov.save_model(model, str(tmp / OPENVINO_FILE), compress_to_fp16=False)
        for f in src.iterdir():  # tokenizer and llm2vec config; not the ONNX graph or engines
            if f.is_file() and not f.name.startswith(MODEL_FILE) and f.name not in (
                    TENSORRT_INFO, EXPORT_INFO):
                shutil.copy2(f, tmp / f.name)
        ir = OpenVINOLLM2Vec.from_pretrained(tmp, file_name=OPENVINO_FILE)
        stats = agreement([ir.forward_batch(b) for b in batches], reference)
        check_agreement(stats, "fp32" if quantize is None else variant, tolerance=1e-4,
                        min_cosine=min_cosine)
        info = {**fp32.info, "variant": variant, "format": "openvino-ir",
                "openvino": ov.__version__}
        if quantize:
            info["quantization"] = RECIPE
        info["validation"] = {**fp32.info.get("validation", {}),
                              f"{variant}_vs_fp32_onnx": stats}
        if texts is not None:
            info["calibration"] = {**describe(calibration, texts),
                                   "method": "nncf.quantize (transformer, SmoothQuant "
                                             f"alpha {SMOOTH_QUANT_ALPHA})"}
        info["files"] = sorted(f.name for f in tmp.iterdir())
        (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out


def _import_nncf():
    try:
        import nncf
    except ImportError as err:
        raise MissingExtraError(f"OpenVINO int8 needs nncf ({err}): {INSTALL}") from None
    return nncf
