"""Soup weights vs Lee and held-out retrieval: for each weight list, `soup_adapters` of the
given supervised runs (all trained on the bundled MNTP + SimCSE model), then Lee Spearman
(all 1,225 pairs, and the pairs within documents 1-25 and 26-50) and nDCG@10 with and without
the default query instruction on each BEIR folder. One JSON line per soup.

    .venv/bin/python benchmarks/soup_sweep.py \\
        --adapter benchmarks/results/issue14/supervised-200 \\
        --adapter benchmarks/results/issue14/supervised-360-minilm \\
        --weights 1,0.7 --weights 0.5,0.5 --beir data/heldout/debian-reference \\
        --out benchmarks/results/issue14/soup-sweep.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from llm2vec_rag import LLM2Vec
from llm2vec_rag.default_model import QUERY_INSTRUCTION, UNSUPERVISED_ADAPTERS, smollm2_gguf
from llm2vec_rag.training import soup_adapters
from llm2vec_rag.training.evaluate import pairs_spearman, read_lee
from llm2vec_rag.training.retrieval import evaluate_beir_instructions

HALVES = {"lee_1_25": np.arange(0, 25), "lee_26_50": np.arange(25, 50)}


def lee_scores(model: LLM2Vec, data_dir: str) -> dict[str, float]:
    """Lee Spearman over all pairs and within each half, the documents encoded once."""
    docs, ratings = read_lee(data_dir)
    vectors = model.encode(docs, batch_size=16, normalize=True)
    return {name: round(pairs_spearman(vectors[idx], ratings[np.ix_(idx, idx)]), 4)
            for name, idx in {"lee": np.arange(len(docs)), **HALVES}.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", action="append", required=True,
                        help="a supervised run's adapter (the soup's ingredients, in order)")
    parser.add_argument("--weights", action="append", required=True,
                        help="comma-separated weights, one per --adapter; repeat for a grid")
    parser.add_argument("--beir", action="append", default=[], help="held-out BEIR folder")
    parser.add_argument("--data-dir", default="data/gensim", help="folder with lee.cor")
    parser.add_argument("--out", default=None, help="also append the JSON lines here")
    args = parser.parse_args()
    gguf = smollm2_gguf()
    for spec in args.weights:
        weights = [float(w) for w in spec.split(",")]
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as soup:
            chain = LLM2Vec.from_pretrained(gguf, adapters=UNSUPERVISED_ADAPTERS, device="cpu")
            soup_adapters(chain.model, args.adapter, weights, soup)
            model = LLM2Vec.from_pretrained(gguf, adapters=[*UNSUPERVISED_ADAPTERS, soup],
                                            device="cpu")
        row = {"adapters": args.adapter, "weights": weights, **lee_scores(model, args.data_dir)}
        for folder in args.beir:
            with_, without = evaluate_beir_instructions(model, folder, [QUERY_INSTRUCTION, ""],
                                                        batch_size=16)
            row[os.path.basename(folder.rstrip("/"))] = {
                "ndcg@10": round(with_["ndcg@10"], 4), "recall@10": round(with_["recall@10"], 4),
                "ndcg@10_no_instruction": round(without["ndcg@10"], 4)}
        row["seconds"] = round(time.perf_counter() - start)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
