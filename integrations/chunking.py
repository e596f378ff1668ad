"""Token-window chunking in the encoder's own tokens, so a chunk never overflows the model.

Uses only ``tokenizer(texts, add_special_tokens=False)["input_ids"]`` plus, where the
tokenizer offers it (every Hugging Face fast tokenizer), ``return_offsets_mapping=True`` to
cut the original string exactly; otherwise ``tokenizer.decode(ids)`` rebuilds each chunk.
"""

from __future__ import annotations

from llm2vec_rag.errors import UsageError


def check_chunk_size(size: int, room: int, max_length: int) -> None:
    """A chunk must fit the room the encoder leaves for a document's text."""
    if isinstance(size, int) and size > room:
        raise UsageError(f"chunk_size={size} tokens does not fit the encoder: "
                         f"max_length={max_length} leaves {room} tokens for "
                         f"a document's text (after special tokens and the document "
                         f"instruction): use chunk_size <= {room}")


class TokenChunker:
    """Windows of ``size`` tokens, consecutive windows sharing ``overlap`` tokens
    (default: an eighth of the size, at most 32); ``late=True``: embedded by late chunking
    (see ``integrations.embed``)."""

    def __init__(self, tokenizer, size: int = 256, overlap: int | None = None,
                 late: bool = False) -> None:
        if not isinstance(size, int) or size < 1:
            raise UsageError(f"chunk size must be a positive number of tokens, got {size!r}")
        if overlap is None:
            overlap = min(32, size // 8)
        if not isinstance(overlap, int) or not 0 <= overlap < size:
            raise UsageError(f"chunk overlap must be >= 0 and smaller than the chunk size "
                             f"({size}), got {overlap!r}")
        self.tokenizer = tokenizer
        self.size = size
        self.overlap = overlap
        # Late chunking: each chunk is pooled in its whole document's context (the indexer's
        # embed step reads this; the stored hash records it, so toggling it re-embeds).
        self.late = bool(late)
        self._offsets = True

    def _tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
        if self._offsets:
            try:
                enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                return list(enc["input_ids"]), list(enc["offset_mapping"])
            except (NotImplementedError, TypeError, KeyError, ValueError):
                self._offsets = False  # a slow or thin tokenizer: decode instead
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]), None

    @classmethod
    def from_options(cls, tokenizer, options) -> TokenChunker:
        """The chunker a ``ChunkOptions`` describes (size, overlap, late)."""
        return cls(tokenizer, options.size, options.overlap, late=options.late)

    def chunk(self, text: str) -> list[str]:
        """The text itself when it fits, else overlapping windows (never an empty list)."""
        return [piece for piece, _ in self._pieces(text)]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character ``(start, end)`` of each of ``chunk(text)`` in ``text``: what late
        chunking pools over. Needs a tokenizer with offsets (every fast tokenizer)."""
        pieces = self._pieces(text)
        if any(span is None for _, span in pieces):
            raise UsageError("late chunking needs each chunk's place in its document, and this "
                             "tokenizer gives no character offsets (return_offsets_mapping): "
                             "use a fast tokenizer (tokenizer.json), or index without late "
                             "chunking")
        return [span for _, span in pieces]  # type: ignore[misc]

    def _pieces(self, text: str) -> list[tuple[str, tuple[int, int] | None]]:
        ids, offsets = self._tokenize(text)
        if len(ids) <= self.size:
            return [(text, (0, len(text)) if offsets is not None else None)]
        chunks, step = [], self.size - self.overlap
        for start in range(0, len(ids), step):
            end = min(start + self.size, len(ids))
            span = None
            if offsets is not None:
                span = (offsets[start][0], offsets[end - 1][1])
                piece = text[span[0]: span[1]]
            else:
                piece = self.tokenizer.decode(ids[start:end])
            if piece.strip():
                chunks.append((piece, span))
            if end == len(ids):
                break
        return chunks or [(text, (0, len(text)) if offsets is not None else None)]
