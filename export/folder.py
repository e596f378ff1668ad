"""What every runtime of an exported folder shares (ONNX Runtime, OpenVINO): reading the
folder, building its encoder config, and ``ExportedEncoder``, the base class whose only
open step is running the graph.

Tokenization, the instruction mask, batching and order live in ``BaseEncoder``; pooling is
inside the graph (exported from the PyTorch encoder's own module). So a runtime adds one
method, ``run_graph`` (named inputs -> one named output), and nothing else. NumPy only: no
runtime library is imported here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm2vec_rag.config import CONFIG_NAME, EncoderConfig, check_pooling, split_prompts
from llm2vec_rag.encoder import BaseEncoder
from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_json_object
from llm2vec_rag.pool import MultiProcessMixin
from llm2vec_rag.preprocess import Batch

from .validate import INPUT_NAMES, OUTPUT_NAME, TOKENS_NAME

MODEL_FILE = "model.onnx"
EXPORT_INFO = "onnx_export.json"
OPENVINO_FILE = "openvino_model.xml"  # an OpenVINO IR folder (``export openvino``)
REEXPORT = "Re-export the folder (llm2vec-rag export onnx ... --overwrite)"


def read_export_info(folder: Path, file_name: str) -> dict:
    """The export info (``onnx_export.json``), after checking the folder has everything an
    encoder needs: the graph ``file_name``, the tokenizer (checked by its reader) and
    ``llm2vec_config.json``. Folders without export info give ``{}``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"Export folder {str(folder)!r} does not exist.")
    if not (folder / file_name).is_file():
        hint = ("Export a model first: llm2vec-rag export onnx --model M --out DIR.")
        if file_name == MODEL_FILE and (folder / OPENVINO_FILE).is_file():
            hint = ("It is an OpenVINO IR folder (llm2vec-rag export openvino): load it with "
                    "OpenVINOLLM2Vec, backend='openvino' or --openvino.")
        raise FileNotFoundError(f"{str(folder)!r} holds no {file_name}. {hint}")
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no {CONFIG_NAME} (pooling, max_length, instructions): the "
            "export is incomplete. Re-export it, or write one with EncoderConfig(...).save(dir) "
            "using the settings the model was exported with.")
    path = folder / EXPORT_INFO
    if not path.is_file():
        return {}
    return read_json_object(path, f"{REEXPORT}")


def exported_config(folder: Path, info: dict, *, pooling: str | None = None,
                    max_length: int | None = None, query_instruction: str | None = None,
                    document_instruction: str | None = None,
                    prompts: dict[str, str] | None = None) -> EncoderConfig:
    """The folder's ``llm2vec_config.json`` with the loader's overrides. ``pooling`` may only
    repeat the exported mode: it is compiled into the graph."""
    query_instruction, document_instruction, prompts = split_prompts(
        prompts, query_instruction, document_instruction)
    settings = EncoderConfig.read_dict(folder)
    exported = info.get("pooling", settings.get("pooling"))
    if pooling is not None and exported is not None and check_pooling(pooling) != exported:
        raise UsageError(
            f"This graph was exported with {exported!r} pooling, which is compiled into "
            f"it; {pooling!r} needs a new export (llm2vec-rag export onnx --pooling ...).")
    given = dict(max_length=max_length, query_instruction=query_instruction,
                 document_instruction=document_instruction)
    settings.update({k: v for k, v in given.items() if v is not None})
    if prompts:
        settings["prompts"] = {**settings.get("prompts", {}), **prompts}
    return EncoderConfig(**settings)


def graph_feeds(batch: Batch, input_names) -> dict[str, np.ndarray]:
    """The batch's arrays under the graph's input names (graphs may drop an unused input)."""
    arrays = dict(zip(INPUT_NAMES, (batch.input_ids, batch.attention_mask, batch.embed_mask)))
    return {k: v for k, v in arrays.items() if k in input_names}


class ExportedEncoder(MultiProcessMixin, BaseEncoder):
    """An exported graph behind the shared encode path. Subclasses set ``info``,
    ``model_path``, ``output_names``, ``input_names`` (and what ``BaseEncoder`` needs) and
    implement ``run_graph``."""

    info: dict
    model_path: str | None = None
    output_names: list[str]
    input_names: list[str]

    def run_graph(self, batch: Batch, output: str) -> np.ndarray:
        """One padded batch through the graph -> the named output as float32."""
        raise NotImplementedError

    def forward_batch(self, batch: Batch) -> np.ndarray:
        return self.run_graph(batch, OUTPUT_NAME)

    def forward_tokens(self, batch: Batch) -> np.ndarray:
        if TOKENS_NAME not in self.output_names:
            raise UsageError(
                f"{self.model_path or 'this graph'} has no {TOKENS_NAME!r} output (exported "
                f"before token outputs existed): re-export it (llm2vec-rag export onnx ... "
                f"--overwrite) for token embeddings and late chunking")
        hidden = self.run_graph(batch, TOKENS_NAME)  # [B, T', D]
        width = batch.input_ids.shape[1]  # a TensorRT profile may have padded the sequence
        if self.preprocessor.padding_side == "left":
            return hidden[:, hidden.shape[1] - width:]
        return hidden[:, :width]

    def _apply_pooling(self, pooling: str) -> None:
        exported = self.info.get("pooling") or getattr(self, "_exported_pooling", None)
        if exported is None:  # no export info: the pooling first configured is the graph's
            exported = self._exported_pooling = pooling
        if pooling != exported:
            raise UsageError(
                f"config.pooling={pooling!r}, but this graph was exported with "
                f"{exported!r} pooling, which is compiled into it: set it back, or export "
                f"again (llm2vec-rag export onnx --pooling {pooling} ...)")
