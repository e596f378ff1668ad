"""Texts to padded batches: tokenization, the instruction (embed) mask, length-sorted batching.

NumPy only, so the ONNX Runtime encoder shares it without importing torch.

A text with an instruction is tokenized as ``instruction.strip() + " " + text`` (what
LLM2Vec models were trained on); its last ``len(tokenize(text))`` content tokens form the
``embed_mask``, so pooling sees the text and never the instruction, BOS or padding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import UsageError
from .files import unreadable_model


@dataclass
class Batch:
    input_ids: np.ndarray  # [B, T] int64
    attention_mask: np.ndarray  # [B, T] int64, 1 = real token
    embed_mask: np.ndarray  # [B, T] int64, 1 = the text's own tokens
    index: np.ndarray  # [B] positions of these rows in the caller's list

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())


@dataclass
class Encoded:
    ids: list[int]
    embed_start: int  # the text's tokens are ids[embed_start:embed_end]
    embed_end: int
    truncated: bool
    tokens: int = 0  # tokens before truncation (special tokens and instruction included)
    # Character (start, end) in the text of each of ids[embed_start:embed_end]; only when
    # asked for (``Preprocessor.encode(..., offsets=True)``).
    offsets: np.ndarray | None = None
    empty: bool = False  # an empty text: embed_start:embed_end is the whole-sequence fallback


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, **kwargs):
    """The model's tokenizer, with a pad token (pad positions are masked; any id will do)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file, **kwargs)
    except ValueError as err:  # transformers' word for tokenizer files (or GGUF) it can't use
        where = os.path.join(name_or_path, gguf_file) if gguf_file else name_or_path
        raise unreadable_model(where, "tokenizer", err) from err
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def unencodable(text: str) -> str | None:
    """Why ``text`` cannot be tokenized (a lone surrogate: not valid Unicode), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return (f"contains a lone surrogate {text[err.start]!r} at character {err.start}, "
                f"which is not valid Unicode (often a JSON \\ud800 escape or a bad decode): "
                f"fix or drop it")
    return None


def check_texts(texts: object) -> list[str]:
    """A list of strings, or a clear error naming the first bad item."""
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise TypeError(f"texts is {type(texts).__name__}, not text: decode it first, e.g. "
                        f"data.decode('utf-8')")
    if isinstance(texts, str):
        texts = [texts]
    if texts is None or not isinstance(texts, Sequence):
        raise TypeError(
            f"texts must be a string or a list of strings, got {type(texts).__name__}. "
            "For a stream larger than memory use encode_iter()."
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            hint = (" (nested lists are accepted only as [instruction, text] pairs, all of "
                    "them: flatten them first)") if isinstance(
                t, (list, tuple)) else ""
            if isinstance(t, (bytes, bytearray)):
                hint = " (bytes: decode them first, e.g. t.decode('utf-8'))"
            raise TypeError(f"texts[{i}] is {type(t).__name__}, not str{hint}: {t!r:.80}")
        if not t.isascii() and (why := unencodable(t)):
            raise UsageError(f"texts[{i}] {why}")
    return list(texts)


def check_count(name: str, value: object, *, optional: bool = False) -> int | None:
    """A whole number >= 1 (``None`` too when ``optional``), or an error naming ``name``:
    ``1.5``, ``True`` or ``"8"`` would otherwise be accepted, or silently encode nothing."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        allowed = "an integer >= 1 or None" if optional else "an integer >= 1"
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    if value < 1:
        raise UsageError(f"{name} must be >= 1{' or None' if optional else ''}, got {value}")
    return int(value)


def check_batching(batch_size: object, max_batch_tokens: object) -> tuple[int, int | None]:
    """``batch_size`` (texts) and ``max_batch_tokens`` (padded tokens, None: the default)."""
    return (check_count("batch_size", batch_size),
            check_count("max_batch_tokens", max_batch_tokens, optional=True))


def check_inputs(texts: object,
                 instruction: object = None) -> tuple[list[str], str | list[str]]:
    """Checked texts and instruction(s); also the reference llm2vec's input.

    llm2vec 0.2.3 takes ``[[instruction, text], ...]``: one instruction per text, ``""`` for
    none. Such a list becomes ``(texts, [instruction, ...])``, the per-text instructions
    ``encode`` already has, so pairs get exactly the reference's semantics (the instruction
    attended to, not pooled) and every path that checks input here accepts them.
    """
    if _is_pair_list(texts):
        if instruction is not None:
            raise UsageError("texts are [instruction, text] pairs, which carry their own "
                             "instructions: do not pass instruction= as well")
        pairs = list(texts)  # type: ignore[arg-type]
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(
                    isinstance(p, str) for p in pair):
                raise TypeError(f"texts[{i}] is {pair!r:.80}: texts given as pairs must all be "
                                f"[instruction, text] with two strings (\"\" for no "
                                f"instruction), as llm2vec 0.2.3 takes them")
        texts, instruction = [p[1] for p in pairs], [p[0] for p in pairs]
    texts = check_texts(texts)
    return texts, check_instruction(instruction, len(texts))


def _is_pair_list(texts: object) -> bool:
    """A non-empty list whose first item is an ``[instruction, text]`` pair of strings."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence) or not texts:
        return False
    first = texts[0]
    return isinstance(first, (list, tuple)) and len(first) == 2 and all(
        isinstance(p, str) for p in first)


def check_instruction(instruction: object, n_texts: int | None = None) -> str | list[str]:
    """One stripped instruction, or (a list) one per text: ``n_texts`` of them."""
    if instruction is None:
        return ""
    if isinstance(instruction, str):
        return instruction.strip()
    if isinstance(instruction, Sequence) and n_texts is not None:
        if len(instruction) != n_texts:
            raise UsageError(f"instruction is a list of {len(instruction)} items for "
                             f"{n_texts} texts: give one per text, or one string for all")
        out = []
        for i, ins in enumerate(instruction):
            if ins is not None and not isinstance(ins, str):
                raise TypeError(f"instruction[{i}] is {type(ins).__name__}, not str or None")
            out.append((ins or "").strip())
        return out
    raise TypeError(f"instruction must be a string or None, got {type(instruction).__name__}")


class Preprocessor:
    """Tokenizes and batches for one tokenizer and one set of encoder settings."""

    def __init__(self, tokenizer, max_length: int, append_eos: bool = False,
                 padding_side: str = "left") -> None:
        if padding_side not in ("left", "right"):
            raise UsageError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding_side = padding_side
        self.eos_id = tokenizer.eos_token_id
        if append_eos and self.eos_id is None:
            raise UsageError(
                "eos pooling needs a tokenizer with an eos_token; choose another pooling")
        self.append_eos = append_eos
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)
        self.lead, self.trail = special_template(tokenizer)

    def text_budget(self, instruction: str = "") -> int:
        """Text tokens that fit in ``max_length`` beside the special-token template and
        ``instruction`` (tokenized as ``encode`` does: ``instruction + " " + text``)."""
        n_instruction = 0
        if instruction:
            probe = "a"
            full = self.tokenizer(instruction + " " + probe, add_special_tokens=False)
            alone = self.tokenizer(probe, add_special_tokens=False)
            n_instruction = len(full["input_ids"]) - len(alone["input_ids"])
        return max(0, self.max_length - self.lead - self.trail - int(self.append_eos)
                   - n_instruction)

    def encode(self, texts: list[str], instruction: str | list[str] = "",
               offsets: bool = False, truncate: bool = True) -> list[Encoded]:
        """Token ids and embed spans; ``instruction`` is one for all or one per text.

        ``offsets=True`` also records each text token's character span in its text (what
        token embeddings and late chunking map back to). ``truncate=False`` keeps every text
        token (late chunking covers a long text with windows instead of cutting it).
        """
        if isinstance(instruction, list):  # per text: tokenize each instruction's group once
            out: list[Encoded | None] = [None] * len(texts)
            groups: dict[str, list[int]] = {}
            for i, ins in enumerate(instruction):
                groups.setdefault(ins, []).append(i)
            for ins, idx in groups.items():
                for i, enc in zip(idx, self.encode([texts[i] for i in idx], ins, offsets,
                                                   truncate)):
                    out[i] = enc
            return out  # type: ignore[return-value]
        prefix = instruction + " " if instruction else ""
        tokenized = self.tokenizer([prefix + t for t in texts], add_special_tokens=True,
                                   **({"return_offsets_mapping": True} if offsets else {}))
        full = tokenized["input_ids"]
        if prefix:
            alone = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            text_lens = [len(a) for a in alone]
        else:
            text_lens = [len(ids) - self.lead - self.trail for ids in full]
        out = [self._encode_one(ids, n, truncate) for ids, n in zip(full, text_lens)]
        if offsets:
            for enc, spans, t in zip(out, tokenized["offset_mapping"], texts):
                enc.offsets = self._text_offsets(enc, spans, len(prefix), len(t))
        return out

    def _text_offsets(self, enc: Encoded, spans, shift: int, n_chars: int) -> np.ndarray:
        """``(n_text_tokens, 2)`` character spans in the text alone (the instruction prefix
        removed, clipped to the text: a token that carries the joining space starts at 0)."""
        if enc.empty:
            return np.zeros((0, 2), dtype=np.int64)
        # ids[embed_start:embed_end] are the tokenizer's tokens at the same positions (the
        # body is cut only at its end, and the lead is the tokenizer's own).
        spans = np.asarray(spans[enc.embed_start: enc.embed_end], dtype=np.int64).reshape(-1, 2)
        return np.clip(spans - shift, 0, n_chars)

    def count(self, texts: list[str], instruction: str | list[str] = "") -> list[int]:
        """Tokens per text before truncation (special tokens, instruction and EOS included)."""
        instructions = instruction if isinstance(instruction, list) else [instruction] * len(texts)
        full = [(ins + " " if ins else "") + t for t, ins in zip(texts, instructions)]
        ids = self.tokenizer(full, add_special_tokens=True)["input_ids"] if full else []
        return [max(1, len(i) + int(self.append_eos)) for i in ids]

    def _encode_one(self, ids: list[int], n_text: int, truncate: bool = True) -> Encoded:
        lead, body, trail = ids[: self.lead], ids[self.lead: len(ids) - self.trail], ids[
            len(ids) - self.trail:]
        n_text = min(n_text, len(body))
        budget = self.max_length - len(lead) - len(trail) - int(self.append_eos)
        if budget - (len(body) - n_text) < 1:
            raise UsageError(
                f"The instruction takes {len(body) - n_text} tokens, leaving no room for text "
                f"within max_length={self.max_length}: shorten it or raise max_length."
            )
        tokens = len(ids) + int(self.append_eos)
        truncated = truncate and len(body) > budget
        if truncated:  # the text sits at the end of the body, so the cut only removes text
            n_text -= len(body) - budget
            body = body[:budget]
        out = lead + body + trail + ([self.eos_id] if self.append_eos else [])
        start, end = len(lead) + len(body) - n_text, len(lead) + len(body)
        if not out:  # empty text, no instruction, no BOS: the model still needs one token
            out = [self.eos_id if self.eos_id is not None else self.pad_id]
        empty = start == end
        if empty:  # empty text: documented fallback, pool over every real token
            start, end = 0, len(out)
        return Encoded(out, start, end, truncated, max(1, tokens), empty=empty)

    def batches(self, encoded: list[Encoded], batch_size: int,
                max_batch_tokens: int | None = None) -> Iterator[Batch]:
        """Longest first, so each batch holds texts of similar length and padding stays small.

        A batch takes texts while it has fewer than ``batch_size`` rows and its padded size
        (rows x its longest text) stays within ``max_batch_tokens``: the long texts come in
        small batches, the short ones in full ones. Longest first also makes a batch that
        does not fit in memory fail at once rather than at the end.
        """
        batch_size, max_batch_tokens = check_batching(batch_size, max_batch_tokens)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].ids))
        group: list[int] = []
        for i in order:
            width = len(encoded[group[0]].ids) if group else len(encoded[i].ids)
            too_many_tokens = (max_batch_tokens is not None
                               and (len(group) + 1) * width > max_batch_tokens)
            if group and (len(group) == batch_size or too_many_tokens):
                yield self.collate([encoded[j] for j in group], np.array(group))
                group = []
            group.append(i)
        if group:
            yield self.collate([encoded[j] for j in group], np.array(group))

    def collate(self, rows: list[Encoded], index: np.ndarray) -> Batch:
        width = max(len(r.ids) for r in rows)
        shape = (len(rows), width)
        input_ids = np.full(shape, self.pad_id, dtype=np.int64)
        attention = np.zeros(shape, dtype=np.int64)
        embed = np.zeros(shape, dtype=np.int64)
        for b, r in enumerate(rows):
            offset = width - len(r.ids) if self.padding_side == "left" else 0
            input_ids[b, offset: offset + len(r.ids)] = r.ids
            attention[b, offset: offset + len(r.ids)] = 1
            embed[b, offset + r.embed_start: offset + r.embed_end] = 1
        return Batch(input_ids, attention, embed, index)


def text_tokens(hidden: np.ndarray, embed_mask: np.ndarray) -> np.ndarray:
    """One row's token embeddings: the states ``[T, D]`` at its text positions (``embed_mask``),
    in order; the same positions mean pooling averages."""
    return np.ascontiguousarray(hidden[embed_mask.astype(bool)], dtype=np.float32)


def special_template(tokenizer) -> tuple[int, int]:
    """How many special tokens the tokenizer adds before and after the content (BOS, EOS)."""
    probe = "a"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for lead in range(len(full) - len(plain) + 1):
        if full[lead: lead + len(plain)] == plain:
            return lead, len(full) - lead - len(plain)
    return 0, 0
