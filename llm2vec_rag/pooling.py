"""Pooling token states into one vector per text.

Written once in torch, trace-friendly (no Python loops over the batch, no data-dependent
shapes), so the same code runs in the PyTorch encoder and inside the exported ONNX graph.
``embed_mask`` marks the text's own tokens: never padding, the instruction or BOS.
"""

from __future__ import annotations

import torch


def pool(
    hidden: torch.Tensor,  # [B, T, D]
    attention_mask: torch.Tensor,  # [B, T], 1 for real tokens
    embed_mask: torch.Tensor,  # [B, T], 1 for the text's own tokens
    mode: str,
) -> torch.Tensor:  # [B, D] float32
    hidden = hidden.float()
    if mode == "mean":
        weights = embed_mask.float()
    elif mode == "weighted_mean":
        # Position-weighted (1, 2, ..., n over the text tokens), as in LLM2Vec / SGPT.
        weights = torch.cumsum(embed_mask, dim=1).float() * embed_mask.float()
    elif mode in ("eos", "last"):
        return _select(hidden, _last_index(attention_mask))
    elif mode == "bos":
        return _select(hidden, _first_index(attention_mask))
    else:
        raise ValueError(f"Unknown pooling mode {mode!r}")
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)  # [B, T]
    return torch.einsum("btd,bt->bd", hidden, weights)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return torch.arange(mask.shape[1], device=mask.device).unsqueeze(0).expand_as(mask)


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token whichever side the padding is on."""
    return (_positions(mask) * mask).argmax(dim=1)


def _first_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token whichever side the padding is on."""
    big = mask.shape[1]
    return torch.where(mask.bool(), _positions(mask), big).argmin(dim=1)


def _select(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    index = index.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])  # [B, 1, D]
    return hidden.gather(1, index).squeeze(1)
