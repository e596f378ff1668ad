"""Unencodable text is a bad record (skipped, reported, the rest indexed); encode() names it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm2vec_rag.integrations.qdrant import QdrantIndexer
from tiny import CORPUS


def test_lone_surrogate_records_are_skipped_and_the_batch_survives(tiny_encoder, tmp_path):
    f = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(CORPUS[:5])]
    lines.insert(2, '{"id": "bad", "text": "broken \\ud800 text"}')  # valid JSON, bad Unicode
    lines.insert(4, '{"id": "meta", "text": "fine", "title": "x\\udfff"}')
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with QdrantIndexer(tiny_encoder, path=":memory:", batch_size=64) as ix:
        report = ix.index(f, show_progress=False)
        memory = ix.index(["good text", "bad \ud800"], show_progress=False)
        assert (report.indexed, report.skipped) == (5, 2) and report.chunks == 5
        where = dict(report.skipped_examples)
        assert "lone surrogate" in where[f"{f}:3"] and where[f"{f}:3"].startswith("text")
        assert where[f"{f}:5"].startswith("metadata")
        assert (memory.indexed, memory.skipped) == (1, 1)
        assert memory.skipped_examples[0][0] == "items[1]"
        assert ix.count() == 6


def test_encode_names_the_offending_item(tiny_encoder):
    with pytest.raises(ValueError, match=r"texts\[3\] contains a lone surrogate '\\ud800' at "
                                         r"character 4"):
        tiny_encoder.encode(["a", "b", "c", "bad \ud800"])
    with pytest.raises(ValueError, match=r"texts\[0\] contains a lone surrogate"):
        tiny_encoder.encode("\udc80")
    assert tiny_encoder.encode(["café ünïcode ✓"]).shape == (1, tiny_encoder.dim)


@pytest.mark.parametrize("data", [b"hello", bytearray(b"hello")])
def test_encode_bytes_says_decode_first(tiny_encoder, data):
    with pytest.raises(TypeError, match="not text: decode it first"):
        tiny_encoder.encode(data)
    with pytest.raises(TypeError, match=r"texts\[1\] is .*decode them first"):
        tiny_encoder.encode(["ok", data])
    assert isinstance(tiny_encoder.encode("hello"), np.ndarray)
