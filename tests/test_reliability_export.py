"""``--overwrite`` replaces only a previous export (never user files, the current folder or
the source model); interrupted exports leave no hidden staging folders behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from test_export_common import leftovers

from llm2vec_rag.cli import main
from llm2vec_rag.export import OutputExistsError, fuse_adapters
from llm2vec_rag.export.staging import MARKER


def fuse_cli(model: str, out, *extra: str) -> int:
    return main(["export", "fuse", "--model", model, "--out", str(out), "--device", "cpu",
                 *extra])


def test_overwrite_refuses_a_folder_of_user_files(tiny_model_dir, tmp_path, capsys):
    user = tmp_path / "notes"
    user.mkdir()
    (user / "thesis.txt").write_text("years of work", encoding="utf-8")
    assert fuse_cli(tiny_model_dir(), user, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "not an llm2vec-rag export" in err and "thesis.txt" in err
    assert sorted(os.listdir(user)) == ["thesis.txt"] and leftovers(tmp_path) == []


def test_overwrite_refuses_the_current_folder(tiny_model_dir, tmp_path, monkeypatch, capsys):
    out = fuse_adapters(tiny_model_dir(), tmp_path / "exp")
    monkeypatch.chdir(out)
    assert fuse_cli(tiny_model_dir(), ".", "--overwrite") == 2
    assert "current folder" in capsys.readouterr().err and (out / MARKER).is_file()


def test_out_is_never_the_source_model(tiny_model_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir(), tmp_path / "model")
    before = sorted(os.listdir(model))
    for out in (model, model / "sub"):
        assert fuse_cli(str(model), out, "--overwrite") == 2
        assert "own source" in capsys.readouterr().err
    assert sorted(os.listdir(model)) == before
    # A fused folder used as the source of the next export is protected the same way.
    fused = fuse_adapters(str(model), tmp_path / "fused")
    with pytest.raises(OutputExistsError, match="own source"):
        fuse_adapters(str(fused), fused, overwrite=True)


def test_every_export_is_marked_and_a_previous_export_is_replaced(tiny_model_dir, tmp_path):
    out = fuse_adapters(tiny_model_dir(), tmp_path / "fused")
    assert (out / MARKER).is_file()
    (out / "stray.bin").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="overwrite"):
        fuse_adapters(tiny_model_dir(), out)
    fuse_adapters(tiny_model_dir(), out, overwrite=True)
    assert not (out / "stray.bin").exists() and (out / MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (fuse_adapters(tiny_model_dir(), empty, overwrite=True) / MARKER).is_file()
    assert leftovers(tmp_path) == []


STAGE = r"""
import sys, time
from llm2vec_rag.export.staging import staged_output
with staged_output(sys.argv[1]) as tmp:
    (tmp / "model.safetensors").write_bytes(b"half-written")
    print("staged", flush=True)
    time.sleep(60)
"""


def staged_then(signum: int, out) -> int:
    """A real process in the middle of an export, sent ``signum``."""
    proc = subprocess.Popen([sys.executable, "-c", STAGE, str(out)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "staged"
    assert any(".partial-" in p.name for p in out.parent.iterdir())
    os.kill(proc.pid, signum)
    proc.wait(timeout=30)
    proc.stdout.close()
    return proc.returncode


def test_sigterm_mid_export_removes_its_staging_folder(tmp_path):
    assert staged_then(signal.SIGTERM, tmp_path / "out") == 128 + signal.SIGTERM
    assert leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


def test_after_sigkill_the_next_export_removes_the_stale_staging(tiny_model_dir, tmp_path):
    assert staged_then(signal.SIGKILL, tmp_path / "out") == -signal.SIGKILL
    assert len(leftovers(tmp_path)) == 1  # nothing can run on SIGKILL
    time.sleep(0.1)
    fuse_adapters(tiny_model_dir(), tmp_path / "out")
    assert leftovers(tmp_path) == [] and (tmp_path / "out" / MARKER).is_file()
