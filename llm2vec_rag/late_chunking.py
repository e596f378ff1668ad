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

from .preprocess import Encoded

POOLINGS = ("mean", "weighted_mean", "eos", "last", "bos")


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
            raise ValueError(f"{where}: spans[{i}] = ({start}, {end}) is not a non-empty range "
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
        raise ValueError(f"window overlap must be >= 0 and below the window's {width} text "
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
        raise ValueError(f"{where}: span ({start}, {end}) holds no token (only whitespace or "
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
