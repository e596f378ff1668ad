"""resume=auto continues only a checkpoint of the same run (model, stage, data, adapters...)."""

from __future__ import annotations

import json
import os

import pytest
from test_training_stages import FAST, Interrupt

from llm2vec_rag.training import load_config, train_mntp
from llm2vec_rag.training.run_record import RUN_FILE, ResumeMismatchError, check_resume
from llm2vec_rag.training.trainer import resume_checkpoint
from tiny import CORPUS


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir("llama", "bytelevel")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    return str(path)


def cfg(base, corpus, out, **kw):
    settings = {**FAST, **dict(model=base, data=[corpus], output_dir=str(out), max_length=32,
                               batch_size=8, max_steps=4, save_steps=2, learning_rate=2e-2,
                               lr_scheduler_type="constant")}
    return load_config("mntp", "mntp-cpu", {**settings, **kw})


@pytest.fixture(scope="module")
def interrupted(base, corpus, tmp_path_factory):
    """output_dir with checkpoint-2 of an MNTP run killed right after saving it."""
    out = tmp_path_factory.mktemp("run")
    with pytest.raises(KeyboardInterrupt):
        train_mntp(cfg(base, corpus, out), callbacks=[Interrupt(2)])
    assert os.path.isfile(out / "checkpoint-2" / RUN_FILE)
    return out


@pytest.mark.parametrize("change, key", [
    ("model", "model"), ("data", "data"), ("adapters", "adapters"), ("lora_r", "lora_r")])
def test_another_runs_checkpoint_is_refused_naming_the_key(base, corpus, interrupted,
                                                           tiny_model_dir, tmp_path, change,
                                                           key):
    other = {"model": tiny_model_dir("qwen2", "bytelevel"), "data": [str(tmp_path / "x.txt")],
             "adapters": [str(tmp_path)], "lora_r": 4}[change]
    (tmp_path / "x.txt").write_text("other text\n", encoding="utf-8")
    with pytest.raises(ResumeMismatchError, match=rf"{key}: checkpoint .*now .*new output_dir"):
        train_mntp(cfg(base, corpus, interrupted, **{change: other}))
    assert sorted(os.listdir(interrupted)).count("checkpoint-2") == 1  # nothing touched
    assert not os.path.isfile(interrupted / "adapter_model.safetensors")


def test_a_smaller_max_steps_than_the_checkpoint_is_refused(base, corpus, interrupted):
    with pytest.raises(ResumeMismatchError, match="step 2, past max_steps=1"):
        train_mntp(cfg(base, corpus, interrupted, max_steps=1))


def test_watching_settings_may_change_and_the_same_run_resumes(base, corpus, interrupted):
    same = cfg(base, corpus, interrupted, logging_steps=2, save_total_limit=1, max_steps=8)
    assert resume_checkpoint(same).endswith("checkpoint-2")


def test_resume_false_starts_over_without_the_old_checkpoints(base, corpus, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_mntp(cfg(base, corpus, tmp_path), callbacks=[Interrupt(2)])
    out = train_mntp(cfg(base, corpus, tmp_path, max_steps=1, save_steps=100,
                         resume="false", lora_r=4))
    assert not os.path.isdir(tmp_path / "checkpoint-2")
    record = json.load(open(os.path.join(out, RUN_FILE)))
    assert record["settings"]["lora_r"] == 4 and record["max_steps"] == 1


def test_a_checkpoint_without_a_record(base, corpus, interrupted, tmp_path):
    legacy = tmp_path / "checkpoint-2"
    legacy.mkdir()
    with pytest.raises(ResumeMismatchError, match="no run_settings.json.*resume=true"):
        check_resume(cfg(base, corpus, tmp_path), str(legacy))
    check_resume(cfg(base, corpus, tmp_path, resume="true"), str(legacy))  # the user vouches


@pytest.fixture
def own_run(base, tmp_path_factory):
    """Its own corpus and base copy (the test changes them in place) and an interrupted run."""
    import shutil

    root = tmp_path_factory.mktemp("changing")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    model = shutil.copytree(base, root / "base")
    out = root / "run"
    with pytest.raises(KeyboardInterrupt):
        train_mntp(cfg(str(model), str(corpus), out), callbacks=[Interrupt(2)])
    return str(model), str(corpus), out


@pytest.mark.parametrize("what", ["data", "base"])
def test_inputs_changed_in_place_refuse_auto_resume(own_run, what, caplog):
    model, corpus, out = own_run
    if what == "data":  # same path, same size: one word swapped for another of its length
        text = open(corpus, encoding="utf-8").read()
        open(corpus, "w", encoding="utf-8").write(text.replace("quick", "QUICK", 1))
        changed = corpus
    else:  # new base weights copied over the old ones (same size)
        import torch
        from safetensors.torch import load_file, save_file

        changed = os.path.join(model, "model.safetensors")
        weights = load_file(changed)
        save_file({k: torch.flip(v, [0]) for k, v in weights.items()}, changed,
                  metadata={"format": "pt"})
    with pytest.raises(ResumeMismatchError, match=rf"content changed since.*{changed}"):
        resume_checkpoint(cfg(model, corpus, out))
    # resume=true is the user's explicit choice: it continues, with a warning
    with caplog.at_level("WARNING", logger="llm2vec_rag.training.run_record"):
        assert resume_checkpoint(cfg(model, corpus, out, resume="true")).endswith("checkpoint-2")
    assert "content changed since" in caplog.text


def test_unchanged_inputs_resume(own_run):
    model, corpus, out = own_run
    assert resume_checkpoint(cfg(model, corpus, out)).endswith("checkpoint-2")
    record = json.loads((out / "checkpoint-2" / RUN_FILE).read_text())
    assert set(record["inputs"]) == {corpus, model}
