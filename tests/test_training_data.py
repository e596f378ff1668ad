"""Training data: sources, sentence splitting, MNTP blocks, the supervised schema, and the
one-dataset-per-batch sampler."""

from __future__ import annotations

import json

import pytest

from llm2vec_rag.training.data import load_examples, load_texts, split_sentences, token_blocks
from llm2vec_rag.training.supervised import OneDatasetPerBatchSampler


def test_text_jsonl_and_saved_dataset_sources(tmp_path):
    import datasets

    (tmp_path / "a.txt").write_text("first line\n\n  second line  \n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"body": "from json"}\n\n{"body": "again"}\n')
    datasets.Dataset.from_dict({"body": ["from disk"]}).save_to_disk(str(tmp_path / "ds"))
    texts = load_texts([str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl"),
                        str(tmp_path / "ds")], text_field="body")
    assert texts == ["first line", "second line", "from json", "again", "from disk"]
    assert load_texts([str(tmp_path / "a.txt")], max_texts=1) == ["first line"]


def test_source_errors_are_clear(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="record 1 has no 'text' field"):
        load_texts([str(tmp_path / "b.jsonl")])
    (tmp_path / "bad.jsonl").write_text('{"text": "x"\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: invalid JSON"):
        load_texts([str(tmp_path / "bad.jsonl")])
    with pytest.raises(FileNotFoundError, match="hf:NAME"):
        load_texts([str(tmp_path / "nope.txt")])
    # Latin-1 text stops at its first bad line instead of training on replacement characters
    (tmp_path / "latin1.txt").write_bytes("fine\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt:2: not UTF-8 .*iconv -f latin1"):
        load_texts([str(tmp_path / "latin1.txt")])
    (tmp_path / "list.jsonl").write_text('["text"]\n')
    with pytest.raises(ValueError, match="list.jsonl:1: expected a JSON object"):
        load_texts([str(tmp_path / "list.jsonl")])


def test_split_sentences_keeps_abbreviation_free_sentences_and_drops_short_ones():
    text = 'The cat sat on the mat. It was warm! "Why?" she asked. 3 dogs barked loudly here.'
    assert split_sentences([text], min_words=3) == [
        "The cat sat on the mat.", "It was warm!", '"Why?" she asked.',
        "3 dogs barked loudly here."]
    assert split_sentences(["Too short. Also."], min_words=3) == []


def test_token_blocks_are_full_and_too_short_corpora_fail(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    blocks = token_blocks(["the quick brown fox jumps"] * 10, tok, 8)
    assert blocks and all(len(b) == 8 for b in blocks)
    assert tok.eos_token_id in sum(blocks, [])  # documents are separated
    with pytest.raises(ValueError, match="fewer than one block"):
        token_blocks(["fox"], tok, 64)


def test_supervised_schema(tmp_path):
    rows = [{"query": "q1", "positive": "p1", "negatives": ["n1", "n2"], "dataset": "A"},
            {"query": "q2", "positive": "p2", "negative": "n3", "instruction": " Find it "}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    a, b = load_examples([str(tmp_path / "pairs.jsonl")], num_negatives=1,
                         default_instruction="Default")
    assert (a.negatives, a.dataset, a.instruction) == (["n1"], "A", "Default")
    assert (b.negatives, b.dataset, b.instruction) == (["n3"], "pairs", "Find it")
    with pytest.raises(ValueError, match="record 2: 1 negatives, num_negatives=2"):
        load_examples([str(tmp_path / "pairs.jsonl")], num_negatives=2)
    (tmp_path / "bad.jsonl").write_text('{"query": "q", "positive": ""}\n')
    with pytest.raises(ValueError, match="record 1: missing or empty 'positive'"):
        load_examples([str(tmp_path / "bad.jsonl")], num_negatives=0)


def test_every_batch_comes_from_one_dataset():
    names = ["a"] * 10 + ["b"] * 7 + ["c"] * 2
    sampler = OneDatasetPerBatchSampler(names, batch_size=3, seed=1)
    order = list(sampler)
    assert len(order) == len(sampler) == 15 and len(set(order)) == 15  # incomplete runs dropped
    batches = [order[i: i + 3] for i in range(0, 15, 3)]
    assert all(len({names[i] for i in batch}) == 1 for batch in batches)
    sampler.set_epoch(1)
    assert list(sampler) != order  # reshuffled per epoch
    with pytest.raises(ValueError, match="No dataset has a full batch"):
        OneDatasetPerBatchSampler(["a", "b"], batch_size=2)
