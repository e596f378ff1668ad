"""``LLM2Vec``: the PyTorch encoder."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from .allocator import tune_from_env
from .cache import load_or_build
from .config import DTYPE_ENV, EncoderConfig, split_prompts
from .encoder import CPU_MAX_BATCH_TOKENS, GPU_MAX_BATCH_TOKENS, BaseEncoder
from .errors import SetupError, UsageError
from .loading import (
    align_saved_weights,
    apply_adapters,
    base_names,
    check_bidirectional,
    load_model,
    load_saved_model,
    quiet_transformers,
    reuse_gguf_reader,
)
from .pool import MultiProcessMixin
from .pooling import pool
from .preprocess import Batch, load_tokenizer
from .resolve import ModelChain, pick_pooling, resolve_chain, resolve_settings
from .spec import records_spec

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
# fp32 weights, bf16 matmuls (torch.autocast): the weights and the cache entry stay fp32.
_AUTOCAST = {"bf16-autocast": torch.bfloat16, "bfloat16-autocast": torch.bfloat16}


class EncoderModule(nn.Module):
    """Decoder plus pooling as one module: what runs in PyTorch and what gets exported to ONNX."""

    def __init__(self, model: PreTrainedModel, pooling: str, with_tokens: bool = False,
                 autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        # Matmuls in this dtype under torch.autocast (None: as the weights); the hidden states
        # come back float32, so pooling and normalisation never run in bf16.
        self.autocast = autocast
        # Also return the last hidden states (token embeddings): the ONNX export's second
        # output, so token vectors come from the very graph that pools.
        self.with_tokens = with_tokens

    def hidden_states(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:  # [B, T, D]
        """The decoder's last hidden states for a padded batch."""
        # Positions count real tokens only, so a text's positions do not depend on padding.
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
        if self.autocast is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=position_ids).last_hidden_state  # [B, T, D]
        with torch.autocast(input_ids.device.type, dtype=self.autocast):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=position_ids).last_hidden_state  # [B, T, D]
        return hidden.float()

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
        raise UsageError(f"device {str(device)!r} is not a torch device: use cpu, cuda or "
                         f"cuda:N ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch build ({torch.__version__}) has no CUDA support"
                   if torch.version.cuda is None else
                   f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU on this "
                   f"machine")
            raise SetupError(f"device {str(device)!r}: CUDA is not available: {why}. Use "
                             f"--device cpu (device='cpu'), or install a CUDA build of torch "
                             f"on a machine with an NVIDIA GPU and driver.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SetupError(f"device {str(device)!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s) (cuda:0 .. "
                             f"cuda:{torch.cuda.device_count() - 1}).")
    return device


# The CPU default where the CPU computes bf16 natively: the fastest dtype that passed the
# retrieval-quality gate (benchmarks/gate.py; benchmarks/README.md, "Quality gate").
CPU_BF16_DEFAULT = "bf16-autocast"
# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AVX-512 BF16 and AMX.
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def default_cpu_dtype(flags: set[str] | None = None) -> str:
    """What ``dtype=None``/``"auto"`` means on the CPU: ``$LLM2VEC_RAG_DTYPE`` when set, else
    ``CPU_BF16_DEFAULT`` where the CPU computes bf16 natively (``flags``: this CPU's), else
    float32 (bf16 without hardware support is emulated, slower than float32)."""
    chosen = os.environ.get(DTYPE_ENV, "").strip()
    if chosen and chosen != "auto":
        if chosen not in _DTYPES and chosen not in _AUTOCAST:
            raise UsageError(f"{DTYPE_ENV}={chosen!r}: use one of "
                             f"{sorted(_DTYPES) + sorted(_AUTOCAST)} or 'auto'.")
        return chosen
    native = set(_BF16_FLAGS) & (cpu_flags() if flags is None else flags)
    return CPU_BF16_DEFAULT if native else "float32"


def resolve_dtype(dtype: str | torch.dtype | None,
                  device: torch.device) -> str | torch.dtype | None:
    """``dtype`` with ``None``/``"auto"`` made concrete for a CPU (``default_cpu_dtype``);
    a GPU's auto stays auto (``pick_dtype`` picks bf16 or fp16)."""
    if (dtype is None or dtype == "auto") and device.type == "cpu":
        return default_cpu_dtype()
    return dtype


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The weights' dtype: on a CPU, ``default_cpu_dtype`` unless asked otherwise; bf16 (or
    fp16 where bf16 is unsupported) on GPU; float32 for ``"bf16-autocast"`` (see
    ``pick_autocast``)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    dtype = resolve_dtype(dtype, device)
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype in _AUTOCAST:
        return torch.float32
    if dtype not in _DTYPES:
        raise UsageError(f"Unknown dtype {dtype!r}; use one of "
                         f"{sorted(_DTYPES) + sorted(_AUTOCAST)} or 'auto'.")
    return _DTYPES[dtype]


def pick_autocast(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """The matmul dtype under ``torch.autocast`` for ``dtype="bf16-autocast"`` (None for
    every other choice). A plain string, so it travels in ``EncoderSpec`` and ``--dtype``.

    Why: fp32 weights with bf16 matmuls keep the norms (RMSNorm upcasts), the fp32 residual
    stream, pooling and normalisation in fp32 while the linear layers and attention run
    on the CPU's bf16 units; closer to fp32 than bf16 weights, slower than them."""
    return _AUTOCAST.get(dtype) if isinstance(dtype, str) else None


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


PROOF_FILE = "bidirectional_proof.json"  # in a cache entry: the probe passed at its build


def proof_record(attn_implementation: str | None) -> dict:
    """What a recorded bidirectionality proof holds: the versions and attention kernel it
    was made with (another transformers release or kernel is proven again)."""
    import transformers

    return {"transformers": transformers.__version__, "torch": torch.__version__,
            "attn_implementation": attn_implementation}


def _save_fused(loaded: tuple, folder: str, proof: dict | None) -> None:
    model, tokenizer = loaded
    with quiet_transformers():  # no "Writing model shards" bar on a first load
        model.save_pretrained(folder)
    align_saved_weights(folder)  # so a cached load can use the mapped tensors as they are
    tokenizer.save_pretrained(folder)
    if proof is not None:
        with open(os.path.join(folder, PROOF_FILE), "w", encoding="utf-8") as f:
            json.dump(proof, f)


def _read_proof(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, PROOF_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):  # an entry from before proofs were recorded: prove again
        return None


def _load_fused(folder: str, base: str, bidirectional: bool, dtype: torch.dtype,
                attn_implementation: str | None, device: torch.device) -> tuple:
    """A cache entry: plain safetensors weights and a saved tokenizer (no GGUF, no merge)."""
    options = dict(enable_bidirectional=bidirectional, dtype=dtype,
                   attn_implementation=attn_implementation)
    model = load_saved_model(folder, **options)
    if model is None:  # an entry transformers' own loading must read
        model = load_model(folder, **options)
    model.config.name_or_path = base  # as an uncached load names it
    return model.to(device), load_tokenizer(folder)


def load_weights(chain: ModelChain, device: torch.device, dtype: torch.dtype, *,
                 enable_bidirectional: bool = True, attn_implementation: str | None = None,
                 trust_remote_code: bool = False, cache: bool = False, name: str = "",
                 **hub_kwargs) -> tuple[PreTrainedModel, object]:
    """The chain's merged weights on ``device`` and its tokenizer, proven bidirectional.

    With ``cache`` and every file local, from the fused-model cache (``llm2vec_rag.cache``):
    built, proven and saved once, with the proof recorded in the entry, so a later load
    skips the probe's forward pass (unless transformers, torch or the attention kernel
    changed). Hub ids keep the hub's own cache; remote code is never copied elsewhere.
    """
    def build() -> tuple:
        with reuse_gguf_reader():  # tokenizer, config and weights: one GGUF parse
            tokenizer = load_tokenizer(chain.tokenizer_from[0],
                                       gguf_file=chain.tokenizer_from[1],
                                       trust_remote_code=trust_remote_code, **hub_kwargs)
            model = load_model(chain.base, gguf_file=chain.gguf_file,
                               enable_bidirectional=enable_bidirectional, dtype=dtype,
                               attn_implementation=attn_implementation,
                               trust_remote_code=trust_remote_code, **hub_kwargs)
        model = apply_adapters(model.to(device), list(chain.adapters),
                               base_names(chain.base, chain.gguf_file), **hub_kwargs)
        if enable_bidirectional:
            check_bidirectional(model, name)
        return model, tokenizer

    if not cache or trust_remote_code or not all(os.path.exists(f) for f in chain.files):
        return build()
    proof = proof_record(attn_implementation) if enable_bidirectional else None

    def load(folder: str) -> tuple:
        model, tokenizer = _load_fused(folder, chain.base, enable_bidirectional, dtype,
                                       attn_implementation, device)
        if enable_bidirectional and _read_proof(folder) != proof:
            check_bidirectional(model, name)
        return model, tokenizer

    options = {"bidirectional": enable_bidirectional, "dtype": str(dtype),
               "tokenizer_from_base": chain.tokenizer_from[0] == chain.base}
    return load_or_build(chain.files, options, build=build, load=load,
                         save=lambda loaded, folder: _save_fused(loaded, folder, proof))


class LLM2Vec(MultiProcessMixin, BaseEncoder):
    """A decoder-only LLM used as a bidirectional text encoder."""

    def __init__(self, model: PreTrainedModel, tokenizer, config: EncoderConfig | None = None,
                 padding_side: str = "left", autocast: torch.dtype | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or EncoderConfig()
        self.dim = int(model.config.hidden_size)
        self.module = EncoderModule(self.model, self.config.pooling, autocast=autocast)
        self.source = str(getattr(model, "name_or_path", "") or "")
        self.max_batch_tokens = default_batch_tokens(self.model)
        self._init_preprocessor(padding_side)
        if self.device.type == "cpu":  # opt-in (LLM2VEC_RAG_MALLOC=tuned): see allocator
            tune_from_env()

    @property
    def source(self) -> str:
        """What the vectors come from (model, adapters, attention) plus the weights' dtype as
        they are now and the autocast dtype if any, so bf16, bf16-autocast and fp32 vectors of
        one model never share a store silently."""
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        recorded = self._source
        info = json.loads(recorded) if recorded.startswith("{") else {"model": recorded}
        info["dtype"] = dtype
        if self.autocast is not None:
            info["autocast"] = str(self.autocast).replace("torch.", "")
        return json.dumps(info)

    @property
    def autocast(self) -> torch.dtype | None:
        """The matmul dtype under ``torch.autocast`` (``dtype="bf16-autocast"``), else None."""
        return getattr(self.module, "_orig_mod", self.module).autocast

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
        if not isinstance(enable_bidirectional, bool):  # None would silently load causal
            raise TypeError(f"enable_bidirectional must be True or False, got "
                            f"{enable_bidirectional!r}")
        query_instruction, document_instruction, prompts = split_prompts(
            prompts, query_instruction, document_instruction)
        pooling = pick_pooling(pooling, pooling_mode)
        if isinstance(adapters, (str, os.PathLike)):
            adapters = [adapters]
        chain = resolve_chain(model_name_or_path, adapters, gguf_file, **hub_kwargs)
        device = pick_device(device)
        chosen = dtype is not None and dtype != "auto"
        dtype = resolve_dtype(dtype, device)  # auto: the CPU's default (default_cpu_dtype)
        model, tokenizer = load_weights(
            chain, device, pick_dtype(dtype, device), enable_bidirectional=enable_bidirectional,
            attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
            cache=cache, name=str(model_name_or_path), **hub_kwargs)
        config = resolve_settings(
            chain.folders, tokenizer, pooling=pooling, max_length=max_length,
            query_instruction=query_instruction, document_instruction=document_instruction,
            prompts=prompts, skip_instruction=skip_instruction, doc_max_length=doc_max_length)
        encoder = cls(model, tokenizer, config, padding_side=padding_side,
                      autocast=pick_autocast(dtype))
        if compile:
            encoder.compile()
        encoder.source = chain.source_record(adapters or [], enable_bidirectional)
        encoder.dtype_chosen = chosen
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

        dtype = next(self.model.parameters()).dtype
        if dtype != torch.float32 and self.device.type == "cpu" and \
                not getattr(self, "dtype_chosen", True):
            warnings.warn(f"Saving {str(dtype).removeprefix('torch.')} weights: that is this "
                          f"CPU's default dtype for encoding ({DTYPE_ENV}, docs/encode.md), "
                          f"not the model's own precision. Load with dtype='float32' to save "
                          f"float32 weights.", stacklevel=2)
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
