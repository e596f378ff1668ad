"""``llm2vec-rag train`` and ``llm2vec-rag eval`` end to end, and the Lee metric itself."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from llm2vec_rag.training import evaluate, load_config
from llm2vec_rag.training.evaluate import lee_spearman
from tiny import CORPUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_spearman_is_scipys_and_scipy_is_a_train_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert any(req.startswith("scipy") for req in extras["train"]), extras["train"]
    assert not hasattr(evaluate, "rank") and not hasattr(evaluate, "spearman")  # no own copy


def write_lee(folder, n=6):
    """A Lee-format set: n documents, upper-triangle ratings."""
    os.makedirs(folder, exist_ok=True)
    docs = CORPUS[:n]
    with open(os.path.join(folder, "lee.cor"), "w", encoding="latin-1") as f:
        f.write("\n".join(docs))
    ratings = np.triu(np.random.default_rng(1).uniform(size=(n, n)), 1) + np.eye(n)
    np.savetxt(os.path.join(folder, "similarities0-1.txt"), ratings, delimiter="\t")
    return docs, ratings


def test_lee_spearman_uses_the_upper_triangle(tiny_encoder, tmp_path):
    docs, ratings = write_lee(tmp_path)
    v = tiny_encoder.encode(docs, normalize=True)
    iu = np.triu_indices(len(docs), 1)
    expected = spearmanr((v @ v.T)[iu], ratings[iu]).statistic
    assert lee_spearman(tiny_encoder, str(tmp_path)) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(FileNotFoundError, match="fetch_data.sh"):
        lee_spearman(tiny_encoder, str(tmp_path / "missing"))


def test_eval_data_does_not_depend_on_the_current_folder(tmp_path, monkeypatch, capsys):
    from llm2vec_rag.training.evaluate import DATA_ENV, default_data_dir, read_lee

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() == os.path.join(checkout, "data", "gensim")
    if os.path.isfile(os.path.join(checkout, "data", "gensim", "lee.cor")):
        assert len(read_lee()[0]) == 50  # found from elsewhere, no data_dir given
    docs, _ = write_lee(tmp_path / "lee")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "lee"))
    assert read_lee()[0] == docs

    # The CLI names its flag, and says so before loading any model (this one does not exist).
    rc = main(["eval", "--model", str(tmp_path / "no-model"), "--data-dir",
               str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing/lee.cor not found" in err and "pass --data-dir" in err
    assert "data_dir=" not in err and "no-model" not in err


def test_cli_train_mntp_then_eval_with_the_adapter(tiny_model_dir, tmp_path, capsys):
    base = tiny_model_dir("llama", "bytelevel")
    (tmp_path / "c.txt").write_text("\n".join(CORPUS * 2), encoding="utf-8")
    config = tmp_path / "mntp.yaml"
    config.write_text(f"stage: mntp\nmodel: {base}\ndata: [{tmp_path / 'c.txt'}]\n"
                      "max_length: 16\nbatch_size: 4\nreport_to: none\n")
    out = tmp_path / "mntp"
    rc = main(["train", "mntp", "--config", str(config), "max_steps=2", f"output_dir={out}",
               "logging_steps=1"])
    assert rc == 0 and (out / "adapter_model.safetensors").is_file()
    write_lee(tmp_path / "lee")
    capsys.readouterr()
    rc = main(["eval", "--model", base, "--adapter", str(out), "--data-dir",
               str(tmp_path / "lee"), "--device", "cpu"])
    result = json.loads(capsys.readouterr().out)
    assert rc == 0 and result["benchmark"] == "lee"
    library = lee_spearman(LLM2Vec.from_pretrained(base, adapters=[str(out)], device="cpu"),
                           str(tmp_path / "lee"))
    assert result["spearman"] == round(library, 4)  # the CLI reports the library's value
    rc = main(["eval", "--model", base, "--causal", "--data-dir", str(tmp_path / "lee"),
               "--device", "cpu"])
    causal = json.loads(capsys.readouterr().out)
    assert rc == 0 and causal["bidirectional"] is False
    causal_library = lee_spearman(
        LLM2Vec.from_pretrained(base, enable_bidirectional=False, device="cpu"),
        str(tmp_path / "lee"))
    assert causal["spearman"] == round(causal_library, 4) != result["spearman"]


def test_max_steps_below_warmup_warns():
    with pytest.warns(UserWarning, match="max_steps=5 is not above warmup_steps=20"):
        load_config("supervised", "supervised-cpu", {"model": "m", "data": ["d.jsonl"],
                                                     "max_steps": 5})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config("supervised", "supervised-cpu", {"model": "m", "data": ["d.jsonl"],
                                                     "max_steps": 21})


def test_cli_rejects_unknown_keys_before_loading_anything(tmp_path, capsys):
    rc = main(["train", "simcse", "--config", "simcse-cpu", "model=x", "data=[y.txt]",
               "temprature=0.1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Unknown config key 'temprature'" in err and "'temperature'" in err
