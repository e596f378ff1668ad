"""``OpenVINOLLM2Vec``: an exported folder run by OpenVINO, with the PyTorch encoder's API.

OpenVINO reads the ONNX export itself (``openvino.Core().read_model``; no optimum, no
conversion step), or the OpenVINO IR that ``export_openvino`` writes (an NNCF int8 model,
or fp32). Like ``OnnxLLM2Vec`` it differs from ``LLM2Vec`` only in running the graph: the
shared ``BaseEncoder`` path tokenizes, masks the instruction, batches and restores order,
and pooling is inside the graph. Neither torch nor onnxruntime is imported.

Precision: OpenVINO's CPU plugin runs fp32 graphs in bf16 on CPUs with AMX or AVX-512-bf16
unless told otherwise; this encoder asks for f32 by default (``inference_precision``), so
an fp32 export gives fp32 vectors everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from llm2vec_rag.errors import SetupError, UsageError
from llm2vec_rag.preprocess import Batch
from llm2vec_rag.spec import records_spec

from .folder import (
    MODEL_FILE,
    OPENVINO_FILE,
    ExportedEncoder,
    exported_config,
    graph_feeds,
    read_export_info,
)
from .tokenizer import FastTokenizer
from .validate import OUTPUT_NAME

INSTALL = "pip install 'llm2vec-rag[openvino]'"
PRECISIONS = ("f32", "bf16", "f16")


class MissingExtraError(ImportError, SetupError):
    """The [openvino] extra is not installed: an ImportError, and a SetupError, which the CLI
    reports in one line."""


def import_openvino():
    """The ``openvino`` module, or an error that says how to install it."""
    try:
        import openvino
    except ImportError as err:
        raise MissingExtraError(f"The OpenVINO runtime needs the openvino package ({err}): "
                                f"{INSTALL}") from None
    return openvino


class OpenVINOLLM2Vec(ExportedEncoder):
    """An exported LLM2Vec model (ONNX or OpenVINO IR) run by OpenVINO."""

    def __init__(self, compiled, tokenizer: FastTokenizer, config, *, info: dict | None = None,
                 model_path: str | None = None, device: str = "CPU",
                 inference_precision: str = "f32", padding_side: str = "left") -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()  # reused: one call at a time (lock)
        self.tokenizer = tokenizer
        self.config = config
        self.info = info or {}
        self.model_path = model_path
        self.device = device
        self.inference_precision = inference_precision
        # The graph's path, as for ONNX Runtime: an fp32 graph gives the same vectors in both
        # runtimes; a reduced inference precision is another source.
        self.source = str(model_path or "")
        if inference_precision != "f32":
            self.source += f" (openvino {inference_precision})"
        # every name of every port (OpenVINO may keep an internal name beside ours)
        self.output_names = [n for o in compiled.outputs for n in sorted(o.get_names())]
        self.input_names = [n for i in compiled.inputs for n in sorted(i.get_names())]
        dim = compiled.output(OUTPUT_NAME).get_partial_shape()[-1]
        self.dim = dim.get_length() if dim.is_static else int(self.info["dim"])
        self._init_preprocessor(padding_side)

    @classmethod
    @records_spec("openvino")
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        device: str | None = None,
        threads: int | None = None,
        inference_precision: str = "f32",
        max_length: int | None = None,
        pooling: str | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        prompts: dict[str, str] | None = None,
        padding_side: str = "left",
        file_name: str | None = None,
    ) -> OpenVINOLLM2Vec:
        """Open an export folder: ``openvino_model.xml`` when the folder has one (written by
        ``export_openvino``), else ``model.onnx`` (``export_onnx``'s fp32 graph).
        ``device``: an OpenVINO device (cpu, gpu, gpu.1, npu, auto; default cpu).
        ``threads``: CPU inference threads (default: OpenVINO's). ``inference_precision``:
        f32 (default, exact), or bf16 / f16 where the device runs them natively (faster,
        another source of vectors). ``pooling`` may only repeat the exported mode."""
        ov = import_openvino()
        folder = Path(folder).expanduser()
        if file_name is None:
            file_name = OPENVINO_FILE if (folder / OPENVINO_FILE).is_file() else MODEL_FILE
        info = read_export_info(folder, file_name)
        if inference_precision not in PRECISIONS:
            raise UsageError(f"inference_precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {inference_precision!r}")
        core = ov.Core()
        device = _device(core, device)
        try:
            model = core.read_model(str(folder / file_name))
        except RuntimeError as err:
            raise UsageError(
                f"{folder / file_name}: OpenVINO cannot read this graph ({_first_line(err)}). "
                "ONNX Runtime's own int8 graphs (int8, int8-dynamic) use operators only ONNX "
                "Runtime has: give OpenVINO the fp32 export, or an int8 IR from llm2vec-rag "
                "export openvino --quantize int8. A truncated file needs a re-export.") from None
        properties = {"INFERENCE_PRECISION_HINT": inference_precision}
        if threads is not None:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        compiled = core.compile_model(model, device, properties)
        config = exported_config(folder, info, pooling=pooling, max_length=max_length,
                                 query_instruction=query_instruction,
                                 document_instruction=document_instruction, prompts=prompts)
        return cls(compiled, FastTokenizer.from_pretrained(folder), config, info=info,
                   model_path=str(folder / file_name), device=device,
                   inference_precision=inference_precision, padding_side=padding_side)

    def run_graph(self, batch: Batch, output: str) -> np.ndarray:
        result = self.request.infer(graph_feeds(batch, self.input_names))  # copies outputs
        return np.asarray(result[self.compiled.output(output)], dtype=np.float32)


def _device(core, device: str | None) -> str:
    """An OpenVINO device name from the user's words (cpu, gpu.1, ...), checked to exist."""
    name = "CPU" if device is None else str(device).upper()
    if name in ("AUTO",) or name.startswith(("AUTO:", "HETERO:", "MULTI:")):
        return name
    available = core.available_devices
    if name not in available:
        raise SetupError(f"device {device!r} is not an OpenVINO device here (available: "
                         f"{', '.join(d.lower() for d in available)}); OpenVINO names devices "
                         "cpu, gpu, gpu.1, npu (CUDA devices are ONNX Runtime's or PyTorch's)")
    return name


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
