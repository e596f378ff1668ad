"""The frozen base a stage trains on (bidirectional decoder, earlier adapters merged), its
tokenizer, and the LoRA wrapper whose adapter is the stage's output."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel, set_seed

from llm2vec_rag.errors import UsageError
from llm2vec_rag.loading import (
    apply_adapters,
    base_names,
    check_bidirectional,
    load_model,
    quiet_peft_warnings,
    resolve_source,
)
from llm2vec_rag.model import pick_dtype
from llm2vec_rag.preprocess import load_tokenizer

from .config import TrainConfig


def model_source(cfg: TrainConfig) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) for ``cfg.model``, checked to exist."""
    return resolve_source(cfg.model, cfg.gguf_file)


def base_reference(cfg: TrainConfig) -> str:
    """What the adapter records as its base: the .gguf path itself for GGUF bases."""
    source, gguf_file = model_source(cfg)
    return os.path.abspath(os.path.join(source, gguf_file)) if gguf_file else source


def training_tokenizer(cfg: TrainConfig):
    """The base's tokenizer with a pad token, or a clear error before any weights load."""
    source, gguf_file = model_source(cfg)
    tokenizer = load_tokenizer(source, gguf_file=gguf_file)
    if cfg.pad_token is not None:
        tokenizer.pad_token = cfg.pad_token
    if tokenizer.pad_token_id is None:
        raise UsageError(f"The tokenizer of {cfg.model!r} has neither a pad token nor an EOS "
                         "token: set pad_token=<a token of its vocabulary> in the config")
    return tokenizer


def torch_dtype(cfg: TrainConfig) -> torch.dtype:
    return pick_dtype(cfg.dtype, torch.device("cpu"))


def load_base_encoder(cfg: TrainConfig) -> PreTrainedModel:
    """The bare bidirectional decoder with ``cfg.adapters`` (e.g. the MNTP one) merged in order."""
    source, gguf_file = model_source(cfg)
    model = load_model(source, gguf_file=gguf_file, dtype=torch_dtype(cfg),
                       attn_implementation=cfg.attn_implementation)
    model = apply_adapters(model, list(cfg.adapters), base_names(source, gguf_file))
    check_bidirectional(model, cfg.model)
    return model


def set_attention_dropout(model: PreTrainedModel, p: float) -> None:
    """Attention modules copy the config's dropout at init, so set it on them too."""
    model.config.attention_dropout = p
    for module in model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = p


def add_lora(model: PreTrainedModel, cfg: TrainConfig, dropout: float | None = None) -> PeftModel:
    """LoRA on all attention and MLP projections (``all-linear`` on a bare decoder).

    Seeded, so that a run (and a run resumed from its checkpoint) starts from the same init.
    """
    set_seed(cfg.seed)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, bias="none",
                      lora_dropout=cfg.lora_dropout if dropout is None else dropout,
                      target_modules=cfg.lora_target_modules)
    with quiet_peft_warnings():  # peft reads a deprecated transformers attribute
        peft_model = get_peft_model(model, lora)
    peft_model.peft_config["default"].base_model_name_or_path = base_reference(cfg)
    recompute_lora_dropout(peft_model)
    return peft_model


class DropoutLoraA(nn.Linear):
    """LoRA's ``A`` applied to the dropped-out input, ``A(dropout(x))``, that keeps nothing
    for the backward pass but ``x``, which the frozen base layer beside it keeps anyway.

    Why: on the CPU, ``dropout`` keeps a float32 noise tensor the size of its input, and ``A``
    keeps the dropped input: two full copies of every projection's input, seven projections
    a layer. Here both are recomputed in the backward pass (``torch.utils.checkpoint``, which
    replays the same random numbers), so the loss and the gradients are bit for bit those of
    ``peft``'s own ``lora_A(lora_dropout(x))``. The weight stays ``lora_A.<adapter>.weight``.
    """

    def __init__(self, linear: nn.Linear, p: float) -> None:
        super().__init__(linear.in_features, linear.out_features, bias=False, device="meta")
        self.weight = linear.weight  # the same Parameter: optimiser, state dict, saving
        self.p = p

    def _dropped(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.dropout(x, self.p, training=True), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return F.linear(F.dropout(x, self.p, training=self.training), self.weight)
        return checkpoint(self._dropped, x, use_reentrant=False)


def recompute_lora_dropout(model: nn.Module) -> int:
    """Swap each LoRA layer's ``lora_dropout`` + ``lora_A`` for one ``DropoutLoraA`` (same
    maths, less memory: see there); the number of layers changed. With dropout 0.3 it
    lowered a 2-step ``simcse-cpu`` run's peak from 15.1 to 13.2 GiB (presets/README.md)."""
    changed = 0
    for module in model.modules():
        if not isinstance(module, LoraLinear):
            continue
        for name, dropout in list(module.lora_dropout.items()):
            linear = module.lora_A[name]
            if (isinstance(dropout, nn.Dropout) and dropout.p > 0
                    and type(linear) is nn.Linear and linear.bias is None):
                module.lora_A[name] = DropoutLoraA(linear, dropout.p)
                module.lora_dropout[name] = nn.Identity()
                changed += 1
    return changed
