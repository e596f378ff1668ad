"""Diagnostic: how much of the Lee score is the anisotropy of mean-pooled vectors?

Scores each encoder on Lee as is, and after subtracting the mean vector of 100 Lee
background articles (training text, not evaluation text) before the cosine.

    .venv/bin/python benchmarks/lee_centering.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA, smollm2_gguf  # noqa: E402


def score(vectors: np.ndarray, ratings: np.ndarray) -> float:
    from llm2vec_rag.training.evaluate import pairs_spearman

    return pairs_spearman(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), ratings)


def main() -> None:
    from llm2vec_rag import LLM2Vec
    from llm2vec_rag.default_model import UNSUPERVISED_ADAPTERS
    from llm2vec_rag.training.evaluate import read_lee

    docs, ratings = read_lee(DATA)
    with open(os.path.join(DATA, "lee_background.cor"), encoding="latin-1") as f:
        background = [line.strip() for line in f if line.strip()][:100]
    for name, adapters, bidirectional in [("causal", [], False),
                                          ("+ MNTP", UNSUPERVISED_ADAPTERS[:1], True),
                                          ("+ MNTP + SimCSE", UNSUPERVISED_ADAPTERS, True)]:
        encoder = LLM2Vec.from_pretrained(smollm2_gguf(), adapters=adapters, device="cpu",
                                          enable_bidirectional=bidirectional)
        vectors, mean = encoder.encode(docs, batch_size=8), encoder.encode(background).mean(0)
        print(f"{name:16s} plain {score(vectors, ratings):.4f}  "
              f"centred {score(vectors - mean, ratings):.4f}", flush=True)


if __name__ == "__main__":
    main()
