"""Stage 2, unsupervised SimCSE: the same sentence encoded twice under dropout is the positive
pair, the other sentences of the batch are negatives. Trains on the merged MNTP model.

Embeddings come from the core ``EncoderModule`` (decoder + pooling over the text's own
tokens, never padding), so training pools exactly as ``LLM2Vec.encode`` does.
"""

from __future__ import annotations

import functools
import logging

import torch
from transformers import TrainerCallback

from llm2vec_rag.errors import UsageError
from llm2vec_rag.model import EncoderModule
from llm2vec_rag.preprocess import Preprocessor

from .base import add_lora, load_base_encoder, set_attention_dropout, training_tokenizer
from .config import SimCSEConfig, load_config
from .data import load_texts, split_sentences
from .losses import contrastive_loss, matryoshka
from .trainer import resume_checkpoint, run_stage

logger = logging.getLogger(__name__)


def tensors(preprocessor: Preprocessor, texts: list[str], instruction: str = "",
            prefix: str = "") -> dict[str, torch.Tensor]:
    """Padded ``input_ids`` / ``attention_mask`` / ``embed_mask`` tensors for ``texts``."""
    rows = preprocessor.encode(texts, instruction)
    batch = preprocessor.collate(rows, index=None)
    return {f"{prefix}input_ids": torch.from_numpy(batch.input_ids),
            f"{prefix}attention_mask": torch.from_numpy(batch.attention_mask),
            f"{prefix}embed_mask": torch.from_numpy(batch.embed_mask)}


def embed(model, inputs: dict[str, torch.Tensor], pooling: str, prefix: str = "") -> torch.Tensor:
    """[B, D] pooled embeddings of one tokenized group, through the shared EncoderModule."""
    return EncoderModule(model, pooling)(inputs[f"{prefix}input_ids"],
                                         inputs[f"{prefix}attention_mask"],
                                         inputs[f"{prefix}embed_mask"])


class DuplicatingCollator:
    """B sentences -> 2B rows (each sentence twice); dropout makes the two copies differ."""

    def __init__(self, tokenizer, max_length: int, pooling: str) -> None:
        self.preprocessor = Preprocessor(tokenizer, max_length, append_eos=pooling == "eos")

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return tensors(self.preprocessor, list(texts) + list(texts))


def simcse_texts(cfg: SimCSEConfig) -> list[str]:
    texts = load_texts(cfg.data, cfg.text_field, cfg.split)
    if cfg.split_sentences:
        texts = split_sentences(texts, cfg.min_words)
    if cfg.max_texts is not None:
        texts = texts[: cfg.max_texts]
    if len(texts) < cfg.batch_size:
        raise UsageError(f"SimCSE needs at least batch_size={cfg.batch_size} texts of "
                         f">= {cfg.min_words} words, the corpus gives {len(texts)}")
    return texts


def train_simcse(config: SimCSEConfig | dict | str,
                 callbacks: list[TrainerCallback] | None = None) -> str:
    """Run SimCSE on ``cfg.model`` with ``cfg.adapters`` (the MNTP adapter) merged first."""
    cfg = config if isinstance(config, SimCSEConfig) else load_config("simcse", config)
    resume_checkpoint(cfg)  # refuse another run's checkpoint before loading anything
    tokenizer = training_tokenizer(cfg)
    texts = simcse_texts(cfg)
    logger.info("SimCSE on %d texts", len(texts))
    base = load_base_encoder(cfg)
    set_attention_dropout(base, cfg.dropout)
    model = add_lora(base, cfg, dropout=cfg.dropout)
    scale = 1.0 / cfg.temperature
    contrast = functools.partial(contrastive_loss, scale=scale)
    if cfg.matryoshka_dims:  # the same loss on each truncated, renormalised prefix
        contrast = matryoshka(contrast, cfg.matryoshka_dims, cfg.matryoshka_weights)

    def loss_fn(model, inputs):
        vectors = embed(model, inputs, cfg.pooling)  # [2B, D]
        first, second = vectors.chunk(2)  # [B, D] each: two dropout views of the same texts
        return contrast(first, second)

    collator = DuplicatingCollator(tokenizer, cfg.max_length, cfg.pooling)
    return run_stage(cfg, model, texts, collator, loss_fn, callbacks=callbacks)
