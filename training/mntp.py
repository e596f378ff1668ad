"""Stage 1, masked next-token prediction (MNTP): teach a bidirectional decoder to use the
future tokens it can now see, by predicting masked tokens from the previous position.

The LoRA adapter sits on the bare decoder (not on the causal-LM wrapper), so its keys are what
``PeftModel.from_pretrained(AutoModel base)`` expects; the LM head stays frozen outside it.
"""

from __future__ import annotations

import logging

import torch
from transformers import AutoConfig, AutoModelForCausalLM, TrainerCallback

from llm2vec_rag.bidirectional import make_bidirectional
from llm2vec_rag.errors import UsageError
from llm2vec_rag.loading import apply_adapters, base_names, check_bidirectional

from .base import add_lora, model_source, torch_dtype, training_tokenizer
from .config import MNTPConfig, load_config
from .data import load_texts, token_blocks
from .losses import mntp_loss
from .trainer import resume_checkpoint, run_stage

logger = logging.getLogger(__name__)


def mask_token_id(tokenizer, fallback: str = "_") -> int:
    """The tokenizer's mask token, else ``fallback`` (the paper uses "_") if it is one token."""
    if tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    ids = tokenizer(fallback, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise UsageError(f"The tokenizer has no mask token and {fallback!r} is not a single "
                         "known token: set mask_token=<a single token of its vocabulary>")
    return int(ids[0])


class MaskingCollator:
    """Blocks of token ids -> masked inputs and labels (-100 where nothing is to be predicted).

    Of the chosen positions, 80% become the mask token, 10% a random token, 10% stay (BERT);
    with ``all_mask`` every chosen position becomes the mask token (the paper's Mistral recipe).
    Special tokens are never chosen. Uses torch's global RNG, which the Trainer seeds and
    restores on resume.
    """

    def __init__(self, tokenizer, mask_id: int, probability: float, all_mask: bool) -> None:
        self.mask_id = mask_id
        self.probability = probability
        self.all_mask = all_mask
        self.vocab = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def __call__(self, blocks: list[list[int]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor(blocks, dtype=torch.long)  # [B, T], full blocks: no padding
        labels = ids.clone()
        chance = torch.full(ids.shape, self.probability)
        chance[torch.isin(ids, self.special)] = 0.0
        chance[:, 0] = 0.0  # position 0 has no previous position to predict it from
        chosen = torch.bernoulli(chance).bool()
        labels[~chosen] = -100
        inputs = ids.clone()
        if self.all_mask:
            inputs[chosen] = self.mask_id
        else:
            masked = chosen & torch.bernoulli(torch.full(ids.shape, 0.8)).bool()
            randomised = chosen & ~masked & torch.bernoulli(torch.full(ids.shape, 0.5)).bool()
            inputs[masked] = self.mask_id
            inputs[randomised] = torch.randint(self.vocab, ids.shape)[randomised]
        return {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "labels": labels}


def load_mntp_model(cfg: MNTPConfig):
    """(bidirectional decoder with ``cfg.adapters`` merged and a new LoRA, frozen LM head,
    logit soft-cap or None). Earlier adapters (e.g. an MNTP run on another corpus) are merged
    into the decoder only: the LM head stays the base's, as in every LLM2Vec adapter."""
    source, gguf_file = model_source(cfg)
    config = make_bidirectional(AutoConfig.from_pretrained(source, gguf_file=gguf_file))
    kwargs = {"attn_implementation": cfg.attn_implementation} if cfg.attn_implementation else {}
    lm = AutoModelForCausalLM.from_pretrained(source, config=config, gguf_file=gguf_file,
                                              dtype=torch_dtype(cfg), **kwargs)
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    decoder = apply_adapters(decoder, list(cfg.adapters), base_names(source, gguf_file))
    check_bidirectional(decoder, cfg.model)
    head.requires_grad_(False)
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    return add_lora(decoder, cfg), head, softcap


def train_mntp(config: MNTPConfig | dict | str, callbacks: list[TrainerCallback] | None = None
               ) -> str:
    """Run MNTP; returns the output folder (a LoRA adapter for the bare base decoder)."""
    cfg = config if isinstance(config, MNTPConfig) else load_config("mntp", config)
    resume_checkpoint(cfg)  # refuse another run's checkpoint before loading anything
    tokenizer = training_tokenizer(cfg)
    mask_id = mask_token_id(tokenizer, cfg.mask_token)
    texts = load_texts(cfg.data, cfg.text_field, cfg.split, cfg.max_texts)
    blocks = token_blocks(texts, tokenizer, cfg.max_length)
    logger.info("MNTP on %d blocks of %d tokens", len(blocks), cfg.max_length)
    if len(blocks) < cfg.batch_size:
        raise UsageError(f"The corpus gives {len(blocks)} blocks of {cfg.max_length} tokens, "
                         f"fewer than one batch (batch_size={cfg.batch_size})")
    model, head, softcap = load_mntp_model(cfg)

    def loss_fn(model, inputs):
        hidden = model(input_ids=inputs["input_ids"],
                       attention_mask=inputs["attention_mask"]).last_hidden_state  # [B, T, D]
        return mntp_loss(hidden, inputs["labels"], head.to(hidden.device), softcap)

    collator = MaskingCollator(tokenizer, mask_id, cfg.mask_probability, cfg.all_mask)
    return run_stage(cfg, model, blocks, collator, loss_fn, callbacks=callbacks)
