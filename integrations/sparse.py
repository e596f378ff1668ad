"""A BM25 sparse encoder: the lexical side of hybrid search in Qdrant.

Dense vectors from a small model miss exact terms (option flags, error codes, command names);
BM25 matches them. The encoder turns a text into ``(term id, weight)`` pairs:

- **Terms**: bm25s' tokenizer (``\\w+`` tokens, lowercased, its English stopword list) and
  a Snowball stemmer from PyStemmer (``running`` -> ``run``, ``--listed-incremental`` ->
  ``list``, ``increment``). Single characters are kept (``ls -l`` keeps ``l``).
- **Term ids**: CRC-32 of the stemmed term's UTF-8 bytes (``zlib.crc32``), an unsigned 32-bit
  id as Qdrant's sparse indices are; stable across processes, machines and Python versions,
  with no vocabulary to store. Two terms sharing an id (rare) have their weights added.
- **Documents**: BM25's term-frequency part, ``tf * (k1 + 1) / (tf + k1 * (1 - b + b *
  n_terms / avg_len))`` with a fixed ``avg_len``, so a text's vector never depends on the
  rest of the collection.
- **Queries**: weight 1 per distinct term (BM25's query side).
- **Document frequency** is left to Qdrant: the collection's sparse vector is created with
  ``modifier=Modifier.IDF`` (:func:`sparse_vector_params`), which weights query terms by
  IDF at search time. A collection can therefore grow without re-encoding anything.

fastembed's ``Bm25`` works the same way but downloads its stopword files from the Hugging
Face Hub on first use; this one needs nothing beyond its PyPI packages (extra ``[sparse]``).
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Any

from llm2vec_rag.errors import UsageError

__all__ = ["BM25SparseEncoder", "sparse_vector_params"]


class BM25SparseEncoder:
    """Texts -> Qdrant ``SparseVector``s with BM25 term weights (see the module docstring).

    ``language`` names a Snowball stemmer (``"english"``, ``"french"``, ... or ``None`` for
    no stemming); ``stopwords`` is a bm25s stopword list name (``"en"``, ``"fr"``...), a
    list of words, or ``None``. ``k1``/``b``/``avg_len`` are BM25's parameters; ``avg_len``
    is the typical chunk length in terms (after stopwords), fixed so vectors never change.
    """

    def __init__(self, language: str | None = "english", stopwords: str | list[str] | None = "en",
                 *, k1: float = 1.2, b: float = 0.75, avg_len: float = 128.0) -> None:
        try:
            import bm25s  # noqa: F401 - checked here so that a missing extra fails early
            import Stemmer
        except ImportError as err:
            raise ImportError(f"the BM25 sparse encoder needs PyStemmer and bm25s ({err}): "
                              f"pip install 'llm2vec-rag[sparse]'") from None
        for name, value in (("k1", k1), ("avg_len", avg_len)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UsageError(f"{name} must be a positive number, got {value!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b <= 1:
            raise UsageError(f"b must be a number in [0, 1], got {b!r}")
        if language is not None and language not in Stemmer.algorithms():
            raise UsageError(f"language={language!r} has no Snowball stemmer; choose one of "
                             f"{sorted(Stemmer.algorithms())} or None")
        self.language, self.stopwords = language, stopwords
        self.k1, self.b, self.avg_len = float(k1), float(b), float(avg_len)
        self._stem = Stemmer.Stemmer(language).stemWords if language else None

    def config(self) -> dict[str, Any]:
        """The settings that define the vectors: recorded with a collection, so that a
        search with other settings is refused and a change re-encodes the documents."""
        stop = self.stopwords if not isinstance(self.stopwords, list) else sorted(self.stopwords)
        return {"kind": "bm25", "hash": "crc32", "language": self.language, "stopwords": stop,
                "k1": self.k1, "b": self.b, "avg_len": self.avg_len}

    def terms(self, texts: list[str]) -> list[list[str]]:
        """The stemmed, stopword-filtered terms of each text, in order."""
        import bm25s

        texts = _check_texts(texts)
        if not texts:
            return []
        return bm25s.tokenize(texts, lower=True, token_pattern=r"(?u)\b\w+\b",
                              stopwords=self.stopwords or [], stemmer=self._stem,
                              return_ids=False, show_progress=False)

    def encode_documents(self, texts: list[str]) -> list[Any]:
        """One ``qdrant_client.models.SparseVector`` per text: BM25 term-frequency weights."""
        out = []
        for terms in self.terms(texts):
            norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_len)
            weights = {term: tf * (self.k1 + 1) / (tf + norm)
                       for term, tf in Counter(terms).items()}
            out.append(_vector(weights))
        return out

    def encode_queries(self, texts: list[str]) -> list[Any]:
        """One ``qdrant_client.models.SparseVector`` per query: weight 1 per distinct term
        (Qdrant's IDF modifier supplies the rest of BM25's score)."""
        return [_vector(dict.fromkeys(terms, 1.0)) for terms in self.terms(texts)]

    def __getstate__(self) -> dict:  # picklable (Ray actors): the stemmer is rebuilt
        return {k: v for k, v in self.__dict__.items() if k != "_stem"}

    def __setstate__(self, state: dict) -> None:
        import Stemmer

        self.__dict__.update(state)
        self._stem = Stemmer.Stemmer(self.language).stemWords if self.language else None

    def __repr__(self) -> str:
        return f"BM25SparseEncoder({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


def term_id(term: str) -> int:
    """The sparse index of a (stemmed) term: its CRC-32, an unsigned 32-bit integer."""
    return zlib.crc32(term.encode("utf-8"))


def sparse_vector_params(on_disk: bool = False) -> Any:
    """Qdrant's config for a BM25 sparse vector: IDF applied by Qdrant at query time."""
    from qdrant_client import models

    return models.SparseVectorParams(index=models.SparseIndexParams(on_disk=on_disk or None),
                                     modifier=models.Modifier.IDF)


def _vector(weights: dict[str, float]) -> Any:
    from qdrant_client import models

    merged: dict[int, float] = {}
    for term, weight in weights.items():
        idx = term_id(term)
        merged[idx] = merged.get(idx, 0.0) + weight
    ids = sorted(merged)
    return models.SparseVector(indices=ids, values=[merged[i] for i in ids])


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got a single string: wrap it in a "
                        "list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}")
    return texts
