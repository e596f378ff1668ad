"""Choosing which mined pairs a supervised run trains on, and with which instructions.

A mined pairs file (``llm2vec-rag train pairs``) holds asymmetric pairs (a query with its
kind's instruction) and symmetric ones (two halves of a document, ``"instruction": ""``).
``select_pairs`` keeps or drops the symmetric pairs and keeps each asymmetric pair's own
instruction (``mined``) or removes it (``single``), so that the stage's
``query_instruction`` applies to all of them. Several files are concatenated; ``FILE:N``
takes a seeded sample of N of a file's pairs (a run that adds a new source to an old mix
without letting the old one drown it). ``llm2vec-rag train select-pairs`` runs it.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Sequence

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_jsonl

INSTRUCTION_CHOICES = ("single", "mined")


Source = str | os.PathLike | tuple[str | os.PathLike, int | None]


def parse_source(text: str) -> tuple[str, int | None]:
    """``pairs.jsonl`` -> all of it; ``pairs.jsonl:2000`` -> a sample of 2000 pairs."""
    found = re.fullmatch(r"(.+):(\d+)", text)
    return (found.group(1), int(found.group(2))) if found else (text, None)


def read_sources(sources: Sequence[Source], seed: int = 0) -> list[dict]:
    """The pairs of every source in order, each ``(path, n)`` cut to a sample of ``n``
    (``random.Random(seed)`` shuffles the file's pairs, the first ``n`` are kept)."""
    records = []
    for source in sources:
        path, n = source if isinstance(source, tuple) else (source, None)
        rows = [r for _, r in read_jsonl(path, shape='{"query", "positive", ...}')]
        if n is not None:
            if n > len(rows):
                raise UsageError(f"{path}: {n} pairs asked for, the file has {len(rows)}")
            random.Random(seed).shuffle(rows)
            rows = rows[:n]
        records += rows
    return records


def select_pairs(source: Source | Sequence[Source], dest: str | os.PathLike,
                 instructions: str = "single", symmetric: bool = True,
                 seed: int = 0) -> dict[str, int]:
    """Write the selected pairs of ``source`` (one file, or several, each optionally
    ``(path, n)``: a sample of n) to ``dest``; returns how many were kept and dropped.
    Everything is read before ``dest`` is written, so bad input leaves no partial file."""
    if instructions not in INSTRUCTION_CHOICES:
        raise UsageError(f"instructions must be one of {INSTRUCTION_CHOICES}, got "
                         f"{instructions!r}")
    several = isinstance(source, Sequence) and not isinstance(source, (str, tuple))
    records = read_sources(source if several else [source], seed)
    kept = dropped = 0
    with open(dest, "w", encoding="utf-8") as out:
        for record in records:
            if record.get("instruction") == "":  # a symmetric pair: no instruction either side
                if not symmetric:
                    dropped += 1
                    continue
            elif instructions == "single":  # the stage's query_instruction for all
                record.pop("instruction", None)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            kept += 1
    return {"kept": kept, "dropped": dropped}
