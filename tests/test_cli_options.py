"""The CLI's surface: every option says what it does, ``--onnx`` only where it loads an ONNX
encoder, and ``encode -o`` writes the format its extension names or refuses it."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from llm2vec_rag.cli import build_parser, main

ONNX_COMMANDS = {"encode", "index", "search", "serve", "eval",  # they load via EncoderSpec
                 "train pairs"}  # mines hard negatives with any encoder


def commands(parser: argparse.ArgumentParser, path: tuple = ()):
    """(command path, its parser) for every leaf subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from commands(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [(name, a.option_strings or a.dest) for name, p in commands(build_parser())
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing


def test_each_command_is_offered_by_the_parser_built_for_it():
    """``main`` builds the parser for the command it runs, importing only that command's
    module (``command_modules``): each command must still be there, with its options."""
    full = dict(commands(build_parser()))
    for path, parser in full.items():
        own = dict(commands(build_parser(path.split()[0])))
        assert path in own, path
        assert [a.option_strings for a in own[path]._actions] == \
            [a.option_strings for a in parser._actions]


def test_onnx_is_offered_only_where_it_has_an_effect(capsys):
    offered = {name for name, p in commands(build_parser())
               if any("--onnx" in a.option_strings for a in p._actions)}
    assert offered == ONNX_COMMANDS
    with pytest.raises(SystemExit):  # exports read a PyTorch model: --onnx is not an option
        build_parser().parse_args(["export", "onnx", "--onnx", "--model", "m", "--out", "o"])
    assert "unrecognized arguments: --onnx" in capsys.readouterr().err


def test_encode_refuses_an_output_it_cannot_write(tmp_path, capsys):
    src = tmp_path / "texts.txt"
    src.write_text("x\n", encoding="utf-8")
    out = tmp_path / "vecs.parquet"
    # a model that does not exist: the output is checked before anything loads
    assert main(["encode", str(src), "-o", str(out), "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "cannot write .parquet" in err and ".npy" in err and ".jsonl" in err and ".csv" in err
    assert not out.exists()


def test_encode_writes_csv_and_exact_npy_names(tiny_model_dir, tmp_path):
    from llm2vec_rag import LLM2Vec

    texts = ["first text", "a second, longer text"]
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    model = tiny_model_dir("llama")
    expected = LLM2Vec.from_pretrained(model).encode(texts)
    csv, npy = tmp_path / "vecs.csv", tmp_path / "VECS.NPY"
    assert main(["encode", str(src), "-o", str(csv), "--model", model]) == 0
    np.testing.assert_allclose(np.loadtxt(csv, delimiter=","), expected, atol=1e-5)
    assert main(["encode", str(src), "-o", str(npy), "--model", model]) == 0
    np.testing.assert_allclose(np.load(npy), expected, atol=1e-5)
