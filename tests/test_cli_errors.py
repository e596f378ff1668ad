"""The CLI's exit codes: bad input and environment in one line (exit 2), a bug with its
traceback (exit 1), and ``LLM2VEC_RAG_DEBUG=1`` showing every traceback.

The command line runs in a subprocess, as a user runs it, so the exit code and stderr are
the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from llm2vec_rag import SetupError, UsageError
from llm2vec_rag.cli import main


def _cli(*args: str, env: dict[str, str] | None = None, code: str | None = None):
    """``llm2vec-rag ARGS`` in a fresh interpreter (``code`` runs before ``main``)."""
    script = textwrap.dedent(code or "") + "\nimport sys\nfrom llm2vec_rag import cli\n" \
        "sys.exit(cli.main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "LLM2VEC_RAG_DEBUG": "", **(env or {})})


@pytest.fixture
def texts(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("hello\n", encoding="utf-8")
    return str(path)


def test_a_usage_error_is_one_line_and_exit_code_2(texts, tmp_path):
    done = _cli("encode", texts, "-o", str(tmp_path / "v.txt"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"llm2vec-rag encode: error: -o {tmp_path / 'v.txt'}: cannot write .txt files; use "
        ".npy (a float32 matrix), .jsonl ({\"text\", \"embedding\"} per line), .csv (one "
        "vector per line, comma-separated, in input order)"]


def test_a_missing_input_file_is_one_line(tmp_path):
    """OSError (files, network) is the user's environment too."""
    done = _cli("encode", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "v.npy"))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert "missing.txt" in done.stderr


# A command whose own work fails the way a shape bug does: numpy raises ValueError, torch
# RuntimeError. Neither is bad input, so neither may pass for one.
BUGS = {
    "numpy ValueError": ("import numpy as np\n"
                         "def cmd_encode(args):\n"
                         "    return np.zeros((2, 3)) @ np.zeros((2, 3))\n",
                         "ValueError: matmul"),
    "torch RuntimeError": ("import torch\n"
                           "def cmd_encode(args):\n"
                           "    return torch.zeros(2, 3) @ torch.zeros(2, 3)\n",
                           "RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
}


@pytest.mark.parametrize("bug", BUGS, ids=list(BUGS))
def test_a_bug_in_a_command_surfaces_with_its_traceback(texts, tmp_path, bug):
    command, says = BUGS[bug]
    # the parser binds cmd_encode when it is built, so the replacement is what `encode` runs
    done = _cli("encode", texts, "-o", str(tmp_path / "v.npy"),
                code=command + "from llm2vec_rag import cli\ncli.cmd_encode = cmd_encode\n")
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith(says), done.stderr
    assert ": error: " not in done.stderr  # not dressed up as a usage error
    assert not os.path.exists(tmp_path / "v.npy")


def test_debug_shows_the_traceback_of_a_usage_error(texts, tmp_path):
    done = _cli("encode", texts, "-o", str(tmp_path / "v.txt"),
                env={"LLM2VEC_RAG_DEBUG": "1"})
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "llm2vec_rag.errors.UsageError: -o" in done.stderr


def test_the_cli_raises_the_dedicated_types(texts, tmp_path, monkeypatch):
    """Library callers that catch ValueError / RuntimeError keep working."""
    monkeypatch.setenv("LLM2VEC_RAG_DEBUG", "1")
    with pytest.raises(UsageError, match="cannot write .txt files") as raised:
        main(["encode", texts, "-o", str(tmp_path / "v.txt")])
    assert isinstance(raised.value, ValueError)
    with pytest.raises(UsageError, match="--port must be between 0 and 65535"):
        main(["serve", "--model", str(tmp_path), "--port", "70000"])
    assert issubclass(SetupError, RuntimeError)


def _no_model_type(folder):
    (folder / "config.json").write_text("{}", encoding="utf-8")


def _weights_of_another_size(folder):
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["hidden_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


# Bad model files that transformers itself rejects, with a ValueError or RuntimeError: the
# loader names the model and the part, so they stay one line (exit code 2).
BROKEN_MODELS = {
    "config without model_type": (_no_model_type, "config: Unrecognized model"),
    "weights of other shapes": (_weights_of_another_size,
                                "weights: some tensors have other shapes than its config.json"),
}


@pytest.mark.parametrize("case", BROKEN_MODELS, ids=list(BROKEN_MODELS))
def test_a_model_transformers_rejects_is_one_line(tiny_model_dir, texts, tmp_path, capsys, case):
    break_it, says = BROKEN_MODELS[case]
    model = shutil.copytree(tiny_model_dir("llama"), tmp_path / "model")
    break_it(model)
    assert main(["encode", texts, "-o", str(tmp_path / "v.npy"), "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ": error: " in ln]
    assert f"error: {model}: transformers cannot read this model's {says}" in line
    assert "Re-download" in line


def test_a_file_that_is_not_gguf_is_one_line(texts, tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a gguf file" * 10)
    assert main(["encode", texts, "-o", str(tmp_path / "v.npy"), "--model", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{fake}: transformers cannot read this model's tokenizer" in err
    assert "GGUF magic bytes" in err


def test_our_warnings_are_one_line(tiny_model_dir, tmp_path):
    """A truncated text is worth a line, not Python's ``cli.py:90: UserWarning`` plus a line
    of our source."""
    src = tmp_path / "texts.txt"
    src.write_text("hello\n" + "word " * 400 + "\n", encoding="utf-8")
    done = _cli("encode", str(src), "-o", str(tmp_path / "v.npy"), "--model",
                tiny_model_dir("llama"), "--max-length", "32")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        "llm2vec-rag encode: warning: 1 of 2 texts exceed max_length=32 tokens"), lines
    assert "UserWarning" not in done.stderr and "cli.py" not in done.stderr
    assert len(lines) == 2 and lines[1].startswith("encoded 2 texts ->"), lines


def test_a_librarys_warnings_keep_their_origin():
    import warnings

    from llm2vec_rag.cli import one_line_warnings

    shown: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        shown.append(f"{filename}:{lineno}: {category.__name__}: {message}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        with one_line_warnings("llm2vec-rag encode"):
            warnings.warn_explicit("from elsewhere", UserWarning, "/site/other/pkg.py", 3)
        assert warnings.showwarning is record  # put back on the way out
    assert shown == ["/site/other/pkg.py:3: UserWarning: from elsewhere"]
