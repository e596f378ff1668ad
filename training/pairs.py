"""Supervised pairs from a user's own corpus: ``llm2vec-rag train pairs SRC... -o pairs.jsonl``.

1. Extract (query, positive) pairs from the corpus' structure (``pair_sources``).
2. Filter: length (too short or empty; long positives are cut to ``max_words``), duplicates
   (a repeated pair or a repeated positive), ambiguous queries (one query, several positives
   in a dataset: each would be the other's false negative), then at most
   ``max_per_dataset`` pairs per dataset (a seeded sample).
3. With an encoder (any ``Encoder``: the default model, an adapter, an ONNX export), per
   dataset: consistency (keep a pair only if its positive ranks within the top
   ``consistency_k`` of the dataset's positives for its query) and hard negatives (the best
   ranked other positives that are not near-duplicates of the positive: cosine to it above
   ``duplicate_cosine``, word overlap above ``duplicate_overlap``, or a query score above
   ``max_negative_ratio`` x the positive's, the usual sign of an unlabelled positive).
4. Write the supervised JSONL schema (``data.py``) that ``train supervised`` reads, and a
   report: pairs per source and per dataset, and what each filter removed.

Symmetric pairs (two halves of a document, consecutive passages of an article) are passages
on both sides: both are cut to ``max_words``, neither gets an instruction (written as
``"instruction": ""`` so that training's ``query_instruction`` does not apply either), and
another passage of the same document is never its hard negative.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from llm2vec_rag.errors import UsageError
from llm2vec_rag.files import same_file

from .pair_sources import INSTRUCTIONS, SYMMETRIC, Pair, extract, format_of

FILTERS = ("too_short", "too_long_query", "duplicate", "ambiguous_query", "capped",
           "inconsistent", "no_negative")


@dataclass
class PairSettings:
    """How pairs are filtered and mined (the CLI's flags, documented there)."""

    min_words: int = 8
    max_words: int = 200
    max_query_words: int = 32
    max_per_dataset: int | None = None
    num_negatives: int = 1
    consistency_k: int = 10
    duplicate_cosine: float = 0.95
    duplicate_overlap: float = 0.6
    max_negative_ratio: float = 0.95
    instruction: str | None = None  # None: one per kind (pair_sources.INSTRUCTIONS); "": none
    seed: int = 0
    batch_size: int = 32


def collect_files(sources: Sequence[str]) -> dict[str, list[str]]:
    """{SRC: files to mine}: a file as given, a folder walked for known formats (sorted),
    each real file once."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()  # real paths: a symlinked alias (Debian's man page links) once
    for src in sources:
        if os.path.isdir(src):
            found = []
            for root, dirs, files in os.walk(src):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(root, name)
                    if format_of(name) is not None and os.path.realpath(path) not in seen:
                        seen.add(os.path.realpath(path))
                        found.append(path)
            out[src] = found
        elif os.path.isfile(src):
            out[src] = [src]
        else:
            raise FileNotFoundError(f"{src}: no such file or folder")
    return out


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _cut(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words])


def cheap_filters(pairs: list[Pair], s: PairSettings, dropped: Counter) -> list[Pair]:
    """Length, duplicate and ambiguity filters and the per-dataset cap (no encoder needed)."""
    kept, seen_pairs, seen_pos = [], set(), set()
    for p in pairs:
        q_words, p_words = len(p.query.split()), len(p.positive.split())
        if q_words == 0 or not re.search(r"\w", p.query) or p_words < s.min_words:
            dropped[p.dataset, "too_short"] += 1
            continue
        if p.kind == SYMMETRIC:  # a passage on both sides: cut, like a positive
            if q_words < s.min_words:
                dropped[p.dataset, "too_short"] += 1
                continue
            p.query = _cut(p.query, s.max_words)
        elif q_words > s.max_query_words:
            dropped[p.dataset, "too_long_query"] += 1
            continue
        p.positive = _cut(p.positive, s.max_words)
        key, pos = (p.dataset, _norm(p.query), _norm(p.positive)), (p.dataset, _norm(p.positive))
        if key in seen_pairs or pos in seen_pos:
            dropped[p.dataset, "duplicate"] += 1
            continue
        seen_pairs.add(key)
        seen_pos.add(pos)
        kept.append(p)
    per_query = Counter((p.dataset, _norm(p.query)) for p in kept)
    out = []
    for p in kept:
        if per_query[p.dataset, _norm(p.query)] > 1:
            dropped[p.dataset, "ambiguous_query"] += 1
        else:
            out.append(p)
    if s.max_per_dataset is not None:
        rng = random.Random(s.seed)
        groups: dict[str, list[Pair]] = defaultdict(list)
        for p in out:
            groups[p.dataset].append(p)
        out = []
        for name, group in groups.items():
            if len(group) > s.max_per_dataset:
                dropped[name, "capped"] += len(group) - s.max_per_dataset
                chosen = sorted(rng.sample(range(len(group)), s.max_per_dataset))
                group = [group[i] for i in chosen]
            out += group
    return out


def instruction_of(pair: Pair, s: PairSettings) -> str:
    """Symmetric pairs never get one: both of their sides are documents."""
    if pair.kind == SYMMETRIC:
        return ""
    return INSTRUCTIONS[pair.kind] if s.instruction is None else s.instruction


def _overlap(a: str, b: str) -> float:
    x, y = set(_norm(a).split()), set(_norm(b).split())
    return len(x & y) / max(len(x | y), 1)


def mine(pairs: list[Pair], encoder, s: PairSettings,
         dropped: Counter) -> list[tuple[Pair, list[str]]]:
    """Consistency filter and hard negatives, one dataset (and instruction) at a time."""
    import numpy as np  # here, so that building the CLI parser stays light
    groups: dict[tuple[str, str], list[Pair]] = defaultdict(list)
    for p in pairs:
        groups[p.dataset, instruction_of(p, s)].append(p)
    out = []
    for (name, instruction), group in groups.items():
        docs = encoder.encode_documents([p.positive for p in group], batch_size=s.batch_size,
                                        normalize=True)  # [N, D]
        queries = encoder.encode_queries([p.query for p in group], instruction=instruction,
                                         batch_size=s.batch_size, normalize=True)  # [N, D]
        depth = min(len(group), max(s.consistency_k, 1) + 4 * s.num_negatives + 16)
        for start in range(0, len(group), 256):
            scores = queries[start:start + 256] @ docs.T  # [q, N]
            for row, i in enumerate(range(start, min(start + 256, len(group)))):
                ranked = np.argsort(-scores[row], kind="stable")[:depth]
                if s.consistency_k and i not in ranked[: s.consistency_k]:
                    dropped[name, "inconsistent"] += 1
                    continue
                negatives = hard_negatives(group, docs, scores[row], i, ranked, s)
                if len(negatives) < s.num_negatives:
                    dropped[name, "no_negative"] += 1
                    continue
                out.append((group[i], negatives))
    return out


def hard_negatives(group: list[Pair], docs, scores, i: int, ranked, s: PairSettings) -> list[str]:
    """Up to ``s.num_negatives`` positives of other pairs, best-ranked first, for pair ``i``:
    never its own, a near duplicate of it, another passage of its document, one scored too
    close to its own positive (likely a missed positive) or one sharing most of its words."""
    own, negatives = scores[i], []
    for j in ranked:
        if len(negatives) == s.num_negatives:
            break
        if (j == i or float(docs[i] @ docs[j]) > s.duplicate_cosine
                or (group[i].kind == SYMMETRIC and group[j].source == group[i].source)
                or scores[j] > s.max_negative_ratio * own
                or _overlap(group[i].positive, group[j].positive) > s.duplicate_overlap):
            continue
        negatives.append(group[j].positive)
    return negatives


def build_pairs(sources: Sequence[str], output: str, encoder: object | Callable | None = None,
                settings: PairSettings | None = None, dataset: str | None = None) -> dict:
    """Mine ``sources`` into ``output`` (supervised JSONL); returns the report.

    ``encoder``: an ``Encoder``, or a zero-argument callable returning one (loaded only when
    mining needs it). Without one, ``num_negatives`` must be 0 and ``consistency_k`` 0.
    ``dataset`` names every pair's dataset (default: one per kind of source, e.g. ``man``).
    """
    s = settings or PairSettings()
    start = time.perf_counter()
    files = collect_files(sources)
    for src, paths in files.items():
        for path in paths:
            if same_file(path, output):
                raise UsageError(f"pairs: the output {output} is one of the inputs ({path}, "
                                 f"from {src}); writing there would destroy it. Choose "
                                 "another output file (-o).")
    pairs: list[Pair] = []
    per_source: dict[str, dict] = {}
    for src, paths in files.items():
        counts: Counter = Counter()
        for path in paths:
            found = extract(path)
            counts["files"] += 1
            counts["files_without_pairs"] += not found
            for p in found:
                counts[p.dataset] += 1
            pairs += found
        per_source[src] = dict(counts)
    if dataset:
        for p in pairs:
            p.dataset = dataset
    extracted = Counter(p.dataset for p in pairs)
    dropped: Counter = Counter()
    pairs = cheap_filters(pairs, s, dropped)
    needs_encoder = s.num_negatives > 0 or s.consistency_k > 0
    if needs_encoder and pairs:
        if encoder is None:
            raise UsageError("Mining hard negatives or the consistency filter needs an encoder: "
                             "pass one, or num_negatives=0 and consistency_k=0")
        enc = encoder() if callable(encoder) and not hasattr(encoder, "encode") else encoder
        mined = mine(pairs, enc, s, dropped)
    else:
        mined = [(p, []) for p in pairs]
    _write(output, mined, s)
    written = Counter(p.dataset for p, _ in mined)
    datasets = {name: {"extracted": n, **{f: dropped[name, f] for f in FILTERS
                                          if dropped[name, f]}, "written": written[name]}
                for name, n in sorted(extracted.items())}
    return {"output": output, "written": len(mined), "sources": per_source,
            "datasets": datasets, "filters": {f: sum(v for (_, k), v in dropped.items()
                                                     if k == f) for f in FILTERS},
            "settings": asdict(s), "seconds": round(time.perf_counter() - start, 1)}


def _write(output: str, mined: list[tuple[Pair, list[str]]], s: PairSettings) -> None:
    """All records to ``output.tmp``, then renamed: a failed run leaves no half file."""
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    tmp = output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for p, negatives in mined:
            record = {"query": p.query, "positive": p.positive, "negatives": negatives,
                      "dataset": p.dataset, "source": p.source}
            instruction = instruction_of(p, s)
            if instruction or p.kind == SYMMETRIC:  # "": none, not training's default
                record["instruction"] = instruction
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, output)
