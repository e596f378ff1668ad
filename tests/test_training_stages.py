"""MNTP, SimCSE and supervised stages on a tiny random Llama: they learn, save adapters that
reload to the very embeddings the trainer ended with, resume exactly, and reject bad input
before training starts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from llm2vec_rag import LLM2Vec
from llm2vec_rag.model import EncoderModule
from llm2vec_rag.preprocess import Preprocessor
from llm2vec_rag.training import load_config, train_mntp, train_simcse, train_supervised
from llm2vec_rag.training.trainer import LOG_CSV, LOSS_PNG, read_log
from tiny import CORPUS

PROBES = ["The quick brown fox.", "Qdrant stores vectors.", "A contrastive loss."]
FAST = dict(report_to="none", logging_steps=1, save_steps=100, lora_r=8, lora_alpha=16,
            adapter_dtype="float32")


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir("llama", "bytelevel")  # byte-level: "_" is a token (mask fallback)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    return str(path)


class FinalEmbeddings(TrainerCallback):
    """Records the probe embeddings of the model as training ends (unmerged LoRA)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vectors = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        pre = Preprocessor(self.tokenizer, 64)
        batch = pre.collate(pre.encode(PROBES), None)
        model.eval()
        with torch.no_grad():
            self.vectors = EncoderModule(model, "mean")(
                *(torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask,
                                                batch.embed_mask))).numpy()


class Interrupt(TrainerCallback):
    """Simulates a crash right after the checkpoint at ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated crash")


def losses(folder: str) -> list[float]:
    return [float(r["loss"]) for r in read_log(os.path.join(folder, LOG_CSV))]


def encoder(base: str, adapters: list[str]) -> LLM2Vec:
    return LLM2Vec.from_pretrained(base, adapters=adapters, device="cpu")


def mntp_cfg(base, corpus, out, **kw):
    settings = dict(model=base, data=[corpus], output_dir=str(out), max_length=32, batch_size=8,
                    max_steps=16, learning_rate=2e-2, mask_probability=0.3,
                    lr_scheduler_type="constant", **FAST)
    return load_config("mntp", "mntp-cpu", {**settings, **kw})


def simcse_cfg(base, corpus, out, adapters, **kw):
    settings = dict(model=base, data=[corpus], adapters=adapters, output_dir=str(out),
                    max_length=32, batch_size=8, max_steps=12, learning_rate=5e-3, dropout=0.1,
                    **FAST)
    return load_config("simcse", "simcse-cpu", {**settings, **kw})


@pytest.fixture(scope="module")
def mntp_run(base, corpus, tmp_path_factory):
    from transformers import AutoTokenizer

    probe = FinalEmbeddings(AutoTokenizer.from_pretrained(base))
    out = train_mntp(mntp_cfg(base, corpus, tmp_path_factory.mktemp("mntp")), callbacks=[probe])
    return out, probe.vectors


def test_mntp_learns_and_writes_a_reloadable_adapter(base, mntp_run):
    out, trained = mntp_run
    curve = losses(out)
    assert len(curve) == 16 and np.isfinite(curve).all()
    assert np.mean(curve[-4:]) < np.mean(curve[:4]) - 0.3, curve
    for name in ("adapter_config.json", "adapter_model.safetensors", "training_config.yaml",
                 "llm2vec_config.json", LOSS_PNG):
        assert os.path.isfile(os.path.join(out, name)), name
    keys = load_file(os.path.join(out, "adapter_model.safetensors"))
    assert keys and all(k.startswith("base_model.model.layers.") for k in keys)  # bare decoder
    assert any("mlp.down_proj.lora_A" in k for k in keys) and any("q_proj" in k for k in keys)
    reloaded = encoder(base, [out]).encode(PROBES)
    np.testing.assert_allclose(reloaded, trained, atol=1e-5)
    assert not np.allclose(encoder(base, []).encode(PROBES), trained, atol=1e-3)


def test_half_precision_adapter_is_half_the_size_and_loads(base, corpus, mntp_run, tmp_path):
    half = train_mntp(mntp_cfg(base, corpus, tmp_path / "half", adapter_dtype="float16",
                              save_steps=16))
    full_file, half_file = (os.path.join(d, "adapter_model.safetensors")
                            for d in (mntp_run[0], half))
    full, small = load_file(full_file), load_file(half_file)
    assert {t.dtype for t in small.values()} == {torch.float16} and small.keys() == full.keys()
    assert os.path.getsize(half_file) < 0.55 * os.path.getsize(full_file)
    for key in full:  # the same run (seeded), only rounded to float16
        torch.testing.assert_close(small[key], full[key].half())
    checkpoint = load_file(os.path.join(half, "checkpoint-16", "adapter_model.safetensors"))
    assert {t.dtype for t in checkpoint.values()} == {torch.float32}  # resume stays exact
    np.testing.assert_allclose(encoder(base, [half]).encode(PROBES), mntp_run[1], atol=2e-3)


def test_simcse_on_mntp_learns_and_reloads(base, corpus, mntp_run, tmp_path):
    from transformers import AutoTokenizer

    probe = FinalEmbeddings(AutoTokenizer.from_pretrained(base))
    out = train_simcse(simcse_cfg(base, corpus, tmp_path / "simcse", [mntp_run[0]]),
                       callbacks=[probe])
    curve = losses(out)
    assert np.isfinite(curve).all() and np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    both = encoder(base, [mntp_run[0], out]).encode(PROBES)
    np.testing.assert_allclose(both, probe.vectors, atol=1e-5)
    assert not np.allclose(both, mntp_run[1], atol=1e-3)


def test_interrupted_run_resumes_to_the_same_adapter(base, corpus, mntp_run, tmp_path):
    straight = train_simcse(simcse_cfg(base, corpus, tmp_path / "a", [mntp_run[0]],
                                       max_steps=6, save_steps=3))
    cfg = simcse_cfg(base, corpus, tmp_path / "b", [mntp_run[0]], max_steps=6, save_steps=3)
    with pytest.raises(KeyboardInterrupt):
        train_simcse(cfg, callbacks=[Interrupt(3)])
    assert os.path.isdir(tmp_path / "b" / "checkpoint-3")
    assert not os.path.isfile(tmp_path / "b" / "adapter_model.safetensors")
    resumed = train_simcse(cfg)  # resume=auto picks up checkpoint-3
    assert [int(r["step"]) for r in read_log(os.path.join(resumed, LOG_CSV))] == list(range(1, 7))
    a = load_file(os.path.join(straight, "adapter_model.safetensors"))
    b = load_file(os.path.join(resumed, "adapter_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def write_pairs(path, n_per_topic=8):
    topics = {"animals": "fox dog cat bird", "weather": "rain snow sun wind",
              "code": "python rust code compiler", "money": "bank stock market price"}
    rows = []
    for i in range(n_per_topic):
        for t, words in topics.items():
            w = words.split()
            other = next(o for o in topics if o != t)
            rows.append({"query": f"{w[i % 4]} {t}?", "positive": f"{t} {words} {i}",
                         "negatives": [f"{other} {topics[other]}"], "dataset": "toy",
                         "instruction": "Find the topic"})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("chunk", [None, 3])
def test_supervised_learns_with_and_without_grad_cache(base, mntp_run, tmp_path, chunk):
    from transformers import AutoTokenizer

    data = write_pairs(tmp_path / "pairs.jsonl")
    cfg = load_config("supervised", "supervised-cpu", dict(
        model=base, adapters=[mntp_run[0]], data=[data], output_dir=str(tmp_path / "sup"),
        max_length=32, batch_size=8, max_steps=12, learning_rate=5e-3, warmup_steps=0,
        grad_cache_chunk_size=chunk, query_instruction="Find the topic", **FAST))
    probe = FinalEmbeddings(AutoTokenizer.from_pretrained(base))
    out = train_supervised(cfg, callbacks=[probe])
    curve = losses(out)
    assert np.isfinite(curve).all() and np.mean(curve[-3:]) < np.mean(curve[:3]), curve
    trained = encoder(base, [mntp_run[0], out])
    assert trained.config.query_instruction == "Find the topic"  # the model's default now
    both = trained.encode(PROBES)
    np.testing.assert_allclose(both, probe.vectors, atol=1e-5)  # the adapter is what trained
    assert not np.allclose(both, mntp_run[1], atol=1e-3)


def test_mntp_applies_earlier_adapters_before_its_own(base, corpus, mntp_run, tmp_path):
    """A second MNTP run (e.g. on domain text) continues from the first one's weights."""
    from transformers import AutoTokenizer

    probe = FinalEmbeddings(AutoTokenizer.from_pretrained(base))
    out = train_mntp(mntp_cfg(base, corpus, tmp_path / "again", adapters=[mntp_run[0]],
                              max_steps=2, warmup_steps=0), callbacks=[probe])
    np.testing.assert_allclose(encoder(base, [mntp_run[0], out]).encode(PROBES), probe.vectors,
                               atol=1e-5)
    first = losses(mntp_run[0])
    assert losses(out)[0] < np.mean(first[:2]) - 0.3  # starts where the first run ended


def _no_pad_model(base, tmp_path):
    """A copy of the tiny model whose tokenizer has neither pad nor EOS token."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "nopad"
    tok = AutoTokenizer.from_pretrained(base)
    tok.pad_token, tok.eos_token = None, None
    tok.save_pretrained(folder)
    AutoModel.from_pretrained(base).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("case", ["empty", "short", "field", "nopad", "mask"])
def test_bad_input_fails_before_training(base, corpus, tmp_path, tiny_model_dir, case):
    out = tmp_path / "out"
    if case == "empty":
        (tmp_path / "e.txt").write_text("\n  \n", encoding="utf-8")
        cfg, match = mntp_cfg(base, str(tmp_path / "e.txt"), out), "empty"
    elif case == "short":
        (tmp_path / "s.txt").write_text("just a few words\n", encoding="utf-8")
        cfg, match = mntp_cfg(base, str(tmp_path / "s.txt"), out), "fewer than one block"
    elif case == "field":
        (tmp_path / "f.jsonl").write_text('{"body": "x y z"}\n', encoding="utf-8")
        cfg, match = mntp_cfg(base, str(tmp_path / "f.jsonl"), out), "no 'text' field"
    elif case == "nopad":
        cfg, match = mntp_cfg(_no_pad_model(base, tmp_path), corpus, out), "pad token"
    else:  # whitespace tokenizer: no mask token and "_" is not in its vocabulary
        cfg, match = mntp_cfg(tiny_model_dir("llama"), corpus, out), "mask token"
    with pytest.raises(ValueError, match=match):
        train_mntp(cfg)
    assert not out.exists()  # nothing was trained or written
