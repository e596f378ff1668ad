"""``LLM2Vec``: the PyTorch encoder."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from .allocator import tune_from_env
from .cache import load_or_build
from .config import (
    EncoderConfig,
    check_pooling,
    read_reference_keys,
    resolve_reference_keys,
    split_prompts,
)
from .encoder import CPU_MAX_BATCH_TOKENS, GPU_MAX_BATCH_TOKENS, BaseEncoder
from .loading import (
    _quiet_transformers,
    adapter_base,
    apply_adapters,
    base_names,
    check_bidirectional,
    find_file,
    load_model,
    resolve_source,
    reuse_gguf_reader,
)
from .pool import MultiProcessMixin
from .pooling import pool
from .preprocess import Batch, load_tokenizer, special_template
from .spec import records_spec

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class EncoderModule(nn.Module):
    """Decoder plus pooling as one module: what runs in PyTorch and what gets exported to ONNX."""

    def __init__(self, model: PreTrainedModel, pooling: str, with_tokens: bool = False) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        # Also return the last hidden states (token embeddings): the ONNX export's second
        # output, so token vectors come from the very graph that pools.
        self.with_tokens = with_tokens

    def hidden_states(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:  # [B, T, D]
        """The decoder's last hidden states for a padded batch."""
        # Positions count real tokens only, so a text's positions do not depend on padding.
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids).last_hidden_state  # [B, T, D]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                embed_mask: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden_states(input_ids, attention_mask)  # [B, T, D]
        vectors = pool(hidden, attention_mask, embed_mask, self.pooling)  # [B, D]
        if self.with_tokens:
            return vectors, hidden.float()  # [B, D], [B, T, D]
        return vectors


def pick_device(device: str | torch.device | None) -> torch.device:
    """The device asked for (default: cuda when usable); a CUDA device that this torch build
    or machine lacks is one clear error, not torch's AssertionError deep in the load."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {str(device)!r} is not a torch device: use cpu, cuda or "
                         f"cuda:N ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build ({torch.__version__}) has no CUDA support"
                   if torch.version.cuda is None else
                   f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU on this "
                   f"machine")
            raise RuntimeError(f"device {str(device)!r}: CUDA is not available: {why}. Use "
                               f"--device cpu (device='cpu'), or install a CUDA build of torch "
                               f"on a machine with an NVIDIA GPU and driver.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {str(device)!r}: this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 .. "
                               f"cuda:{torch.cuda.device_count() - 1}).")
    return device


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 on CPU; bf16 (or fp16 where bf16 is unsupported) on GPU unless asked otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or 'auto'.")
    return _DTYPES[dtype]


def default_batch_tokens(model: PreTrainedModel) -> int:
    """The token budget per batch for this model's device (see ``BaseEncoder.encode``).

    CPU: the measured best. CUDA (not yet measured): a fifth of the free
    memory divided by one layer's activations per token (hidden states, q/k/v, MLP
    intermediates; SDPA keeps no T x T scores), clamped to 4k..64k tokens.
    """
    device = next(model.parameters()).device
    if device.type != "cuda":
        return CPU_MAX_BATCH_TOKENS
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return GPU_MAX_BATCH_TOKENS
    cfg = model.config
    per_token = next(model.parameters()).element_size() * (
        8 * cfg.hidden_size + 3 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size))
    budget = int(free * 0.2 / per_token)
    return max(4096, min(65536, 1 << (budget.bit_length() - 1)))


def _save_fused(loaded: tuple, folder: str) -> None:
    model, tokenizer = loaded
    with _quiet_transformers():  # no "Writing model shards" bar on a first load
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _load_fused(folder: str, base: str, bidirectional: bool, dtype: torch.dtype,
                attn_implementation: str | None, device: torch.device) -> tuple:
    """A cache entry: plain safetensors weights and a saved tokenizer (no GGUF, no merge)."""
    model = load_model(folder, enable_bidirectional=bidirectional, dtype=dtype,
                       attn_implementation=attn_implementation)
    model.config._name_or_path = base  # as an uncached load names it
    return model.to(device), load_tokenizer(folder)


class LLM2Vec(MultiProcessMixin, BaseEncoder):
    """A decoder-only LLM used as a bidirectional text encoder."""

    def __init__(self, model: PreTrainedModel, tokenizer, config: EncoderConfig | None = None,
                 padding_side: str = "left") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or EncoderConfig()
        self.dim = int(model.config.hidden_size)
        self.module = EncoderModule(self.model, self.config.pooling)
        self.source = str(getattr(model, "name_or_path", "") or "")
        self.max_batch_tokens = default_batch_tokens(self.model)
        self._init_preprocessor(padding_side)
        if self.device.type == "cpu":  # opt-in (LLM2VEC_RAG_MALLOC=tuned): see allocator
            tune_from_env()

    @property
    def source(self) -> str:
        """What the vectors come from (model, adapters, attention) plus the weights' dtype as
        they are now, so bf16 and fp32 vectors of one model never share a store silently."""
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        recorded = self._source
        info = json.loads(recorded) if recorded.startswith("{") else {"model": recorded}
        return json.dumps({**info, "dtype": dtype})

    @source.setter
    def source(self, value: str) -> None:
        self._source = str(value)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    @records_spec("torch")
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        adapters: Sequence[str | os.PathLike] | None = None,
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        query_instruction: str | None = None,
        document_instruction: str | None = None,
        prompts: dict[str, str] | None = None,
        gguf_file: str | None = None,
        enable_bidirectional: bool = True,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        padding_side: str = "left",
        cache: bool = False,
        compile: bool = False,
        pooling_mode: str | None = None,
        skip_instruction: bool | None = None,
        doc_max_length: int | None = None,
        **hub_kwargs,
    ) -> LLM2Vec:
        """Load a base model (hub id, folder, GGUF), apply ``adapters`` in order, verify it.

        Encoder settings come from ``llm2vec_config.json`` in the model or the adapters
        (the last one wins), then from the arguments given here. ``cache=True`` keeps the
        merged weights of local base + adapters in the user's cache folder
        (``llm2vec_rag.cache``), so the next load skips GGUF parsing and adapter merging.
        ``compile=True`` runs the forward pass through ``torch.compile`` (inductor, dynamic
        shapes): a one-off compile cost (minutes on a small CPU) for faster batches after.

        llm2vec 0.2.3's names are accepted, here and in a saved ``llm2vec_config.json``:
        ``pooling_mode`` (= ``pooling``), ``skip_instruction`` and ``doc_max_length``
        (mapped or refused by ``config.resolve_reference_keys``); sentence-transformers'
        ``prompts={"query": ..., "document": ..., name: ...}`` (the first two are the query
        and document instructions).
        """
        query_instruction, document_instruction, prompts = split_prompts(
            prompts, query_instruction, document_instruction)
        if pooling_mode is not None:
            if pooling is not None and check_pooling(pooling) != check_pooling(pooling_mode):
                raise ValueError(f"pooling={pooling!r} and pooling_mode={pooling_mode!r} "
                                 "disagree: pass one of them (pooling_mode is llm2vec 0.2.3's "
                                 "name for pooling)")
            pooling = pooling_mode
        if isinstance(adapters, (str, os.PathLike)):
            adapters = [adapters]
        source, gguf_file = resolve_source(str(model_name_or_path), gguf_file, **hub_kwargs)
        chain = [str(a) for a in (adapters or [])]
        base = source
        parent = None if gguf_file else adapter_base(source, **hub_kwargs)
        tokenizer_from = (source, gguf_file)
        if parent is not None:  # McGill-NLP layout: the "model" is itself an adapter
            chain.insert(0, source)
            base, gguf_file = resolve_source(parent, None, **hub_kwargs)  # may be a .gguf
            own_tokenizer = find_file(source, "tokenizer_config.json", **hub_kwargs)
            tokenizer_from = (source, None) if own_tokenizer else (base, gguf_file)
        device = pick_device(device)
        torch_dtype = pick_dtype(dtype, device)

        def build():
            with reuse_gguf_reader():  # tokenizer, config and weights: one GGUF parse
                tokenizer = load_tokenizer(tokenizer_from[0], gguf_file=tokenizer_from[1],
                                           trust_remote_code=trust_remote_code, **hub_kwargs)
                model = load_model(base, gguf_file=gguf_file,
                                   enable_bidirectional=enable_bidirectional, dtype=torch_dtype,
                                   attn_implementation=attn_implementation,
                                   trust_remote_code=trust_remote_code, **hub_kwargs)
            model = apply_adapters(model.to(device), chain, base_names(base, gguf_file),
                                   **hub_kwargs)
            return model, tokenizer

        sources = [os.path.join(base, gguf_file) if gguf_file else base, *chain]
        if cache and not trust_remote_code and all(os.path.exists(s) for s in sources):
            model, tokenizer = load_or_build(
                sources, {"bidirectional": enable_bidirectional, "dtype": str(torch_dtype),
                          "tokenizer_from_base": tokenizer_from[0] == base},
                build=build, save=_save_fused, load=lambda folder: _load_fused(
                    folder, base, enable_bidirectional, torch_dtype, attn_implementation, device))
        else:  # hub ids keep the hub's own cache; remote code is never copied elsewhere
            model, tokenizer = build()
        if enable_bidirectional:
            check_bidirectional(model, str(model_name_or_path))

        settings: dict = {}
        reference: dict = {}
        for folder in [base, *chain]:
            if os.path.isdir(folder):
                settings.update(EncoderConfig.read_dict(folder))
                reference.update(read_reference_keys(folder))
        given = dict(pooling=pooling, max_length=max_length,
                     query_instruction=query_instruction,
                     document_instruction=document_instruction)
        settings.update({k: v for k, v in given.items() if v is not None})
        if prompts:
            settings["prompts"] = {**settings.get("prompts", {}), **prompts}
        if max_length is not None:  # the caller's limit replaces a saved doc_max_length
            reference.pop("doc_max_length", None)
        given = dict(skip_instruction=skip_instruction, doc_max_length=doc_max_length)
        reference.update({k: v for k, v in given.items() if v is not None})
        if "pooling" in settings:
            settings["pooling"] = check_pooling(settings["pooling"])
        if reference:
            lead, trail = special_template(tokenizer)
            eos = int(settings.get("pooling") == "eos")
            settings = resolve_reference_keys(settings, reference, lead + trail + eos)
        encoder = cls(model, tokenizer, EncoderConfig(**settings), padding_side=padding_side)
        if compile:
            encoder.compile()
        model_file = os.path.join(source, gguf_file) if gguf_file else source
        encoder.source = json.dumps({"model": model_file,
                                     "adapters": [str(a) for a in adapters or []],
                                     "bidirectional": enable_bidirectional})
        return encoder

    def _apply_pooling(self, pooling: str) -> None:
        # The module compiled by compile() wraps the same EncoderModule (_orig_mod).
        getattr(self.module, "_orig_mod", self.module).pooling = pooling

    def compile(self) -> None:
        """Compile the forward pass (``torch.compile``, inductor). Shapes are dynamic from the
        first call (``dynamic=True``), so new batch sizes and lengths reuse one graph instead
        of recompiling for each; vectors match the eager ones to float tolerance."""
        self.module = torch.compile(self.module, dynamic=True)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Merged weights (safetensors), tokenizer and llm2vec_config.json: reloadable offline;
        plus the sentence-transformers / TEI files (``llm2vec_rag.st_format``)."""
        from .st_format import write_st_files

        os.makedirs(folder, exist_ok=True)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        self.config.save(folder)
        write_st_files(folder, self.config, self.dim)

    @torch.inference_mode()
    def forward_batch(self, batch: Batch) -> np.ndarray:
        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(self.device)

        vectors = self.module(tensor(batch.input_ids), tensor(batch.attention_mask),
                              tensor(batch.embed_mask))
        return vectors.float().cpu().numpy()

    @torch.inference_mode()
    def forward_tokens(self, batch: Batch) -> np.ndarray:
        module = getattr(self.module, "_orig_mod", self.module)  # eager: shapes vary per call
        hidden = module.hidden_states(torch.from_numpy(batch.input_ids).to(self.device),
                                      torch.from_numpy(batch.attention_mask).to(self.device))
        return hidden.float().cpu().numpy()  # [B, T, D]
