"""The simcse-cpu preset announces its measured peak RAM before training, next to the RAM the
machine has available now (a real reading), and warns, saying what to lower, when there is
less (issue 31: the preset peaked at ~13-16 GB unannounced)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
import yaml

from llm2vec_rag.training import load_config
from llm2vec_rag.training.config import PRESET_DIR
from llm2vec_rag.training.memory import (
    GIB,
    PRESET_PEAKS,
    available_ram,
    cgroup_memory_room,
    preset_memory_check,
)
from tiny import CORPUS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK = PRESET_PEAKS["simcse-cpu"]


def machine_available() -> int:
    """The RAM available now by psutil (its own /proc reading), capped like ours by a cgroup."""
    psutil = pytest.importorskip("psutil")
    room = cgroup_memory_room()
    available = psutil.virtual_memory().available
    return available if room is None else min(available, room)


def test_the_measured_peak_is_the_presets_readme_and_settings():
    with open(os.path.join(ROOT, "training", "presets", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert f"peaks at {PEAK.gib} GiB resident" in readme
    with open(os.path.join(PRESET_DIR, "simcse-cpu.yaml"), encoding="utf-8") as f:
        preset = yaml.safe_load(f)
    assert (preset["batch_size"], preset["max_length"]) == (PEAK.batch_size, PEAK.max_length)


def test_available_ram_is_a_real_reading():
    before = machine_available()
    ours = available_ram()
    after = machine_available()
    assert ours is not None
    assert min(before, after) - GIB / 2 < ours < max(before, after) + GIB / 2, (before, ours,
                                                                               after)


@pytest.mark.parametrize("batch_size, max_length, available_gib, level, says", [
    (32, 64, 4.0, logging.WARNING, ["13.2 GiB", "4.0 GiB available now, less than that",
                                    "lower batch_size (e.g. batch_size=8"]),
    (32, 64, 64.0, logging.INFO, ["13.2 GiB", "64.0 GiB available now"]),
    (8, 64, 4.0, logging.INFO, ["this run (batch_size=8, max_length=64) keeps fewer"]),
    (64, 64, 20.0, logging.INFO, ["20.0 GiB available now; this run is larger: expect more"]),
    (64, 32, 4.0, logging.WARNING, ["less than that"]),  # more rows: still at least the peak
    (32, 64, None, logging.WARNING, ["could not be read", "make sure 13 GiB are free"]),
])
def test_the_check_warns_only_when_the_run_needs_more_than_is_available(
        batch_size, max_length, available_gib, level, says):
    available = None if available_gib is None else int(available_gib * GIB)
    got_level, message = preset_memory_check("simcse-cpu", batch_size, max_length, available)
    assert got_level == level, message
    assert message.startswith("simcse-cpu preset: expect a peak of about 13.2 GiB of RAM")
    for part in says:
        assert part in message, message


def test_only_presets_with_a_measured_peak_announce_one(caplog):
    assert preset_memory_check("mntp-cpu", 32, 64, GIB) is None
    with caplog.at_level(logging.INFO, logger="llm2vec_rag.training.config"):
        load_config("mntp", "mntp-cpu", {"model": "m", "data": ["d.txt"]})
        assert "expect a peak" not in caplog.text
        load_config("simcse", "simcse-cpu", {"model": "m", "data": ["d.txt"]})
        assert "simcse-cpu preset: expect a peak of about 13.2 GiB" in caplog.text


def test_train_simcse_cli_announces_the_peak_and_the_ram_available_before_training(
        tiny_model_dir, tmp_path):
    """The real CLI on a tiny model (one step): the announcement is logged before the data
    is read, with the preset's figure and a RAM reading that matches the machine's."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "llm2vec_rag.cli", "train", "simcse", "--config",
           "simcse-cpu", f"model={tiny_model_dir('llama', 'bytelevel')}", f"data=[{corpus}]",
           f"output_dir={tmp_path / 'out'}", "max_steps=1", "warmup_steps=0",
           "report_to=none"]
    before = machine_available()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    after = machine_available()
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if "simcse-cpu preset: expect a peak" in line)
    assert "about 13.2 GiB of RAM" in lines[at]
    assert any("SimCSE on" in line for line in lines[at + 1:])  # training came after
    assert not any("SimCSE on" in line for line in lines[:at])
    said = float(re.search(r"; ([0-9.]+) GiB available now", lines[at]).group(1)) * GIB
    assert min(before, after) - GIB < said < max(before, after) + GIB, (before, said, after)
    if said < (PEAK.gib - 0.1) * GIB:
        assert lines[at].startswith("WARNING") and "lower batch_size" in lines[at]
    elif said > (PEAK.gib + 0.1) * GIB:
        assert lines[at].startswith("INFO") and "less than that" not in lines[at]
