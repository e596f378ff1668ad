"""Pooling over the embed mask: the text's own tokens only, whichever side the padding is."""

from __future__ import annotations

import pytest
import torch

from llm2vec_rag.pooling import pool


def case():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 3)
    # row 0 left-padded: [pad, BOS, instr, t1, t2]; row 1 unpadded: [BOS, t1, t2, t3, t4]
    attention = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    embed = torch.tensor([[0, 0, 0, 1, 1], [0, 1, 1, 1, 1]])
    return hidden, attention, embed


def test_mean_covers_only_text_tokens():
    h, a, e = case()
    out = pool(h, a, e, "mean")
    torch.testing.assert_close(out[0], h[0, 3:].mean(0))
    torch.testing.assert_close(out[1], h[1, 1:].mean(0))


def test_weighted_mean_weights_positions_one_to_n():
    h, a, e = case()
    out = pool(h, a, e, "weighted_mean")
    torch.testing.assert_close(out[0], (1 * h[0, 3] + 2 * h[0, 4]) / 3)
    w = torch.arange(1, 5, dtype=torch.float32)
    torch.testing.assert_close(out[1], (w[:, None] * h[1, 1:]).sum(0) / w.sum())


@pytest.mark.parametrize("mode", ["eos", "last"])
def test_last_real_token_on_either_padding_side(mode):
    h, a, e = case()
    torch.testing.assert_close(pool(h, a, e, mode), h[:, -1])
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(pool(h, right, right, mode)[0], h[0, 2])


def test_bos_is_first_real_token():
    h, a, e = case()
    out = pool(h, a, e, "bos")
    torch.testing.assert_close(out[0], h[0, 1])
    torch.testing.assert_close(out[1], h[1, 0])


def test_unknown_mode_is_an_error():
    h, a, e = case()
    with pytest.raises(ValueError, match="Unknown pooling"):
        pool(h, a, e, "max")
