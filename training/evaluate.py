"""Lee document similarity (Lee, Pincombe & Welsh, 2005): does the encoder rank document pairs
as people do? Spearman correlation between the cosine similarity of the 50 documents' vectors
and the mean human rating, over the 1,225 pairs of the upper triangle (diagonal excluded).

Files (gensim's test data, ``scripts/fetch_data.sh``): ``lee.cor``, one document per line,
Latin-1; ``similarities0-1.txt``, a 50x50 matrix of ratings in [0, 1], upper triangle filled.
"""

from __future__ import annotations

import os

import numpy as np

LEE_DOCS = "lee.cor"
LEE_RATINGS = "similarities0-1.txt"


def read_lee(data_dir: str = "data/gensim") -> tuple[list[str], np.ndarray]:
    """(50 documents, [50, 50] ratings), with a clear error if the files are missing/mismatched."""
    docs_path, ratings_path = (os.path.join(data_dir, n) for n in (LEE_DOCS, LEE_RATINGS))
    for path in (docs_path, ratings_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: run scripts/fetch_data.sh or pass "
                                    "data_dir= (gensim's test_data folder)")
    with open(docs_path, encoding="latin-1") as f:
        docs = [line.strip() for line in f if line.strip()]
    ratings = np.loadtxt(ratings_path)
    if ratings.shape != (len(docs), len(docs)):
        raise ValueError(f"{ratings_path} is {ratings.shape}, expected a square matrix for the "
                         f"{len(docs)} documents of {docs_path}")
    return docs, ratings


def lee_spearman(encoder, data_dir: str = "data/gensim", batch_size: int = 8) -> float:
    """Spearman of pairwise cosine similarities vs human ratings on the Lee documents.

    ``encoder`` is anything with ``encode(texts, batch_size=, normalize=)`` (LLM2Vec, the ONNX
    Runtime encoder). Documents are encoded without an instruction.
    """
    from scipy.stats import spearmanr  # the train extra's dependency

    docs, ratings = read_lee(data_dir)
    vectors = encoder.encode(docs, batch_size=batch_size, normalize=True)  # [50, D]
    cosine = vectors @ vectors.T  # [50, 50]
    upper = np.triu_indices(len(docs), k=1)  # 1,225 pairs
    return float(spearmanr(cosine[upper], ratings[upper]).statistic)
