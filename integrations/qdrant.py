"""Bulk-index documents into Qdrant with an LLM2Vec encoder, and search them.

Embedded by default (qdrant-client local mode in a folder: exact search, one process,
fine up to ~20k chunks); a Qdrant server or cluster by ``url=``. Re-runs are cheap and
safe: point ids are uuid5(document id, chunk number) and each point carries a hash of its
document, so unchanged documents are skipped, changed ones replaced (stale chunks deleted),
and a run killed half-way resumes without duplicates. ``prune=True`` deletes documents that
are no longer in the source. See ``_qdrant_config`` for the payload layout, which
LangChain's and LlamaIndex's Qdrant vector stores read as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from . import _qdrant_config as qc
from ._encoder import check_encoder
from .chunking import TokenChunker
from .sources import Skipped, SourceDoc, iter_documents

SPECIAL_TOKEN_MARGIN = 4  # BOS/EOS and friends, on top of a chunk's tokens


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float


@dataclass
class IndexReport:
    documents: int = 0  # documents read from the source
    indexed: int = 0  # new or changed documents, embedded and written
    unchanged: int = 0  # already in the collection with the same content: not re-embedded
    chunks: int = 0  # points written
    skipped: int = 0  # unreadable files, non-UTF-8 text, bad records, empty texts
    pruned: int = 0  # points deleted: stale chunks and (prune=True) removed documents
    seconds: float = 0.0
    skipped_examples: list[tuple[str, str]] = field(default_factory=list)  # first 20

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        lines = [f"{self.documents} documents ({self.indexed} indexed, {self.unchanged} "
                 f"unchanged) -> {self.chunks} chunks written, {self.pruned} pruned, "
                 f"{self.skipped} skipped, in {self.seconds:.1f}s ({self.docs_per_s:.1f} docs/s)"]
        lines += [f"  skipped {src}: {why}" for src, why in self.skipped_examples]
        if self.skipped > len(self.skipped_examples):
            lines.append(f"  ... and {self.skipped - len(self.skipped_examples)} more")
        return "\n".join(lines)


class QdrantIndexer:
    """Index texts/dicts/files into one Qdrant collection with ``encoder``; search it."""

    def __init__(self, encoder, collection: str = "docs", *, path: str | None = None,
                 url: str | None = None, api_key: str | None = None, distance: str = "cosine",
                 on_disk: bool = False, hnsw: dict | None = None, quantization: Any = None,
                 shard_number: int | None = None, replication_factor: int | None = None,
                 payload_indexes: list[str] | dict[str, str] | None = None,
                 chunk_size: int = 256, chunk_overlap: int | None = None, batch_size: int = 64,
                 retries: int = 5, backoff: float = 0.5, timeout: float | None = None,
                 client: Any = None) -> None:
        self.encoder = check_encoder(encoder)
        if not isinstance(collection, str) or not collection:
            raise ValueError(f"collection must be a non-empty name, got {collection!r}")
        max_length = encoder.config.max_length
        if chunk_size + SPECIAL_TOKEN_MARGIN > max_length:
            raise ValueError(f"chunk_size={chunk_size} tokens does not fit the encoder's "
                             f"max_length={max_length} (minus {SPECIAL_TOKEN_MARGIN} for special "
                             f"tokens): use chunk_size <= {max_length - SPECIAL_TOKEN_MARGIN}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.collection = collection
        self.chunker = TokenChunker(encoder.tokenizer, chunk_size, chunk_overlap)
        self.batch_size = batch_size
        self._where = url or path or "./qdrant_data"
        if url and api_key is None:
            api_key = os.environ.get("QDRANT_API_KEY")  # never logged
        self.client = client or qc.make_client(path, url, api_key, timeout)
        self._remote = qc.is_remote(self.client)
        self.retries, self.backoff = (retries, backoff) if self._remote else (0, 0.0)
        self._create_args = dict(
            distance=qc.distance(distance), on_disk=on_disk, hnsw=qc.hnsw(hnsw),
            quantization=qc.quantization(quantization), shard_number=shard_number,
            replication_factor=replication_factor,
            payload_indexes=qc.payload_indexes(payload_indexes))
        self._client_lock = threading.Lock()
        self._checked = False

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        if self._remote:  # the HTTP client is thread-safe; local mode is not
            return qc.with_retries(lambda: fn(*args, **kwargs), what, self._where,
                                   self.retries, self.backoff)
        with self._client_lock:
            return fn(*args, **kwargs)

    def _ensure_collection(self, create: bool) -> None:
        """Create the collection, or check that an existing one fits this encoder."""
        if self._checked:
            return
        from qdrant_client import models

        args = self._create_args
        if not self._call("check the collection", self.client.collection_exists,
                          self.collection):
            if not create:
                raise ValueError(f"No collection {self.collection!r} at {self._where}: "
                                 f"index documents into it first")
            self._call("create the collection", self.client.create_collection,
                       self.collection,
                       vectors_config=models.VectorParams(size=self.encoder.dim,
                                                          distance=args["distance"],
                                                          on_disk=args["on_disk"] or None),
                       hnsw_config=args["hnsw"], quantization_config=args["quantization"],
                       shard_number=args["shard_number"],
                       replication_factor=args["replication_factor"])
            indexes = {"doc_id": "keyword", **args["payload_indexes"]} if self._remote else {}
            for key, schema in indexes.items():  # local mode has no payload indexes
                self._call("create a payload index", self.client.create_payload_index,
                           self.collection, key, field_schema=schema)
        else:
            info = self._call("read the collection", self.client.get_collection, self.collection)
            vectors = info.config.params.vectors
            if isinstance(vectors, dict) and list(vectors) == [""]:
                vectors = vectors[""]  # langchain-qdrant's spelling of the unnamed vector
            if isinstance(vectors, dict):
                raise ValueError(
                    f"Collection {self.collection!r} uses named vectors {sorted(vectors)}: it was "
                    f"not written by llm2vec-rag. Choose another collection; nothing was written.")
            if vectors.size != self.encoder.dim or vectors.distance != args["distance"]:
                raise ValueError(
                    f"Collection {self.collection!r} holds {vectors.size}-dim vectors with "
                    f"{vectors.distance.value} distance, but this encoder makes "
                    f"{self.encoder.dim}-dim vectors and distance={args['distance'].value} was "
                    f"asked: it was built with another model or settings. Nothing was written. "
                    f"Index into a new collection, or delete this one first "
                    f"(client.delete_collection({self.collection!r})).")
        self._checked = True

    def _doc_hash(self, doc: SourceDoc) -> str:
        return doc_hash(doc, self.chunker, self.encoder)

    # -- indexing ---------------------------------------------------------------------------
    def index(self, items: Any, *, prune: bool = False, show_progress: bool = True,
              text_field: str = "text", id_field: str = "id",
              one_per_line: bool = False) -> IndexReport:
        """Index ``items``: a folder (.txt/.md/.jsonl inside), a file, or an iterable of
        texts, ``{"id", "text", **metadata}`` dicts or paths. Memory stays flat in the corpus
        size (``prune`` keeps the set of document ids). Returns an :class:`IndexReport`."""
        start = time.perf_counter()
        report = IndexReport()
        docs = iter_documents(items, text_field=text_field, id_field=id_field,
                              one_per_line=one_per_line)
        self._ensure_collection(create=True)
        seen: set[str] | None = set() if prune else None
        uploader = _Uploader(self, report)
        bar = tqdm(disable=not show_progress, desc=f"index {self.collection}", unit="doc")
        try:
            for group in self._groups(docs, report, seen):
                todo, deletes = self._plan(group, report)
                vectors = self._embed([c for _, chunks, _ in todo for c in chunks])
                uploader.put(deletes, self._points(todo, vectors), len(todo))
                bar.update(len(group))
                bar.set_postfix(chunks=report.chunks, skipped=report.skipped, refresh=False)
            uploader.close()
        finally:
            uploader.stop()
            bar.close()
        if seen is not None:
            report.pruned += self._prune(seen)
        report.seconds = time.perf_counter() - start
        return report

    def _groups(self, docs: Iterator, report: IndexReport,
                seen: set[str] | None) -> Iterator[list[tuple[SourceDoc, list[str]]]]:
        """Documents with their chunks, in groups of about ``batch_size`` chunks."""
        group, n = [], 0
        for doc in docs:
            if isinstance(doc, Skipped):
                report.skipped += 1
                if len(report.skipped_examples) < 20:
                    report.skipped_examples.append((doc.source, doc.reason))
                continue
            report.documents += 1
            if seen is not None:
                seen.add(doc.id)
            chunks = self.chunker.chunk(doc.text)
            group.append((doc, chunks))
            n += len(chunks)
            if n >= self.batch_size:
                yield group
                group, n = [], 0
        if group:
            yield group

    def _plan(self, group, report: IndexReport):
        return plan(group, self._stored(group), self._doc_hash, report)

    def _stored(self, group) -> dict[str, dict]:
        """Bookkeeping payload of the points ``plan`` looks at, by point id."""
        found = self._call("read existing points", self.client.retrieve, self.collection,
                           plan_ids(group), with_payload=["doc_hash", "n_chunks"],
                           with_vectors=False)
        return {str(p.id): p.payload or {} for p in found}

    def _embed(self, texts: list[str]):
        if not texts:
            return []
        return self.encoder.encode_documents(texts, normalize=True, show_progress=False)

    def _points(self, todo, vectors) -> list:
        return points(todo, vectors)

    def _prune(self, seen: set[str]) -> int:
        """Delete points of documents not seen in this run (only points this indexer wrote)."""
        stale, offset = [], None
        while True:
            page, offset = self._call("list points", self.client.scroll, self.collection,
                                      limit=1000, offset=offset, with_payload=["doc_id"],
                                      with_vectors=False)
            stale += [p.id for p in page
                      if (p.payload or {}).get("doc_id", None) is not None
                      and p.payload["doc_id"] not in seen]
            if offset is None:
                break
        for i in range(0, len(stale), 1000):
            self._delete(stale[i: i + 1000])
        return len(stale)

    def _delete(self, ids: list) -> None:
        from qdrant_client import models

        self._call("delete points", self.client.delete, self.collection,
                   points_selector=models.PointIdsList(points=ids), wait=True)

    # -- search -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, filter: Any = None,
               instruction: str | None = None) -> list[Hit]:
        """Top ``k`` chunks for ``query`` (encoded with the query instruction), best first.
        ``filter``: ``{"metadata_key": value or [values]}`` or a qdrant ``models.Filter``."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self._ensure_collection(create=False)
        vec = self.encoder.encode_queries([query], instruction=instruction, normalize=True,
                                          show_progress=False)[0]
        res = self._call("search", self.client.query_points, self.collection,
                         query=vec.tolist(), limit=k, query_filter=qc.to_filter(filter),
                         with_payload=True)
        hits = []
        for p in res.points:
            payload = p.payload or {}
            text = payload.get("page_content", payload.get("text", ""))
            hits.append(Hit(str(p.id), text, payload.get("metadata") or {}, float(p.score)))
        return hits

    def count(self) -> int:
        """Points in the collection (0 when it does not exist yet)."""
        if not self._call("check the collection", self.client.collection_exists,
                          self.collection):
            return 0
        return self._call("count", self.client.count, self.collection, exact=True).count

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> QdrantIndexer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def doc_hash(doc: SourceDoc, chunker: TokenChunker, encoder) -> str:
    """What a stored document is compared against: its content, chunking and encoder."""
    key = [doc.text, doc.metadata, chunker.size, chunker.overlap,
           encoder.config.document_instruction, encoder.config.pooling,
           getattr(encoder, "source", "")]  # another model: re-embed, never mix
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()


def plan_ids(group) -> list[str]:
    """The point ids whose stored payload ``plan`` needs: each document's first and last."""
    firsts = [qc.point_id(d.id, 0) for d, _ in group]
    lasts = [qc.point_id(d.id, len(c) - 1) for d, c in group]
    return list(dict.fromkeys(firsts + lasts))


def plan(group, stored: dict[str, dict], hash_fn, report: IndexReport):
    """Skip documents stored whole with the same hash; list stale chunks to delete.

    ``group``: (document, chunks) pairs; ``stored``: payload by point id (``plan_ids``).
    Returns (todo: (document, chunks, hash) triples, point ids to delete).
    """
    todo, deletes = [], []
    for doc, chunks in group:
        h = hash_fn(doc)
        if stored.get(qc.point_id(doc.id, len(chunks) - 1), {}).get("doc_hash") == h:
            report.unchanged += 1
            continue
        old_n = int(stored.get(qc.point_id(doc.id, 0), {}).get("n_chunks", 0))
        deletes += [qc.point_id(doc.id, i) for i in range(len(chunks), old_n)]
        todo.append((doc, chunks, h))
    return todo, deletes


def points(todo, vectors) -> list:
    """One ``PointStruct`` per chunk of the ``plan``'s todo, vectors in the same order."""
    from qdrant_client import models

    out, row = [], 0
    for doc, chunks, h in todo:
        for i, text in enumerate(chunks):
            out.append(models.PointStruct(
                id=qc.point_id(doc.id, i), vector=vectors[row].tolist(),
                payload=qc.payload(doc.id, i, len(chunks), text, doc.metadata, h)))
            row += 1
    return out


class _Uploader:
    """A background thread that deletes/upserts batches in order while the next one embeds.

    The queue is bounded (2 batches), so memory stays flat when the store is slower.
    """

    def __init__(self, indexer: QdrantIndexer, report: IndexReport) -> None:
        self.indexer, self.report = indexer, report
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="qdrant-upload", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ix = self.indexer
        while (job := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure so that put() never blocks forever
            deletes, points, n_docs = job
            try:
                if deletes:
                    ix._delete(deletes)
                    self.report.pruned += len(deletes)
                if points:
                    ix._call("upload points", ix.client.upsert, ix.collection, points=points,
                             wait=True)
                self.report.chunks += len(points)
                self.report.indexed += n_docs
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                self.error = err

    def put(self, deletes: list, points: list, n_docs: int) -> None:
        self._raise()
        self.queue.put((deletes, points, n_docs))

    def close(self) -> None:
        """Wait for every batch to be written; re-raise an upload failure."""
        self.queue.put(None)
        self.thread.join()
        self._raise()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
