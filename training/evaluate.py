"""Lee document similarity (Lee, Pincombe & Welsh, 2005): does the encoder rank document pairs
as people do? Spearman correlation between the cosine similarity of the 50 documents' vectors
and the mean human rating, over the 1,225 pairs of the upper triangle (diagonal excluded).

Files (gensim's test data, ``scripts/fetch_data.sh``): ``lee.cor``, one document per line,
Latin-1; ``similarities0-1.txt``, a 50x50 matrix of ratings in [0, 1], upper triangle filled.
"""

from __future__ import annotations

import os

import numpy as np

from llm2vec_rag.errors import UsageError

LEE_DOCS = "lee.cor"
LEE_RATINGS = "similarities0-1.txt"
DATA_ENV = "LLM2VEC_RAG_DATA"
# The checkout this package runs from (an editable install): where scripts/fetch_data.sh
# writes data/gensim, whatever the current folder.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_data_dir() -> str:
    """``$LLM2VEC_RAG_DATA``, else the checkout's ``data/gensim`` (not the current folder's)."""
    return os.environ.get(DATA_ENV) or os.path.join(_CHECKOUT, "data", "gensim")


def read_lee(data_dir: str | None = None, flag: str = "data_dir=") -> tuple[list[str], np.ndarray]:
    """(50 documents, [50, 50] ratings), with a clear error if the files are missing/mismatched.
    ``flag`` is how the caller's user names the folder (the CLI: ``--data-dir``)."""
    data_dir = data_dir or default_data_dir()
    docs_path, ratings_path = (os.path.join(data_dir, n) for n in (LEE_DOCS, LEE_RATINGS))
    for path in (docs_path, ratings_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found: run scripts/fetch_data.sh (gensim's test data into "
                f"{os.path.join(_CHECKOUT, 'data', 'gensim')}), or pass {flag} (or set "
                f"{DATA_ENV}) a folder holding {LEE_DOCS} and {LEE_RATINGS}")
    with open(docs_path, encoding="latin-1") as f:
        docs = [line.strip() for line in f if line.strip()]
    ratings = np.loadtxt(ratings_path)
    if ratings.shape != (len(docs), len(docs)):
        raise UsageError(f"{ratings_path} is {ratings.shape}, expected a square matrix for the "
                         f"{len(docs)} documents of {docs_path}")
    return docs, ratings


def lee_spearman(encoder, data_dir: str | None = None, batch_size: int = 8) -> float:
    """Spearman of pairwise cosine similarities vs human ratings on the Lee documents
    (``data_dir``: default ``default_data_dir()``).

    ``encoder`` is anything with ``encode(texts, batch_size=, normalize=)`` (LLM2Vec, the ONNX
    Runtime encoder). Documents are encoded without an instruction.
    """
    docs, ratings = read_lee(data_dir)
    vectors = encoder.encode(docs, batch_size=batch_size, normalize=True)  # [50, D]
    return pairs_spearman(vectors, ratings)


def pairs_spearman(vectors: np.ndarray, ratings: np.ndarray) -> float:
    """Spearman of the cosine similarities of unit ``vectors`` [n, D] vs ``ratings`` [n, n],
    over the n(n-1)/2 pairs of the upper triangle (for Lee's 50 documents: 1,225)."""
    from scipy.stats import spearmanr  # the train extra's dependency

    cosine = vectors @ vectors.T  # [n, n]
    upper = np.triu_indices(len(vectors), k=1)
    return float(spearmanr(cosine[upper], ratings[upper]).statistic)
