"""Choosing which mined pairs a supervised run trains on, and with which instructions.

A mined pairs file (``llm2vec-rag train pairs``) holds asymmetric pairs (a query with its
kind's instruction) and symmetric ones (two halves of a document, ``"instruction": ""``).
``select_pairs`` keeps or drops the symmetric pairs and keeps each asymmetric pair's own
instruction (``mined``) or removes it (``single``), so that the stage's
``query_instruction`` applies to all of them. ``llm2vec-rag train select-pairs`` runs it.
"""

from __future__ import annotations

import json
import os

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import read_jsonl

INSTRUCTION_CHOICES = ("single", "mined")


def select_pairs(source: str | os.PathLike, dest: str | os.PathLike,
                 instructions: str = "single", symmetric: bool = True) -> dict[str, int]:
    """Write the selected pairs of ``source`` to ``dest``; returns how many were kept and
    dropped."""
    if instructions not in INSTRUCTION_CHOICES:
        raise UsageError(f"instructions must be one of {INSTRUCTION_CHOICES}, got "
                         f"{instructions!r}")
    kept = dropped = 0
    with open(dest, "w", encoding="utf-8") as out:
        for _, record in read_jsonl(source, shape='{"query", "positive", ...}'):
            if record.get("instruction") == "":  # a symmetric pair: no instruction either side
                if not symmetric:
                    dropped += 1
                    continue
            elif instructions == "single":  # the stage's query_instruction for all
                record.pop("instruction", None)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            kept += 1
    return {"kept": kept, "dropped": dropped}
