"""``llm2vec-rag train bundle``: a trained stage's adapter in the form the package ships it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import yaml
from safetensors import safe_open

from llm2vec_rag import LLM2Vec
from llm2vec_rag.cli import main
from llm2vec_rag.default_model import QUERY_INSTRUCTION
from tiny import CORPUS, make_lora_adapter


@pytest.fixture
def stage(tiny_model_dir, tmp_path):
    """A stage's output_dir as training leaves it: float32 adapter, settings by full path."""
    base = tiny_model_dir("llama")
    out = make_lora_adapter(base, str(tmp_path / "run" / "supervised"), 5)
    (tmp_path / "run" / "supervised" / "llm2vec_config.json").write_text(
        json.dumps({"pooling": "mean", "query_instruction": "trained with this"}))
    (tmp_path / "run" / "supervised" / "training_config.yaml").write_text(yaml.safe_dump(
        {"model": "/home/someone/models/base.gguf",
         "adapters": ["/home/someone/out/mntp/", "/home/someone/out/simcse"],
         "distill_teacher": "/home/someone/venv/lib/python3.12/site-packages/minilm/model",
         "data": ["/home/someone/pairs.jsonl", "out/pairs-train.jsonl"],
         "output_dir": "out/supervised"}))
    (tmp_path / "run" / "supervised" / "training_log.csv").write_text("step,loss\n1,0.5\n")
    return base, out


def dtypes(folder) -> set[str]:
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {str(f.get_tensor(k).dtype) for k in f.keys()}  # noqa: SIM118


def test_bundle_ships_half_precision_named_by_file(stage, tmp_path):
    base, stage_dir = stage
    dest = tmp_path / "bundle" / "supervised"
    assert main(["train", "bundle", stage_dir, "-o", str(dest),
                 "--base", "/home/someone/models/base.gguf"]) == 0
    assert dtypes(dest) == {"torch.float16"}
    adapter = json.loads((dest / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "base.gguf"
    settings = yaml.safe_load((dest / "training_config.yaml").read_text())
    assert settings["model"] == "base.gguf" and settings["adapters"] == ["mntp", "simcse"]
    # no other path of the training machine either; relative paths stay
    assert settings["distill_teacher"] == "SITE_PACKAGES/minilm/model"
    assert settings["data"] == ["pairs.jsonl", "out/pairs-train.jsonl"]
    assert settings["output_dir"] == "out/supervised"
    assert "/home/someone" not in (dest / "training_config.yaml").read_text()
    assert (dest / "training_log.csv").is_file()
    config = json.loads((dest / "llm2vec_config.json").read_text())
    assert config["query_instruction"] == QUERY_INSTRUCTION
    # the shipped adapter encodes as the trained one, to float16 rounding
    texts = CORPUS[:4]
    trained = LLM2Vec.from_pretrained(base, adapters=[stage_dir], device="cpu").encode(texts)
    shipped = LLM2Vec.from_pretrained(base, adapters=[str(dest)], device="cpu").encode(texts)
    np.testing.assert_allclose(shipped, trained, atol=2e-3)


def test_bundle_can_keep_the_stages_instruction_and_refuses_a_non_adapter(stage, tmp_path,
                                                                         capsys):
    _, stage_dir = stage
    dest = tmp_path / "kept"
    assert main(["train", "bundle", stage_dir, "-o", str(dest), "--keep-instruction"]) == 0
    config = json.loads((dest / "llm2vec_config.json").read_text())
    assert config["query_instruction"] == "trained with this"
    assert main(["train", "bundle", str(tmp_path), "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "adapter_config.json" in err and "not a trained adapter folder" in err
    assert not (tmp_path / "x").exists()


def test_select_pairs_keeps_or_drops_symmetric_pairs_and_instructions(tmp_path, capsys):
    mined = tmp_path / "pairs.jsonl"
    rows = [{"query": "q1", "positive": "p1", "instruction": "Define the term"},
            {"query": "half a", "positive": "half b", "instruction": ""},
            {"query": "q2", "positive": "p2"}]
    mined.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def selected(*flags: str) -> list[dict]:
        out = tmp_path / "train.jsonl"
        assert main(["train", "select-pairs", str(mined), *flags, "-o", str(out)]) == 0
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

    assert selected() == [{"query": "q1", "positive": "p1"}, rows[1], rows[2]]
    assert selected("--instructions", "mined", "--no-symmetric") == [rows[0], rows[2]]
    assert "2 pairs" in capsys.readouterr().err
    other = tmp_path / "more.jsonl"  # a second source, sampled: the first 2 of a seeded shuffle
    more = [{"query": f"m{i}", "positive": f"n{i}"} for i in range(10)]
    other.write_text("".join(json.dumps(r) + "\n" for r in more), encoding="utf-8")
    mixed = selected(f"{other}:2", "--seed", "3")
    shuffled = more[:]
    random.Random(3).shuffle(shuffled)
    assert mixed[:3] == [{"query": "q1", "positive": "p1"}, rows[1], rows[2]]
    assert mixed[3:] == shuffled[:2]
    out = tmp_path / "x.jsonl"
    assert main(["train", "select-pairs", f"{other}:11", "-o", str(out)]) == 2
    assert f"{other}: 11 pairs asked for, the file has 10" in capsys.readouterr().err
    assert not out.exists()  # bad input writes no partial file
    mined.write_text('{"query": "q"}\nnot json\n', encoding="utf-8")
    assert main(["train", "select-pairs", str(mined), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert f"{mined}:2: invalid JSON" in capsys.readouterr().err


def test_default_model_parts_for_scripts(capsys):
    from llm2vec_rag.default_model import UNSUPERVISED_ADAPTERS

    assert main(["default-model", "query-instruction"]) == 0
    assert capsys.readouterr().out.strip() == QUERY_INSTRUCTION
    assert main(["default-model", "unsupervised-adapters"]) == 0
    assert capsys.readouterr().out.split() == UNSUPERVISED_ADAPTERS
