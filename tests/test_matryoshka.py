"""Matryoshka training: the loss at each truncated prefix, GradCache, the recorded dims and the
``truncate_dim`` warning they enable."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
import yaml

from llm2vec_rag import LLM2Vec
from llm2vec_rag.training import load_config, train_simcse, train_supervised
from llm2vec_rag.training.gradcache import grad_cache_step
from llm2vec_rag.training.losses import contrastive_loss, matryoshka
from tiny import CORPUS

FAST = dict(report_to="none", logging_steps=1, save_steps=100, lora_r=4, lora_alpha=8,
            adapter_dtype="float32", max_length=32, batch_size=4, max_steps=2,
            learning_rate=1e-3, warmup_steps=0)


def reference_infonce(q, d, scale):
    """InfoNCE at one size, written out independently of ``contrastive_loss``."""
    q, d = F.normalize(q, dim=-1), F.normalize(d, dim=-1)
    logits = scale * q @ d.T
    return -torch.log_softmax(logits, dim=-1)[range(len(q)), range(len(q))].mean()


def test_loss_is_the_weighted_sum_of_the_losses_at_each_prefix():
    torch.manual_seed(0)
    q, pos, neg = torch.randn(6, 32), torch.randn(6, 32), torch.randn(3, 32)
    dims, weights = [32, 16, 4], [1.0, 0.5, 2.0]
    loss = matryoshka(contrastive_loss, dims, weights)(q, pos, neg, scale=20.0,
                                                       gather_across_processes=False)
    docs = torch.cat([pos, neg])
    expected = sum(w * reference_infonce(q[:, :d], docs[:, :d], 20.0)
                   for d, w in zip(dims, weights))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # the prefixes matter: the full-size loss alone is different
    assert float(loss) != pytest.approx(float(reference_infonce(q, docs, 20.0)), rel=1e-3)


def test_matryoshka_refuses_dims_beyond_the_embedding():
    loss = matryoshka(contrastive_loss, [64, 8])
    with pytest.raises(ValueError, match=r"beyond the embedding size 32"):
        loss(torch.randn(4, 32), torch.randn(4, 32), gather_across_processes=False)


def test_grad_cache_gives_the_same_gradient_with_matryoshka():
    torch.manual_seed(0)
    layer = torch.nn.Linear(12, 16)
    groups = [{"x": torch.randn(8, 12)}, {"x": torch.randn(8, 12)}]
    loss_on = matryoshka(lambda q, d: contrastive_loss(q, d, gather_across_processes=False),
                         [16, 8, 2], [1.0, 1.0, 0.5])

    def embed(piece):
        return layer(piece["x"])

    loss_on(embed(groups[0]), embed(groups[1])).backward()
    direct = layer.weight.grad.clone()
    layer.zero_grad()
    grad_cache_step(groups, embed, lambda reps: loss_on(*reps), lambda t: t.backward(), 3)
    torch.testing.assert_close(layer.weight.grad, direct, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("value, match", [
    ([64, 64], "each dimension once"), ([64, 0], r"matryoshka_dims\[1\]"),
    ("sixty", "matryoshka_dims: expected a list"),
])
def test_bad_dims_name_the_field(tmp_path, value, match):
    with pytest.raises(ValueError, match=match):
        load_config("supervised", None, dict(model="m", data=["d"], matryoshka_dims=value))


def test_weights_must_match_the_dims_and_are_kept_in_dim_order():
    with pytest.raises(ValueError, match="one weight per matryoshka_dims entry"):
        load_config("simcse", None, dict(model="m", data=["d"], matryoshka_dims=[8, 4],
                                         matryoshka_weights=[1.0]))
    cfg = load_config("supervised", None, dict(model="m", data=["d"], matryoshka_dims=[4, 16],
                                               matryoshka_weights=[2, 1]))
    assert cfg.matryoshka_dims == [16, 4] and cfg.matryoshka_weights == [1.0, 2.0]
    plain = load_config("supervised", None, dict(model="m", data=["d"]))
    assert plain.matryoshka_dims == [] and plain.matryoshka_weights == []


def write_pairs(path):
    rows = [{"query": CORPUS[i], "positive": CORPUS[(i + 1) % len(CORPUS)],
             "negative": CORPUS[(i + 5) % len(CORPUS)]} for i in range(len(CORPUS))]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir("llama")


@pytest.mark.parametrize("stage", ["supervised", "simcse"])
def test_a_two_step_run_records_the_dims_and_truncation_warns(base, tmp_path, stage):
    out = str(tmp_path / stage)
    if stage == "supervised":
        cfg = load_config("supervised", None, dict(
            model=base, data=[write_pairs(tmp_path / "pairs.jsonl")], output_dir=out,
            grad_cache_chunk_size=2, matryoshka_dims=[8, 32], matryoshka_weights=[0.5, 1],
            **FAST))
        train_supervised(cfg)
    else:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("\n".join(CORPUS * 2) + "\n", encoding="utf-8")
        cfg = load_config("simcse", None, dict(
            model=base, data=[str(corpus)], output_dir=out, dropout=0.1,
            matryoshka_dims=[32, 8], matryoshka_weights=[1, 0.5], **FAST))
        train_simcse(cfg)
    with open(os.path.join(out, "llm2vec_config.json"), encoding="utf-8") as f:
        assert json.load(f)["matryoshka_dims"] == [32, 8]
    with open(os.path.join(out, "training_config.yaml"), encoding="utf-8") as f:
        recorded = yaml.safe_load(f)
    assert recorded["matryoshka_dims"] == [32, 8]
    assert recorded["matryoshka_weights"] == [1.0, 0.5]

    model = LLM2Vec.from_pretrained(base, adapters=[out], device="cpu")
    assert model.config.matryoshka_dims == [32, 8]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.encode(["a b"], truncate_dim=8).shape == (1, 8)  # trained for 8: silent
    with pytest.warns(UserWarning, match=r"below the smallest dimension .*=\[32, 8\]"):
        model.encode(["a b"], truncate_dim=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode(["a b"], truncate_dim=4)  # once


def test_truncating_a_model_not_trained_for_it_warns_once(base):
    model = LLM2Vec.from_pretrained(base, device="cpu")  # its own: warnings are per encoder
    assert model.config.matryoshka_dims is None
    dim = model.dim
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode(["a b"], truncate_dim=dim)  # no truncation: silent
    with pytest.warns(UserWarning, match="not trained for truncation"):
        model.encode(["a b"], truncate_dim=dim // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.encode(["a b"], truncate_dim=dim // 2)
