"""llm2vec 0.2.3's input and config keys (``[[instruction, text], ...]``, ``pooling_mode``,
``skip_instruction``, ``doc_max_length``) accepted with its meaning. Vector parity with the
reference package itself is in test_parity.py (pairs included)."""

from __future__ import annotations

import numpy as np
import pytest

from tiny import CORPUS

INS = "Retrieve a passage"


def test_pairs_are_per_text_instructions(tiny_encoder):
    pairs = [["", CORPUS[0]], [INS, CORPUS[1]], ["  " + INS + " ", CORPUS[2]]]
    ours = tiny_encoder.encode(pairs)
    expected = tiny_encoder.encode(CORPUS[:3], instruction=["", INS, INS])
    np.testing.assert_array_equal(ours, expected)
    assert not np.allclose(ours[1], tiny_encoder.encode(CORPUS[1]))  # the instruction counts
    np.testing.assert_allclose(ours[0], tiny_encoder.encode(CORPUS[0])[0], atol=1e-5)  # "": none
    assert tiny_encoder.count_tokens(pairs) == tiny_encoder.count_tokens(
        CORPUS[:3], instruction=["", INS, INS])
    np.testing.assert_array_equal(tiny_encoder.encode([tuple(p) for p in pairs]), ours)


@pytest.mark.parametrize("texts, instruction, error, match", [
    ([["", "a"], "b"], None, TypeError, r"texts\[1\] is 'b'.*\[instruction, text\]"),
    ([["", "a"], ["x", "y", "z"]], None, TypeError, r"texts\[2\]|texts\[1\]"),
    ([["", "a"], ["x", 3]], None, TypeError, r"texts\[1\]"),
    ([["", "a"]], INS, ValueError, "do not pass instruction= as well"),
    (["a", ["", "b"]], None, TypeError, r"texts\[1\] is list.*\[instruction, text\] pairs"),
])
def test_bad_pairs_name_the_item(tiny_encoder, texts, instruction, error, match):
    with pytest.raises(error, match=match):
        tiny_encoder.encode(texts, instruction=instruction)
