"""``OnnxLLM2Vec``: the ONNX Runtime encoder, with the PyTorch encoder's API and no torch.

It differs from ``LLM2Vec`` only in running the graph (``ExportedEncoder.run_graph``):
tokenization, the instruction mask, batching, order and normalisation are the shared
``BaseEncoder`` path. Pooling is inside the graph (exported from the same module), so the
pooling mode is fixed at export time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from llm2vec_rag.config import EncoderConfig
from llm2vec_rag.encoder import GPU_MAX_BATCH_TOKENS
from llm2vec_rag.errors import UsageError
from llm2vec_rag.preprocess import Batch
from llm2vec_rag.spec import records_spec

from .folder import (
    EXPORT_INFO,  # noqa: F401 - the name this module offered before folder.py held it
    MODEL_FILE,
    ExportedEncoder,
    exported_config,
    graph_feeds,
    read_export_info,
)
from .providers import open_session, provider_list, resolve_provider
from .tokenizer import FastTokenizer
from .trt_profile import TensorRTProfile, read_tensorrt


class OnnxLLM2Vec(ExportedEncoder):
    """An exported LLM2Vec model run by ONNX Runtime on CPU, CUDA or TensorRT."""

    def __init__(self, session, tokenizer: FastTokenizer, config: EncoderConfig, *,
                 info: dict | None = None, model_path: str | None = None,
                 io_binding: bool = False, device_id: int = 0,
                 profile: TensorRTProfile | None = None, padding_side: str = "left") -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.info = info or {}
        self.model_path = model_path
        self.source = str(model_path or "")
        self.provider = session.get_providers()[0]
        self.io_binding = io_binding
        self.device_id = device_id
        self.profile = profile  # TensorRT accepts only the shapes its profile covers
        self.output_name = session.get_outputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.input_names = [i.name for i in session.get_inputs()]
        dim = session.get_outputs()[0].shape[-1]
        self.dim = int(dim) if isinstance(dim, int) else int(self.info["dim"])
        if self.provider != "CPUExecutionProvider":  # a GPU: bigger batches fill it
            self.max_batch_tokens = GPU_MAX_BATCH_TOKENS
        self._init_preprocessor(padding_side)

    @classmethod
    @records_spec("onnx")
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        provider: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        io_binding: bool | None = None,
        max_length: int | None = None,
        pooling: str | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        prompts: dict[str, str] | None = None,
        padding_side: str = "left",
        file_name: str = MODEL_FILE,
    ) -> OnnxLLM2Vec:
        """Open an exported folder. ``provider``: cpu | cuda | tensorrt (default: cuda when
        available, except for int8 graphs, which are tuned for CPUs); ``device``: cpu | cuda:N.
        ``io_binding`` (default on GPU) keeps outputs on the device between runs.
        ``pooling`` may only repeat the exported mode: it is compiled into the graph."""
        folder = Path(folder).expanduser()
        info = read_export_info(folder, file_name)
        variant = info.get("variant", "fp32")
        provider, device_id = resolve_provider(provider, device,
                                               prefer_gpu=not variant.startswith("int8"))
        trt_options, profile = None, None
        if provider == "tensorrt":
            trt_options, profile = read_tensorrt(folder)
        session = open_session(folder / file_name,
                               provider_list(provider, device_id, trt_options), threads)
        config = exported_config(folder, info, pooling=pooling, max_length=max_length,
                                 query_instruction=query_instruction,
                                 document_instruction=document_instruction, prompts=prompts)
        if profile is not None and config.max_length > profile.max_seq:
            raise UsageError(
                f"max_length={config.max_length} exceeds the TensorRT profile's max_seq="
                f"{profile.max_seq}: rebuild the engine with a larger --max-seq, or pass "
                f"max_length<={profile.max_seq}.")
        if io_binding is None:
            io_binding = provider != "cpu"
        encoder = cls(session, FastTokenizer.from_pretrained(folder), config, info=info,
                      model_path=str(folder / file_name), io_binding=io_binding,
                      device_id=device_id, profile=profile, padding_side=padding_side)
        return encoder

    def _apply_pooling(self, pooling: str) -> None:
        super()._apply_pooling(pooling)
        if self.profile is not None and self.config.max_length > self.profile.max_seq:
            raise UsageError(
                f"config.max_length={self.config.max_length} exceeds the TensorRT profile's "
                f"max_seq={self.profile.max_seq}: rebuild the engine with a larger --max-seq, "
                f"or set max_length<={self.profile.max_seq}")

    def run_graph(self, batch: Batch, output: str) -> np.ndarray:
        inputs = graph_feeds(batch, self.input_names)
        n = len(batch.input_ids)
        step = self.profile.max_batch if self.profile else n
        parts = [self._run(self._fit_profile({k: v[i: i + step] for k, v in inputs.items()}),
                           output) for i in range(0, n, step)]
        return np.concatenate(parts)[:n].astype(np.float32, copy=False)

    def _fit_profile(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pad a chunk up to the TensorRT profile's minimum batch and sequence length."""
        if self.profile is None:
            return inputs
        rows, width = inputs["input_ids"].shape
        extra_rows = max(0, self.profile.min_batch - rows)
        extra_cols = max(0, self.profile.min_seq - width)
        if not extra_rows and not extra_cols:
            return inputs
        cols = (extra_cols, 0) if self.preprocessor.padding_side == "left" else (0, extra_cols)
        out = {}
        for name, a in inputs.items():
            a = np.concatenate([a, np.repeat(a[-1:], extra_rows, axis=0)])  # copies of a row
            fill = self.preprocessor.pad_id if name == "input_ids" else 0
            out[name] = np.pad(a, ((0, 0), cols), constant_values=fill)
        return out

    def _run(self, inputs: dict[str, np.ndarray], output: str | None = None) -> np.ndarray:
        output = output or self.output_name
        if not self.io_binding:
            return self.session.run([output], inputs)[0]
        binding = self.session.io_binding()
        device = "cpu" if self.provider == "CPUExecutionProvider" else "cuda"
        for name, array in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        binding.bind_output(output, device, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]
