"""What an index run writes: document identity, chunks, hashes, unchanged and stale checks.

One code path for every writer (``QdrantIndexer.index`` and the Ray bulk indexer): a
:class:`RunPlan` turns a stream of documents into :class:`Job` s (what to delete, what to
embed, the points to upsert), reading the store only through a ``read(ids)`` callable.
Writers then embed ``job.texts``, build ``job.points(vectors)`` and apply the job:
``job.deletes`` first, then the upsert, jobs in the order they were planned.

Identity rules (documented for users in ``QdrantIndexer.index``):

- A document is its id, compared as text: ``1`` and ``"1"`` are the same document.
- The same id twice in one run is a *duplicate*: the last record wins, wholly (its chunks
  replace every chunk of the earlier one); duplicates are counted and reported with examples.
- A document is *unchanged* only when every one of its chunks is stored with its hash and
  chunk count and no chunk beyond them exists; otherwise it is rewritten and every stored
  chunk past its new chunk count is deleted. So no stale chunk survives a re-run, a run
  killed half-way, ``prune=True`` or a duplicate id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _qdrant_config as qc
from .sources import Skipped, SourceDoc

MAX_EXAMPLES = 20


@dataclass
class IndexReport:
    documents: int = 0  # documents read from the source (duplicates included)
    indexed: int = 0  # distinct documents (new or changed) embedded and written
    unchanged: int = 0  # distinct documents already stored whole with the same content
    duplicates: int = 0  # records whose id came earlier in the run: the last one was kept
    chunks: int = 0  # points now stored for the indexed documents
    skipped: int = 0  # unreadable files, non-UTF-8 text, bad records, empty texts
    pruned: int = 0  # points deleted: stale chunks and (prune=True) removed documents
    seconds: float = 0.0
    skipped_examples: list[tuple[str, str]] = field(default_factory=list)  # first 20
    duplicate_examples: list[tuple[str, str]] = field(default_factory=list)  # first 20

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    def skip(self, source: str, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < MAX_EXAMPLES:
            self.skipped_examples.append((source, reason))

    def __str__(self) -> str:
        dups = (f", {self.duplicates} duplicate ids: the last record of each kept"
                if self.duplicates else "")
        lines = [f"{self.documents} documents ({self.indexed} indexed, {self.unchanged} "
                 f"unchanged{dups}) -> {self.chunks} chunks written, {self.pruned} pruned, "
                 f"{self.skipped} skipped, in {self.seconds:.1f}s ({self.docs_per_s:.1f} docs/s)"]
        lines += [f"  duplicate {src}: {why}" for src, why in self.duplicate_examples]
        if self.duplicates > len(self.duplicate_examples):
            lines.append(f"  ... and {self.duplicates - len(self.duplicate_examples)} more "
                         f"duplicates")
        lines += [f"  skipped {src}: {why}" for src, why in self.skipped_examples]
        if self.skipped > len(self.skipped_examples):
            lines.append(f"  ... and {self.skipped - len(self.skipped_examples)} more")
        return "\n".join(lines)


@dataclass
class Planned:
    """One document to (re)write: its chunks and the hash stored on every chunk."""

    doc: SourceDoc
    chunks: list[str]
    doc_hash: str


@dataclass
class Job:
    """One batch of writes, applied in planning order: delete ``deletes``, then upsert."""

    docs: list[Planned]
    deletes: list[str]  # point ids known to be stored (or written by an earlier job)
    n_read: int = 0  # documents of the source this job covers (for progress bars)

    @property
    def texts(self) -> list[str]:
        """Every chunk to embed, in the order ``points`` expects the vectors."""
        return [c for p in self.docs for c in p.chunks]

    def points(self, vectors) -> list:
        """The upsert: one point per chunk (``vectors[i]`` belongs to ``texts[i]``)."""
        from qdrant_client import models

        out, row = [], 0
        for p in self.docs:
            for i, text in enumerate(p.chunks):
                vec = vectors[row]
                out.append(models.PointStruct(
                    id=qc.point_id(p.doc.id, i),
                    vector=vec if isinstance(vec, dict) else (  # dict: named (hybrid)
                        vec.tolist() if hasattr(vec, "tolist") else [float(x) for x in vec]),
                    payload=qc.payload(p.doc.id, i, len(p.chunks), text, p.doc.metadata,
                                       p.doc_hash)))
                row += 1
        return out


def encoder_fingerprint(encoder: Any, chunker: Any) -> list:
    """What else a stored vector depends on: another model or chunking means re-embedding
    (late chunking too; without it the list, and so every stored hash, is as before)."""
    out = [chunker.size, chunker.overlap, encoder.config.document_instruction,
           encoder.config.pooling, getattr(encoder, "source", "")]
    return out + ["late_chunking"] if getattr(chunker, "late", False) else out


def doc_hash(doc: SourceDoc, fingerprint: list) -> str:
    key = [doc.text, doc.metadata, *fingerprint]
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()


class RunPlan:
    """The bookkeeping of one index run (documents seen, duplicates, report counts).

    ``read(point_ids) -> {point_id: payload}`` reads the store (payload keys ``doc_hash`` and
    ``n_chunks`` suffice). Memory grows by one small entry per distinct document id.
    """

    def __init__(self, chunker: Any, fingerprint: list, read: Callable[[list[str]], dict],
                 report: IndexReport, batch_size: int = 64) -> None:
        self.chunker, self.fingerprint, self.read = chunker, fingerprint, read
        self.report, self.batch_size = report, batch_size
        # id -> (chunks stored once the planned jobs are applied, hash, where, written here)
        self.seen: dict[str, tuple[int, str, str, bool]] = {}

    def jobs(self, docs: Iterator[SourceDoc | Skipped]) -> Iterator[Job]:
        """Plan ``docs`` in jobs of about ``batch_size`` chunks (skipped records reported)."""
        group: list[tuple[SourceDoc, list[str]]] = []
        n = 0
        for doc in docs:
            if isinstance(doc, Skipped):
                self.report.skip(doc.source, doc.reason)
                continue
            self.report.documents += 1
            chunks = self.chunker.chunk(doc.text)
            group.append((doc, chunks))
            n += len(chunks)
            if n >= self.batch_size:
                yield self.plan(group)
                group, n = [], 0
        if group:
            yield self.plan(group)

    def plan(self, group: list[tuple[SourceDoc, list[str]]]) -> Job:
        """Decide one group: duplicates, unchanged documents, stale chunks to delete."""
        n_read = len(group)
        last: dict[str, int] = {}
        for i, (doc, _) in enumerate(group):
            if doc.id in last:  # a duplicate inside the group: the later record replaces it
                self._duplicate(doc, group[last[doc.id]][0].where)
            last[doc.id] = i
        group = [group[i] for i in sorted(last.values())]
        fresh = [(d, c) for d, c in group if d.id not in self.seen]
        stored, tops = self._stored(fresh)
        docs, deletes = [], []
        for doc, chunks in group:
            h, n = doc_hash(doc, self.fingerprint), len(chunks)
            if doc.id in self.seen:  # in an earlier job: its chunks are (being) written
                old_n, old_h, where, written = self.seen[doc.id]
                self._duplicate(doc, where)
                if (old_n, old_h) == (n, h):
                    continue  # the same content again: nothing to change
                if not written:
                    self.report.unchanged -= 1
                    self.report.indexed += 1
                else:
                    self.report.chunks -= old_n
                deletes += [qc.point_id(doc.id, i) for i in range(n, old_n)]
            else:
                ids = [qc.point_id(doc.id, i) for i in range(n + 1)]
                if all(stored.get(p, {}).get("doc_hash") == h
                       and stored[p].get("n_chunks") == n for p in ids[:n]) \
                        and ids[n] not in stored:
                    self.report.unchanged += 1
                    self.seen[doc.id] = (n, h, doc.where, False)
                    continue
                deletes += [p for p in (qc.point_id(doc.id, i) for i in range(n, tops[doc.id]))
                            if p in stored]
                self.report.indexed += 1
            self.seen[doc.id] = (n, h, doc.where, True)
            self.report.chunks += n
            docs.append(Planned(doc, chunks, h))
        self.report.pruned += len(deletes)
        return Job(docs, deletes, n_read=n_read)

    def _stored(self, fresh: list[tuple[SourceDoc, list[str]]]
                ) -> tuple[dict[str, dict], dict[str, int]]:
        """Stored payloads of chunks 0..n of each new document (n: its new chunk count), then
        of every further chunk up to the largest chunk count a stored chunk records; and per
        document, the number of chunk slots that may be stored."""
        ids = [qc.point_id(d.id, i) for d, c in fresh for i in range(len(c) + 1)]
        stored = self.read(ids) if ids else {}
        tops, more = {}, []
        for d, c in fresh:
            own = [qc.point_id(d.id, i) for i in range(len(c) + 1)]
            tops[d.id] = max([i + 1 for i, p in enumerate(own) if p in stored]
                             + [_count(stored[p]) for p in own if p in stored], default=0)
            more += [qc.point_id(d.id, i) for i in range(len(c) + 1, tops[d.id])]
        if more:
            stored.update(self.read(more))
        return stored, tops

    def _duplicate(self, doc: SourceDoc, earlier: str) -> None:
        self.report.duplicates += 1
        if len(self.report.duplicate_examples) < MAX_EXAMPLES:
            hint = ("; several files share ids: id_scope='file' (--id-scope file) keeps "
                    "them apart") if _file(earlier) != _file(doc.where) else ""
            self.report.duplicate_examples.append(
                (doc.where, f"id {doc.id!r} also at {earlier}: this later record replaces "
                            f"it{hint}"))

    def is_seen(self, doc_id: Any) -> bool:
        return doc_id in self.seen


def _count(payload: dict) -> int:
    n = payload.get("n_chunks", 0)
    return n if isinstance(n, int) and not isinstance(n, bool) else 0


def _file(where: str) -> str:
    """The file part of ``path:line`` (``items[i]`` for in-memory items)."""
    head, sep, tail = where.rpartition(":")
    return head if sep and tail.isdigit() else where
