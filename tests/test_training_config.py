"""Training configs: presets load, overrides parse and type-check, mistakes name the field."""

from __future__ import annotations

import pytest

from llm2vec_rag.training.config import (
    MNTPConfig,
    SimCSEConfig,
    load_config,
    parse_overrides,
    preset_names,
)

REQUIRED = {"model": "some/model", "data": ["a.txt"]}


@pytest.mark.parametrize("name", ["mntp", "mntp-cpu", "simcse", "simcse-cpu", "supervised",
                                  "supervised-cpu"])
def test_every_preset_loads_for_its_stage(name):
    assert name in preset_names()
    stage = name.split("-")[0]
    cfg = load_config(stage, name, REQUIRED)
    assert cfg.stage == stage and cfg.output_dir == f"out/{stage}"


def test_paper_defaults():
    mntp = MNTPConfig(**REQUIRED)
    assert (mntp.lora_r, mntp.lora_alpha, mntp.lora_dropout, mntp.mask_probability,
            mntp.max_length, mntp.batch_size, mntp.max_steps) == (16, 32, 0.05, 0.2, 512, 32, 1000)
    simcse = SimCSEConfig(**REQUIRED)
    assert (simcse.batch_size, simcse.learning_rate, 1 / simcse.temperature) == (128, 3e-5, 20)
    assert 1 / load_config("supervised", "supervised", REQUIRED).temperature == 50


def test_overrides_are_parsed_as_yaml_and_coerced():
    over = parse_overrides(["max_steps=10", "learning_rate=5e-5", "data=[a.txt, b.txt]",
                            "bf16=true", "pad_token="])
    cfg = load_config("mntp", "mntp-cpu", {"model": "m", **over})
    assert cfg.max_steps == 10 and cfg.learning_rate == 5e-5 and cfg.bf16 is True
    assert cfg.data == ["a.txt", "b.txt"] and cfg.pad_token is None
    with pytest.raises(ValueError, match="not key=value"):
        parse_overrides(["max_steps"])


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ValueError, match="Unknown config key 'max_step'.*'max_steps'"):
        load_config("mntp", None, {**REQUIRED, "max_step": 3})
    with pytest.raises(ValueError, match="'temperature'"):  # SimCSE-only key on MNTP
        load_config("mntp", None, {**REQUIRED, "temperature": 0.05})


@pytest.mark.parametrize("over, field", [
    ({"mask_probability": 1.5}, "mask_probability"),
    ({"batch_size": 0}, "batch_size"),
    ({"max_steps": "ten"}, "max_steps"),
    ({"learning_rate": -1}, "learning_rate"),
    ({"pooling": "max"}, "pooling"),
    ({"resume": "maybe"}, "resume"),
    ({"adapter_dtype": "int8"}, "adapter_dtype"),
    ({"model": None}, "model"),
    ({"data": []}, "data"),
])
def test_bad_values_name_the_field(over, field):
    with pytest.raises(ValueError, match=field if field != "pooling" else "Unknown pooling"):
        load_config("mntp", None, {**REQUIRED, **over})


def test_config_files_and_stage_mismatch(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: simcse\nmodel: m\ndata: [x.txt]\nbatch_size: 4\n")
    assert load_config("simcse", str(path)).batch_size == 4
    with pytest.raises(ValueError, match="for stage 'simcse', not 'mntp'"):
        load_config("mntp", str(path))
    with pytest.raises(FileNotFoundError, match="neither a file nor a preset"):
        load_config("mntp", str(tmp_path / "missing.yaml"))


def test_saved_config_round_trips(tmp_path):
    cfg = load_config("simcse", "simcse-cpu", {**REQUIRED, "adapters": ["mntp_dir"]})
    cfg.save(tmp_path)
    again = load_config("simcse", str(tmp_path / "training_config.yaml"))
    assert again == cfg


def test_bf16_is_accepted_on_a_machine_without_an_accelerator(tmp_path):
    """The Trainer refuses bf16 on CPU ("bf16/gpu") unless told use_cpu; CPUs autocast fine."""
    import torch

    from llm2vec_rag.training.trainer import training_arguments

    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only path")
    cfg = load_config("supervised", "supervised-cpu",
                      {**REQUIRED, "bf16": True, "output_dir": str(tmp_path)})
    args = training_arguments(cfg)
    assert args.bf16 and args.use_cpu and args.device.type == "cpu"
