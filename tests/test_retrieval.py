"""BEIR-folder retrieval metrics: checked against a hand computation, and the eval CLI."""

from __future__ import annotations

import json
import math

import pytest

from llm2vec_rag.cli import main
from llm2vec_rag.training.retrieval import (
    evaluate_beir,
    evaluate_beir_instructions,
    metrics,
    read_beir,
)
from tiny import CORPUS


def write_beir(folder, corpus: dict, queries: dict, qrels: list[tuple[str, str, int]]):
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i, (title, text) in corpus.items():
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for i, text in queries.items():
            f.write(json.dumps({"_id": i, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_metrics_by_hand():
    qrels = {"q1": {"d1": 2, "d3": 1}, "q2": {"d4": 1}, "q3": {"d5": 1}}
    ranked = {"q1": ["d2", "d1", "d4", "d3"], "q2": ["d4", "d1"], "q3": ["d1", "d2", "d3"]}
    got = metrics(ranked, qrels, k_values=(2, 10))
    # q1: DCG = 2/log2(3) + 1/log2(5); ideal = 2/log2(2) + 1/log2(3)
    ndcg_q1 = (2 / math.log2(3) + 1 / math.log2(5)) / (2 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg_q1 + 1 + 0) / 3)
    assert got["mrr@10"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert got["recall@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert got["recall@10"] == pytest.approx((1 + 1 + 0) / 3)


def test_evaluate_beir_end_to_end(tmp_path, tiny_encoder):
    """Each query is a document's exact text (cosine 1: ranked first), one with two relevant
    documents of which only the identical one can be assured the top rank."""
    corpus = {f"d{i}": ("", text) for i, text in enumerate(CORPUS)}
    queries = {"q0": CORPUS[0], "q1": CORPUS[3], "q2": CORPUS[5]}
    folder = write_beir(tmp_path / "beir", corpus, queries,
                        [("q0", "d0", 1), ("q1", "d3", 1), ("q2", "d5", 1)])
    got = evaluate_beir(tiny_encoder, folder, instruction="")
    assert got["ndcg@10"] == pytest.approx(1) and got["mrr@10"] == pytest.approx(1)
    assert got["recall@10"] == got["recall@100"] == pytest.approx(1)
    assert got["queries"] == 3 and got["documents"] == len(CORPUS)


class CountingEncoder:
    """The real tiny encoder, counting how many texts each side encodes."""

    def __init__(self, encoder) -> None:
        self.encoder, self.documents, self.queries = encoder, 0, 0

    def encode_documents(self, texts, **kwargs):
        self.documents += len(texts)
        return self.encoder.encode_documents(texts, **kwargs)

    def encode_queries(self, texts, **kwargs):
        self.queries += len(texts)
        return self.encoder.encode_queries(texts, **kwargs)


def test_several_instructions_encode_the_documents_once(tmp_path, tiny_encoder):
    corpus = {f"d{i}": ("", text) for i, text in enumerate(CORPUS)}
    queries = {"q0": CORPUS[0][:20], "q1": CORPUS[3][:15]}
    folder = write_beir(tmp_path / "beir", corpus, queries, [("q0", "d0", 1), ("q1", "d3", 1)])
    settings = ["Retrieve the passage", ""]
    counting = CountingEncoder(tiny_encoder)
    together = evaluate_beir_instructions(counting, folder, settings)
    assert counting.documents == len(CORPUS) and counting.queries == 2 * len(queries)
    alone = [evaluate_beir(tiny_encoder, folder, instruction=ins) for ins in settings]
    assert together == alone  # the same numbers as one evaluation per instruction


def test_titles_and_errors(tmp_path):
    folder = write_beir(tmp_path / "b", {"d1": ("Title", "body")}, {"q1": "x"},
                        [("q1", "d1", 1)])
    corpus, queries, qrels = read_beir(folder)
    assert corpus == {"d1": "Title body"} and qrels == {"q1": {"d1": 1}}
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tmissing\t1\n")
    with pytest.raises(ValueError, match=r"test.tsv:2: document id 'missing'"):
        read_beir(folder)
    with pytest.raises(FileNotFoundError, match="qrels/dev.tsv"):
        read_beir(folder, split="dev")


def test_eval_cli_with_and_without_instruction(tmp_path, tiny_model_dir, capsys):
    corpus = {f"d{i}": ("", text) for i, text in enumerate(CORPUS)}
    folder = write_beir(tmp_path / "beir", corpus, {"q0": CORPUS[0]}, [("q0", "d0", 1)])
    assert main(["eval", "--model", tiny_model_dir(), "--device", "cpu", "--beir", str(folder),
                 "--instruction", "Given a query retrieve passages"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["instruction"] for r in rows] == ["Given a query retrieve passages", None]
    assert rows[1]["ndcg@10"] == 1.0 and set(rows[0]) >= {"mrr@10", "recall@10", "recall@100"}
