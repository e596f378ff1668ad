"""Word-level evaluation as in the LLM2Vec paper (Section 3): linear probes on frozen token
representations.

The paper trains a linear classifier on each word's token representations (CoNLL-2003
chunking, NER, POS) and finds that bidirectional attention alone hurts, while MNTP training
recovers and surpasses the causal model. CoNLL-2003 cannot be had offline, so the gold data
here is WordNet's example sentences (``llm2vec_rag.training.wordnet``):

- ``pos``: the target word's part of speech in its sentence (noun, verb, adjective, adverb;
  balanced, chance 25%), a logistic-regression probe on the word's vector;
- ``wic``: two sentences with the same lemma and part of speech, same sense or not (balanced,
  chance 50%), a logistic-regression probe on the pair features ``[a * b, |a - b|]``; the
  accuracy of a threshold on the cosine similarity of the two (standardised) vectors, the best
  one on the training pairs, is reported beside it.

A word's vector is the mean of its tokens' vectors from ``encode(...,
output_value="token_embeddings", return_offsets=True)``: the model's last hidden state (the
layer every encode returns), instruction-free. Vectors are standardised with the training
side's mean and deviation; the probe is scikit-learn's L2 logistic regression, its strength
picked from ``C_VALUES`` by 3-fold cross-validation on the training side (deterministic:
lbfgs, unshuffled folds). Train and test words are disjoint (split by lemma).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llm2vec_rag.errors import UsageError
from llm2vec_rag.late_chunking import span_tokens

from .wordnet import (
    POS_LABELS,
    WordExample,
    pos_sample,
    read_wordnet_examples,
    split_by_lemma,
    wic_pairs,
)

TASKS = ("pos", "wic")
C_VALUES = (0.001, 0.01, 0.1, 1.0)
LAYER = "last hidden state"


def word_level_probe(encoder, task: str = "pos", wordnet_dir: str | None = None,
                     train_size: int = 2000, test_size: int = 1000, seed: int = 0,
                     batch_size: int = 16, test_fraction: float = 0.3) -> dict:
    """Accuracy of a linear probe on ``encoder``'s frozen token vectors for ``task``
    (``"pos"`` or ``"wic"``, module docstring), trained on up to ``train_size`` items and
    tested on up to ``test_size`` items whose lemmas it never saw.

    ``encoder`` is anything with ``encode(texts, output_value="token_embeddings",
    return_offsets=True)`` (LLM2Vec). ``wordnet_dir``: WordNet's ``data.*`` files (default
    ``wordnet.default_wordnet_dir()``).
    """
    if task not in TASKS:
        raise UsageError(f"task must be one of {TASKS}, got {task!r}")
    if train_size < 8 or test_size < 4:
        raise UsageError(f"train_size >= 8 and test_size >= 4 needed, got {train_size}, "
                         f"{test_size}")
    train_words, test_words = split_by_lemma(read_wordnet_examples(wordnet_dir), test_fraction)
    if task == "pos":
        train, test = pos_sample(train_words, train_size, seed), pos_sample(test_words,
                                                                          test_size, seed)
        _check_sizes(task, train, test, lambda e: e.pos)
        vecs = target_vectors(encoder, train + test, batch_size)
        scaled = _standardise(vecs[:len(train)], vecs)
        labels = np.array([POS_LABELS.index(e.pos) for e in train + test])
        probe = fit_probe(scaled[:len(train)], labels[:len(train)])
        accuracy = float((probe.predict(scaled[len(train):]) == labels[len(train):]).mean())
        result = {"accuracy": accuracy, "chance": 1 / len(POS_LABELS)}
    else:
        train, test = wic_pairs(train_words, train_size, seed), wic_pairs(test_words, test_size,
                                                                         seed)
        _check_sizes(task, train, test, lambda p: p[2])
        words = [w for a, b, _ in train + test for w in (a, b)]
        vecs = target_vectors(encoder, words, batch_size)  # [2 * pairs, D], a/b interleaved
        scaled = _standardise(vecs[:2 * len(train)], vecs)
        a, b = scaled[0::2], scaled[1::2]
        features = np.concatenate([a * b, np.abs(a - b)], axis=1)
        labels = np.array([label for _, _, label in train + test])
        n = len(train)
        probe = fit_probe(features[:n], labels[:n])
        accuracy = float((probe.predict(features[n:]) == labels[n:]).mean())
        cosine = _cosine(a, b)
        threshold = best_threshold(cosine[:n], labels[:n])
        result = {"accuracy": accuracy, "chance": 0.5,
                  "cosine_threshold_accuracy": float(((cosine[n:] >= threshold)
                                                      == labels[n:]).mean()),
                  "cosine_threshold": round(float(threshold), 4)}
    result.update(task=task, train=len(train), test=len(test),
                  train_lemmas=len({_lemma(x) for x in train}),
                  test_lemmas=len({_lemma(x) for x in test}),
                  probe_C=probe.C, layer=LAYER, seed=seed)
    return result


def target_vectors(encoder, examples: Sequence[WordExample], batch_size: int = 16
                   ) -> np.ndarray:
    """``[len(examples), dim]``: each example's target word, the mean of the vectors of the
    tokens that overlap its characters (each distinct sentence encoded once)."""
    texts = list(dict.fromkeys(e.text for e in examples))
    row = {t: i for i, t in enumerate(texts)}
    tokens, offsets = encoder.encode(texts, output_value="token_embeddings",
                                     return_offsets=True, batch_size=batch_size)
    out = np.empty((len(examples), tokens[0].shape[1] if tokens else 0), np.float32)
    for k, e in enumerate(examples):
        i = row[e.text]
        s, t = span_tokens(offsets[i], (e.start, e.end), where=f"example {e.text!r}")
        out[k] = tokens[i][s:t].mean(axis=0)
    return out


def fit_probe(features: np.ndarray, labels: np.ndarray):
    """An L2 logistic regression on ``features``, its strength ``C`` the best of ``C_VALUES``
    by 3-fold cross-validation (ties: the stronger regularisation), fitted on all of them;
    scikit-learn's ``LogisticRegression`` (``.predict``, ``.C``)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_score
    except ImportError as e:  # a dependency of the [train] extra
        raise ImportError("the word-level probe needs scikit-learn: pip install "
                          "'llm2vec-rag[train]'") from e
    scores = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000), features, labels,
                                 cv=3).mean() for c in C_VALUES}
    best = max(C_VALUES, key=lambda c: (scores[c], -c))
    return LogisticRegression(C=best, max_iter=3000).fit(features, labels)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold (``score >= t`` means label 1) with the best accuracy on
    ``(scores, labels)``; ties go to the lowest threshold."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2,
                                 [order[-1] + 1e-6]])
    accuracy = [((scores >= t) == labels).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def _standardise(train: np.ndarray, values: np.ndarray) -> np.ndarray:
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (values - mean) / np.where(std > 0, std, 1.0)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def _lemma(item) -> str:
    return item.lemma if isinstance(item, WordExample) else item[0].lemma


def _check_sizes(task: str, train: list, test: list, label) -> None:
    """Both sides need every class: a probe trained or tested on one class measures nothing."""
    for side, items in (("train", train), ("test", test)):
        classes = {label(x) for x in items}
        if len(classes) < 2 or len(items) < 4:
            raise UsageError(f"word-level task {task!r}: the {side} side holds {len(items)} "
                             f"items of {len(classes)} class(es); the WordNet data is too small "
                             f"(check the folder, or lower the sizes)")
