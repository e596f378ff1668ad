"""llm2vec 0.2.3's input and config keys (``[[instruction, text], ...]``, ``pooling_mode``,
``skip_instruction``, ``doc_max_length``) accepted with its meaning. Vector parity with the
reference package itself is in test_parity.py (pairs included)."""

from __future__ import annotations

import warnings

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


def test_reference_kwargs(tiny_model_dir):
    from llm2vec_rag import LLM2Vec

    folder = tiny_model_dir("llama")
    enc = LLM2Vec.from_pretrained(folder, pooling_mode="eos_token", skip_instruction=True)
    assert enc.config.pooling == "eos"
    assert LLM2Vec.from_pretrained(folder, pooling_mode="last_token",
                                   skip_instruction=False).config.pooling == "last"
    with pytest.raises(ValueError, match="skip_instruction=False with mean pooling .* no "
                                         "equivalent"):
        LLM2Vec.from_pretrained(folder, skip_instruction=False)
    with pytest.raises(ValueError, match="pooling='mean' and pooling_mode='eos_token' disagree"):
        LLM2Vec.from_pretrained(folder, pooling="mean", pooling_mode="eos_token")
    with pytest.raises(ValueError, match="doc_max_length must be an integer"):
        LLM2Vec.from_pretrained(folder, doc_max_length=0)
    # A limit at or above max_length changes nothing (the reference never cuts then).
    assert LLM2Vec.from_pretrained(folder, doc_max_length=600).config.max_length == 512


def test_folder_saved_by_the_reference(tiny_model_dir, tmp_path):
    """llm2vec 0.2.3's save() writes exactly these four keys (llm2vec.py, LLM2Vec.save)."""
    import json
    import shutil

    from llm2vec_rag import LLM2Vec

    folder = tmp_path / "ref-saved"
    shutil.copytree(tiny_model_dir("llama"), folder)
    (folder / "llm2vec_config.json").write_text(json.dumps({
        "pooling_mode": "weighted_mean", "max_length": 512, "doc_max_length": 400,
        "skip_instruction": True}))
    with pytest.warns(UserWarning, match=r"doc_max_length=400 .* mapped onto max_length=40\d"):
        enc = LLM2Vec.from_pretrained(folder)
    lead_trail = enc.preprocessor.lead + enc.preprocessor.trail
    assert (enc.config.pooling, enc.config.max_length) == ("weighted_mean", 400 + lead_trail)
    enc.save_pretrained(tmp_path / "ours")  # saved in our keys
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither load warns
        assert LLM2Vec.from_pretrained(folder, max_length=300).config.max_length == 300
        again = LLM2Vec.from_pretrained(tmp_path / "ours")
    assert again.config == enc.config
    (folder / "llm2vec_config.json").write_text(json.dumps({"pooling_mode": "mean",
                                                            "skip_instruction": False}))
    with pytest.raises(ValueError, match="skip_instruction=False"):
        LLM2Vec.from_pretrained(folder)
