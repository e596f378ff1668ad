"""Adapter soups (``llm2vec-rag train soup``): one adapter whose weight change is the weighted
sum of its ingredients', checked against the ingredients' own LoRA factors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_loading import TEXTS, lora_delta

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from tiny import make_lora_adapter


@pytest.fixture(scope="module")
def ingredients(tiny_model_dir, tmp_path_factory):
    base = tiny_model_dir("llama")
    root = tmp_path_factory.mktemp("soup")
    a = make_lora_adapter(base, str(root / "a"), 1)
    b = make_lora_adapter(base, str(root / "b"), 2, targets=("q_proj", "o_proj", "up_proj"))
    for folder in (a, b):  # the encoder settings a trained adapter carries
        with open(os.path.join(folder, "llm2vec_config.json"), "w") as f:
            json.dump({"pooling": "mean", "query_instruction": "Find the passage"}, f)
    return base, a, b


def test_the_soup_adds_the_weighted_weight_changes(ingredients, tmp_path):
    base, a, b = ingredients
    out = tmp_path / "soup"
    rc = main(["train", "soup", "--model", base, "--device", "cpu", a, b,
               "--weights", "1", "0.7", "-o", str(out), "--adapter-dtype", "float16"])
    assert rc == 0
    plain = LLM2Vec.from_pretrained(base).model.state_dict()
    soup = LLM2Vec.from_pretrained(base, adapters=[str(out)])
    state = soup.model.state_dict()
    da, db = lora_delta(a), lora_delta(b)
    # different target modules: the soup covers the union, each ingredient where it acts
    assert set(da) != set(db)
    for key in set(da) | set(db):
        expected = plain[key] + da.get(key, 0) + 0.7 * db.get(key, 0)
        torch.testing.assert_close(state[key], expected, atol=2e-4, rtol=1e-3)  # float16 store
    assert soup.config.query_instruction == "Find the passage"  # the ingredients' settings
    assert all(t.dtype == torch.float16
               for t in load_file(str(out / "adapter_model.safetensors")).values())
    record = json.loads((out / "soup.json").read_text())
    assert [(i["path"], i["weight"]) for i in record["adapters"]] == [(a, 1.0), (b, 0.7)]
    # the weights matter: the plain sum of both encodes differently
    summed = LLM2Vec.from_pretrained(base, adapters=[a, b])
    assert np.abs(soup.encode(TEXTS) - summed.encode(TEXTS)).max() > 1e-3


def test_one_adapter_scaled_moves_part_of_the_way_back(ingredients, tmp_path):
    """WiSE-FT: one ingredient with a weight below 1."""
    base, a, _ = ingredients
    assert main(["train", "soup", "--model", base, "--device", "cpu", a, "--weights", "0.5",
                 "-o", str(tmp_path / "half")]) == 0
    plain = LLM2Vec.from_pretrained(base).model.state_dict()
    state = LLM2Vec.from_pretrained(base, adapters=[str(tmp_path / "half")]).model.state_dict()
    for key, delta in lora_delta(a).items():
        torch.testing.assert_close(state[key], plain[key] + 0.5 * delta, atol=1e-5, rtol=1e-4)


def test_the_default_weights_average(ingredients, tmp_path):
    base, a, b = ingredients
    assert main(["train", "soup", "--model", base, "--device", "cpu", a, b,
                 "-o", str(tmp_path / "soup")]) == 0
    record = json.loads((tmp_path / "soup" / "soup.json").read_text())
    assert [i["weight"] for i in record["adapters"]] == [0.5, 0.5]


def test_bad_soups_say_what_to_fix(ingredients, tmp_path, capsys):
    base, a, b = ingredients
    rc = main(["train", "soup", "--model", base, a, b, "--weights", "1", "-o", str(tmp_path / "x")])
    assert rc != 0
    assert "1 weights for 2 adapters" in capsys.readouterr().err
    rc = main(["train", "soup", "--model", base, a, str(tmp_path), "-o", str(tmp_path / "x")])
    assert rc != 0
    assert "holds no adapter_config.json" in capsys.readouterr().err
    other = tmp_path / "other"
    make_lora_adapter(base, str(other), 3)
    (other / "llm2vec_config.json").write_text(json.dumps({"pooling": "last_token"}))
    rc = main(["train", "soup", "--model", base, a, str(other), "-o", str(tmp_path / "x")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "disagree on pooling, query_instruction" in err and str(other) in err
    assert not (tmp_path / "x").exists()  # nothing half-written


def _weights_of(folder) -> dict:
    return {k: v.clone() for k, v in load_file(os.path.join(folder, "adapter_model.safetensors"))
            .items()}


def test_soup_never_writes_over_an_ingredient(ingredients, tmp_path, capsys):
    base, a, b = ingredients
    before = _weights_of(a)
    for extra in ([], ["--overwrite"]):
        rc = main(["train", "soup", "--model", base, "--device", "cpu", a, b, "-o", a, *extra])
        assert rc == 2
        err = capsys.readouterr().err
        assert f"the output folder {a} is the ingredient" in err
    after = _weights_of(a)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_soup_over_another_adapter_needs_overwrite(ingredients, tmp_path, capsys):
    base, a, b = ingredients
    other = tmp_path / "someone-elses"
    make_lora_adapter(base, str(other), 4)
    before = _weights_of(other)
    rc = main(["train", "soup", "--model", base, "--device", "cpu", a, b, "-o", str(other)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{other} already holds an adapter" in err and "--overwrite" in err
    assert all(torch.equal(before[k], v) for k, v in _weights_of(other).items())
    rc = main(["train", "soup", "--model", base, "--device", "cpu", a, b, "-o", str(other),
               "--overwrite"])
    assert rc == 0
    assert json.loads((other / "soup.json").read_text())["adapters"][0]["path"] == a


@pytest.mark.parametrize("weights", [["nan", "1"], ["1", "inf"]])
def test_soup_weights_must_be_finite(ingredients, tmp_path, capsys, weights):
    base, a, b = ingredients
    out = tmp_path / "nan-soup"
    rc = main(["train", "soup", "--model", base, "--device", "cpu", a, b, "--weights", *weights,
               "-o", str(out)])
    assert rc == 2
    bad = 1 if weights[0] == "nan" else 2
    err = capsys.readouterr().err
    assert f"weight {bad} (" in err and "is not a finite number" in err
    assert not out.exists()
