"""Outputs never destroy inputs: ``encode -o`` and ``train pairs -o`` naming their own input are
refused (nothing written), and pair mining reads a compression bomb in bounded memory."""

from __future__ import annotations

import gzip
import os
import time

import pytest

from llm2vec_rag.cli import main
from llm2vec_rag.training.pair_sources import MAX_SOURCE_ENV, read_text
from llm2vec_rag.training.pairs import PairSettings, build_pairs

CORPUS = ('{"text": "Vectors live in a collection of points with payloads and ids."}\n'
          '{"text": "A query is embedded and compared with every stored vector."}\n')


def test_encode_refuses_to_write_over_its_input(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("text\nhello world\n", encoding="utf-8")
    before = src.read_bytes()
    os.symlink(src, tmp_path / "alias.csv")
    for output in (str(src), str(tmp_path / "alias.csv"), os.path.relpath(src)):
        assert main(["encode", str(src), "-o", output, "--model", "unused/never-loaded"]) == 2
        err = capsys.readouterr().err
        assert "is the input file" in err and "Traceback" not in err
    assert src.read_bytes() == before


def test_train_pairs_refuses_to_write_over_an_input(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(CORPUS, encoding="utf-8")
    before = corpus.read_bytes()
    rc = main(["train", "pairs", str(corpus), "-o", str(corpus), "--num-negatives", "0",
               "--consistency-k", "0"])
    assert rc == 2
    assert f"the output {corpus} is one of the inputs" in capsys.readouterr().err
    assert corpus.read_bytes() == before
    # a folder source whose walk would pick the output up (a re-run into the same folder)
    with pytest.raises(ValueError, match="is one of the inputs"):
        build_pairs([str(tmp_path)], str(corpus),
                    settings=PairSettings(num_negatives=0, consistency_k=0))
    assert corpus.read_bytes() == before


@pytest.fixture
def bomb(tmp_path):
    """8 MiB of zeros gzipped to a few KB: a compression bomb at test scale (cap set to 1 MiB)."""
    path = tmp_path / "huge.cor.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(8):
            f.write(b"\0" * 2**20)
    assert path.stat().st_size < 64 * 1024
    return path


def test_compression_bomb_is_refused_while_streaming(bomb, monkeypatch, tmp_path):
    monkeypatch.setenv(MAX_SOURCE_ENV, "1")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="more than 1 MiB.*compression bomb"):
        read_text(str(bomb))
    assert time.perf_counter() - start < 5
    with pytest.raises(ValueError, match=f"{bomb}: holds .* more than 1 MiB"):
        build_pairs([str(bomb)], str(tmp_path / "pairs.jsonl"),
                    settings=PairSettings(num_negatives=0, consistency_k=0))
    assert not (tmp_path / "pairs.jsonl").exists()
    monkeypatch.setenv(MAX_SOURCE_ENV, "16")  # a genuine big file: raise the cap
    assert len(read_text(str(bomb))) == 8 * 2**20


def test_text_reading_is_unchanged(tmp_path):
    """Block-wise reading keeps what text mode gave: UTF-8, universal newlines."""
    path = tmp_path / "mixed.txt"
    path.write_bytes("caf\u00e9\r\nline two\rthree\n".encode() + b"\xff")
    assert read_text(str(path)) == "caf\u00e9\nline two\nthree\n\ufffd"
