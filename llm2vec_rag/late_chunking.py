"""Late chunking: one vector per character span of a document, pooled from token states of a
forward pass over the whole document, so every chunk vector carries its document's context.

The rules, in one place:

- **Tokens of a span.** A span ``(start, end)`` (characters, ``end`` exclusive) holds every
  text token whose character range overlaps it; a token cut by a chunk boundary belongs to
  both chunks. A span that holds no token (empty, or whitespace between tokens) is an error.
- **Pooling.** ``mean`` / ``weighted_mean`` pool the span's tokens as ``encode`` pools a text's
  (weights 1..n over the span). ``last`` / ``eos`` take the span's last token, and ``bos`` its
  first; a span that reaches the text's end takes the sequence's last real token (the appended
  EOS for ``eos``) and one that starts at the text's start takes the first real token (BOS),
  so a span covering the whole text equals ``encode`` of it in every mode.
- **Windows.** A document whose text tokens do not fit ``max_length`` (beside the special tokens
  and the instruction, which every window repeats) is covered by windows of ``width`` text
  tokens that overlap by ``overlap`` tokens (default ``width // 4``), the last one aligned to
  the document's end. A chunk is pooled from the window that holds all of it with the most
  context (the most tokens on its thinner side). A chunk longer than any window holds is
  split: each of its tokens is taken from the window where it sits most centrally, and the
  chunk pools those token vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .preprocess import Batch, Encoded, check_texts, text_tokens

POOLINGS = ("mean", "weighted_mean", "eos", "last", "bos")


def check_request(documents: object, spans: object, window_overlap: object
                  ) -> tuple[list[str], list[list[tuple[int, int]]], list[str]]:
    """``encode_chunks``' arguments checked: the documents, their spans and each document's
    name for errors (``document`` for one, ``documents[i]`` for a list)."""
    single = isinstance(documents, str)
    docs = check_texts([documents] if single else documents)
    if single:
        spans = [spans]
    if isinstance(spans, (str, bytes)) or not isinstance(spans, Sequence) or len(
            spans) != len(docs):
        got = f"{len(spans)} lists" if isinstance(spans, Sequence) else type(spans).__name__
        raise UsageError(f"spans must hold one list of (start, end) pairs per document: "
                         f"{len(docs)} documents, got {got}")
    if window_overlap is not None and (isinstance(window_overlap, bool) or not isinstance(
            window_overlap, (int, np.integer)) or window_overlap < 0):
        raise UsageError(f"window_overlap must be a number of tokens >= 0 or None, got "
                         f"{window_overlap!r}")
    where = ["document"] if single else [f"documents[{d}]" for d in range(len(docs))]
    return docs, [check_spans(doc, s, w) for doc, s, w in zip(docs, spans, where)], where


def check_spans(document: str, spans: object, where: str) -> list[tuple[int, int]]:
    """Spans as ``(start, end)`` int pairs inside ``document``, or an error naming the item."""
    if isinstance(spans, (str, bytes)) or not isinstance(spans, (Sequence, np.ndarray)):
        raise TypeError(f"{where}: spans must be a list of (start, end) character pairs, got "
                        f"{type(spans).__name__}")
    out = []
    for i, span in enumerate(spans):
        try:
            start, end = (int(v) for v in span)
            ok = all(float(v) == int(v) for v in span)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise TypeError(f"{where}: spans[{i}] is {span!r:.60}, not a (start, end) pair of "
                            "integers (character offsets, end exclusive)")
        if not 0 <= start < end <= len(document):
            raise UsageError(f"{where}: spans[{i}] = ({start}, {end}) is not a non-empty range "
                             f"inside the document's {len(document)} characters: need "
                             f"0 <= start < end <= {len(document)}")
        out.append((start, end))
    return out


def window_width(enc: Encoded, max_length: int) -> int:
    """Text tokens one row holds within ``max_length`` beside ``enc``'s special tokens and
    instruction (what every window repeats)."""
    return max(1, max_length - (len(enc.ids) - (enc.embed_end - enc.embed_start)))


def plan_windows(n_tokens: int, width: int,
                 overlap: int | None = None) -> list[tuple[int, int]]:
    """Text-token ranges ``[a, b)`` of at most ``width`` tokens covering ``n_tokens``, each
    overlapping the previous one by at least ``overlap`` (default ``width // 4``; the last
    window is aligned to the end)."""
    if n_tokens <= width:
        return [(0, n_tokens)]
    if overlap is None:
        overlap = width // 4
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not (
            0 <= overlap < width):
        raise UsageError(f"window overlap must be >= 0 and below the window's {width} text "
                         f"tokens, got {overlap}")
    stride = width - overlap
    starts = list(range(0, n_tokens - width, stride)) + [n_tokens - width]
    return [(a, a + width) for a in starts]


def window_rows(enc: Encoded, windows: list[tuple[int, int]]) -> list[Encoded]:
    """Rows to encode: the document's own row when it fits, else one row per window, each
    with the same special tokens and instruction around its slice of the text."""
    if len(windows) == 1:
        return [enc]
    head, tail = enc.ids[: enc.embed_start], enc.ids[enc.embed_end:]
    rows = []
    for a, b in windows:
        ids = head + enc.ids[enc.embed_start + a: enc.embed_start + b] + tail
        rows.append(Encoded(ids, len(head), len(head) + b - a, False, len(ids)))
    return rows


def span_tokens(offsets: np.ndarray, span: tuple[int, int], where: str) -> tuple[int, int]:
    """The text-token range ``[s, e)`` whose characters overlap ``span``."""
    start, end = span
    hit = np.flatnonzero((offsets[:, 0] < end) & (offsets[:, 1] > start))
    if not len(hit):
        raise UsageError(f"{where}: span ({start}, {end}) holds no token (only whitespace or "
                         "characters the tokenizer drops): widen it or leave it out")
    return int(hit[0]), int(hit[-1]) + 1


@dataclass
class WindowStates:
    """What pooling needs from one encoded window."""

    range: tuple[int, int]  # its text tokens [a, b) in the document
    tokens: np.ndarray  # [b - a, D] states of those tokens
    first: np.ndarray  # [D] state of the window's first real token
    last: np.ndarray  # [D] state of its last real token


def chunk_vector(windows: list[WindowStates], s: int, e: int, n_tokens: int,
                 mode: str) -> np.ndarray:
    """Pool text tokens ``[s, e)`` of a document under the module's rules (see above)."""
    holding = [w for w in windows if w.range[0] <= s and e <= w.range[1]]
    if holding:
        best = max(holding, key=lambda w: min(s - w.range[0], w.range[1] - e))
        states = best.tokens[s - best.range[0]: e - best.range[0]]
        first, last = best, best
    else:  # longer than any window holds: each token from its most central window
        picks = [max((w for w in windows if w.range[0] <= t < w.range[1]),
                     key=lambda w, t=t: min(t - w.range[0], w.range[1] - 1 - t))
                 for t in range(s, e)]
        states = np.stack([w.tokens[t - w.range[0]] for w, t in zip(picks, range(s, e))])
        first, last = picks[0], picks[-1]
    if mode == "mean":
        return states.mean(axis=0)
    if mode == "weighted_mean":
        weights = np.arange(1, len(states) + 1, dtype=np.float64)
        return (weights / weights.sum()) @ states
    if mode in ("eos", "last"):
        return last.last if e == n_tokens else states[-1]
    if mode == "bos":
        return first.first if s == 0 else states[0]
    raise ValueError(f"Unknown pooling mode {mode!r}; late chunking supports {POOLINGS}")


class Windows:
    """Every window of every document of one call: the rows to encode (``rows``), then the
    states each encoded batch gives (``keep``), then the chunk vectors (``chunk_vectors``)."""

    def __init__(self, encoded: list[Encoded], max_length: int,
                 overlap: int | None = None) -> None:
        self.encoded = encoded
        self.plans = [plan_windows(e.embed_end - e.embed_start, window_width(e, max_length),
                                   overlap) for e in encoded]
        self.rows: list[Encoded] = []
        self.owner: list[tuple[int, int]] = []  # row -> (document, window)
        for k, enc in enumerate(encoded):
            self.rows += window_rows(enc, self.plans[k])
            self.owner += [(k, w) for w in range(len(self.plans[k]))]
        self.states: list[list[WindowStates | None]] = [[None] * len(p) for p in self.plans]

    def keep(self, batch: Batch, hidden: np.ndarray) -> None:
        """Record what pooling needs from one batch's last hidden states ``[B, T, D]``."""
        for row, i in enumerate(batch.index):
            k, w = self.owner[i]
            real = np.flatnonzero(batch.attention_mask[row])
            self.states[k][w] = WindowStates(
                self.plans[k][w], text_tokens(hidden[row], batch.embed_mask[row]),
                hidden[row, real[0]], hidden[row, real[-1]])

    def chunk_vectors(self, k: int, spans: list[tuple[int, int]], mode: str,
                      where: str) -> np.ndarray:
        """Float32 ``(len(spans), D)``: document ``k``'s spans pooled (module rules)."""
        enc, windows = self.encoded[k], self.states[k]
        n = enc.embed_end - enc.embed_start
        out = np.zeros((len(spans), windows[0].tokens.shape[1]), np.float32)
        for j, span in enumerate(spans):
            s, e = span_tokens(enc.offsets, span, f"{where} spans[{j}]")
            out[j] = chunk_vector(windows, s, e, n, mode)
        return out
