"""The switch that makes a decoder attend both ways, and the probe that proves it worked.

transformers >= 5.2 builds a bidirectional (padding-only) attention mask for any decoder
whose ``config.is_causal`` is False, so no modeling code is copied here. Setting the flag on
attention modules alone is silently wrong, which is why every load is checked by a probe.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig, PreTrainedModel


def make_bidirectional(config: PretrainedConfig) -> PretrainedConfig:
    """Mark a config (and its text sub-config, for multimodal wrappers) as non-causal."""
    config.is_causal = False
    text_config = getattr(config, "text_config", None)
    if isinstance(text_config, PretrainedConfig):
        text_config.is_causal = False
    return config


@torch.inference_mode()
def is_bidirectional(model: PreTrainedModel, seq_len: int = 8) -> bool:
    """True when a later token changes an earlier token's hidden state, with and without padding.

    Runs two rows, one of them left-padded, so that kernels which fall back to a causal
    path only when padding is present (SDPA) are caught too.
    """
    param = next(model.parameters())
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, seq_len), generator=gen)
    mask = torch.ones(2, seq_len, dtype=torch.long)
    mask[1, :2] = 0  # row 1 is left-padded
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % vocab
    ids, mask, changed = ids.to(param.device), mask.to(param.device), changed.to(param.device)

    def first_states(input_ids: torch.Tensor) -> torch.Tensor:
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return torch.stack([hidden[0, 0], hidden[1, 2]]).float()  # first real token per row

    before, after = first_states(ids), first_states(changed)
    delta = (before - after).abs().amax(dim=-1)  # [2]
    return bool((delta > 1e-6 * (1 + before.abs().amax())).all())
