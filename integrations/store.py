"""``QdrantStore``: one Qdrant collection as the indexers use it.

It owns the client (embedded ``path=`` / ``":memory:"``, or a server by ``url=`` +
``api_key=``), retries on a server's connection errors, the collection checks (creation,
dimension and distance, the record of the encoder that wrote it), writes (one planned job
at a time, or in a background :class:`Uploader`), scrolls, pruning, deletes and search by
vector. ``QdrantIndexer`` is an encoder + this store + a chunker; the Ray indexer uses the
store and the run plan (``_plan``) directly.

Points this project wrote are recognised by their id: ``uuid5(our namespace, doc_id, chunk)``
of the ``doc_id`` and ``chunk`` in their own payload, with our ``doc_hash`` beside them
(:func:`is_ours`). Another tool's points in the same collection (LlamaIndex's payloads carry
a ``doc_id`` too, with random ids) are never pruned, rewritten or counted as ours; collections
written before this rule are recognised by it as they are.

Example::

    with QdrantStore("docs", path="./qdrant_data") as store:
        hits = store.search(vector, k=5)            # qdrant ScoredPoint objects
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from llm2vec_rag.errors import UsageError

from . import _qdrant_config as qc
from . import hybrid as hb
from ._plan import Job
from .identity import ENCODER, MIXED, EncoderIdentity, dtype_hint, same_encoder
from .options import CollectionOptions, Connection, split_keywords

__all__ = ["QdrantStore", "Uploader", "is_ours"]

BOOKKEEPING = ["doc_id", "chunk", "doc_hash", "n_chunks"]


def is_ours(point_id: Any, payload: dict | None) -> bool:
    """A point this project wrote: its id is our id of its own ``doc_id`` and ``chunk``."""
    payload = payload or {}
    doc_id, chunk = payload.get("doc_id"), payload.get("chunk")
    if not isinstance(doc_id, str) or isinstance(chunk, bool) or not isinstance(chunk, int):
        return False
    return "doc_hash" in payload and str(point_id) == qc.point_id(doc_id, chunk)


class QdrantStore:
    """One collection: client, retries, checks, writes, scroll, prune, search by vector."""

    def __init__(self, collection: str = "docs", connection: Connection | None = None,
                 options: CollectionOptions | None = None, **keywords: Any) -> None:
        """``connection`` / ``options`` or their fields as keywords (``path=``, ``url=``,
        ``api_key=``, ``client=``, ``retries=``, ``distance=``, ``quantization=``...)."""
        if not isinstance(collection, str) or not collection:
            raise UsageError(f"collection must be a non-empty name, got {collection!r}")
        groups = split_keywords(keywords, {Connection: connection,
                                           CollectionOptions: options}, "QdrantStore")
        self.connection: Connection = groups[Connection]
        self.options: CollectionOptions = groups[CollectionOptions]
        self.collection = collection
        conn, opts = self.connection, self.options
        self.where = conn.where
        self.client = conn.client or qc.make_client(conn.path, conn.url, conn.api_key,
                                                    conn.timeout)
        self.remote = qc.is_remote(self.client)
        self.retries, self.backoff = (conn.retries, conn.backoff) if self.remote else (0, 0.0)
        self.create_args = dict(
            distance=qc.distance(opts.distance), on_disk=opts.on_disk, hnsw=qc.hnsw(opts.hnsw),
            quantization=qc.quantization(opts.quantization), shard_number=opts.shard_number,
            replication_factor=opts.replication_factor,
            payload_indexes=qc.payload_indexes(opts.payload_indexes))
        params = qc.search_params(self.create_args["quantization"], opts.rescore,
                                  opts.oversampling)
        self.search_params = params if self.remote else None  # local mode is exact
        self._lock = threading.Lock()
        self.checked = False
        self.recorded: dict = {}  # the collection's metadata, read by ensure()
        # hybrid (module ``hybrid``): a BM25 vector beside the dense one; ensure() adopts an
        # existing hybrid collection with the BM25 settings it records
        self.sparse = opts.sparse_encoder
        if self.sparse is None and opts.hybrid:
            from .sparse import BM25SparseEncoder

            self.sparse = BM25SparseEncoder()
        self.layout = "hybrid" if self.sparse is not None else "dense"

    # -- plumbing ---------------------------------------------------------------------------
    def call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``: with retries on a server (its HTTP client is
        thread-safe), under a lock in local mode (which is not)."""
        if self.remote:
            return qc.with_retries(lambda: fn(*args, **kwargs), what, self.where,
                                   self.retries, self.backoff)
        with self._lock:
            return fn(*args, **kwargs)

    def exists(self) -> bool:
        return self.call("check the collection", self.client.collection_exists,
                         self.collection)

    # -- collection checks ------------------------------------------------------------------
    def ensure(self, dim: int, record: dict, create: bool) -> dict:
        """Create the collection (``dim``-sized vectors, ``record`` as its metadata) or check
        that the existing one fits; returns its recorded metadata."""
        if self.checked:
            return self.recorded
        from qdrant_client import models

        args = self.create_args
        if not self.exists():
            if not create:
                raise UsageError(f"No collection {self.collection!r} at {self.where}: "
                                 f"index documents into it first")
            dense = models.VectorParams(size=dim, distance=args["distance"],
                                        on_disk=args["on_disk"] or None)
            vectors = {"vectors_config": dense}
            if self.sparse is not None:
                vectors = hb.collection_config(dense)
                record = {**record, hb.RECORD: self.sparse.config()}
            self.call("create the collection", self.client.create_collection,
                      self.collection, **vectors,
                      hnsw_config=args["hnsw"], quantization_config=args["quantization"],
                      shard_number=args["shard_number"],
                      replication_factor=args["replication_factor"], metadata=record)
            self.recorded = dict(record)
            indexes = {"doc_id": "keyword", **args["payload_indexes"]} if self.remote else {}
            for key, schema in indexes.items():  # local mode has no payload indexes
                self.call("create a payload index", self.client.create_payload_index,
                          self.collection, key, field_schema=schema)
        else:
            info = self.call("read the collection", self.client.get_collection,
                             self.collection)
            self.recorded = dict(getattr(info.config, "metadata", None) or {})
            self._check_vectors(info.config.params, dim, create)
        self.checked = True
        return self.recorded

    def _check_vectors(self, params: Any, dim: int, create: bool) -> None:
        distance = self.create_args["distance"]
        vectors = self._read_layout(params, create)
        if vectors.size != dim or vectors.distance != distance:
            raise UsageError(
                f"Collection {self.collection!r} holds {vectors.size}-dim vectors with "
                f"{vectors.distance.value} distance, but this encoder makes {dim}-dim vectors "
                f"and distance={distance.value} was asked: it was built with another model or "
                f"settings. Nothing was written. Index into a new collection, or delete this "
                f"one first (client.delete_collection({self.collection!r})).")

    def _read_layout(self, params: Any, create: bool) -> Any:
        """The collection's layout (dense-only or hybrid) and its dense ``VectorParams``:
        hybrid writes into a dense-only collection are refused; a hybrid collection is
        adopted with the BM25 settings it records."""
        from dataclasses import replace

        self.layout, vectors = hb.layout(params.vectors, params.sparse_vectors, self.collection)
        recorded = self.recorded.get(hb.RECORD)
        if self.layout == "dense" and self.sparse is not None and create:
            raise UsageError(
                f"Collection {self.collection!r} at {self.where} holds dense vectors only (it "
                f"was indexed without hybrid), so it has no room for BM25 vectors. Nothing was "
                f"written. Index into a new collection with hybrid=True (--hybrid), or delete "
                f"this one first (client.delete_collection({self.collection!r})).")
        if self.layout != "hybrid":
            return vectors
        if self.sparse is None:
            from .sparse import BM25SparseEncoder

            settings = {k: v for k, v in (recorded or {}).items() if k not in ("kind", "hash")}
            self.sparse = BM25SparseEncoder(**settings)
        elif recorded is not None and recorded != self.sparse.config():
            raise UsageError(
                f"Collection {self.collection!r} holds BM25 vectors made with {recorded}, but "
                f"this store's sparse encoder is {self.sparse.config()}: their term weights "
                f"would not match. Leave sparse_encoder out (the recorded settings are used), "
                f"or index into a new collection.")
        # the options travel to Ray actors: they write what this collection holds
        self.options = replace(self.options, hybrid=True, sparse_encoder=self.sparse)
        return vectors

    def record(self, metadata: dict) -> None:
        """Merge ``metadata`` into the collection's record (a server too old for collection
        metadata gets a warning, not a failure)."""
        try:
            self.call("record the encoder", self.client.update_collection, self.collection,
                      metadata=metadata)
            self.recorded.update(metadata)
        except qc.QdrantServerError as err:
            qc.logger.warning("could not record the encoder in the collection: %s", err)

    def check_search_encoder(self, identity: EncoderIdentity) -> None:
        """Refuse to search vectors another encoder wrote (or a mix of two encoders'). The
        record is read afresh: another process or store object may have re-indexed."""
        info = self.call("read the collection", self.client.get_collection, self.collection)
        self.recorded = dict(getattr(info.config, "metadata", None) or {})
        mixed = self.recorded.get(MIXED)
        if mixed:
            raise UsageError(
                f"Collection {self.collection!r} at {self.where} holds vectors of two "
                f"encoders ({mixed}): an index run with another encoder re-embedded only part "
                f"of it, and hits would compare two models' vectors. Re-index every document "
                f"with one encoder (or re-run with prune=True / --prune to drop the rest), or "
                f"pass allow_other_encoder=True (--allow-other-encoder) to search anyway.")
        if same_encoder(self.recorded, identity):
            return
        raise UsageError(
            f"Collection {self.collection!r} at {self.where} was written by the encoder "
            f"{self.recorded[ENCODER]!r}, but this search uses {identity.source!r}: its vectors "
            f"would be compared with another model's and the hits would be meaningless. Search "
            f"with the model that indexed it, re-index every document with this one, or pass "
            f"allow_other_encoder=True (--allow-other-encoder) if the two are known to share a "
            f"vector space.{dtype_hint(self.recorded[ENCODER], identity.source)}")

    # -- reads ------------------------------------------------------------------------------
    def read_stored(self, point_ids: list[str]) -> dict[str, dict]:
        """``{point id: payload}`` (bookkeeping keys only) of our stored points among ids."""
        out: dict[str, dict] = {}
        for i in range(0, len(point_ids), 1000):
            found = self.call("read existing points", self.client.retrieve, self.collection,
                              point_ids[i: i + 1000], with_payload=BOOKKEEPING,
                              with_vectors=False)
            out.update((str(p.id), p.payload or {}) for p in found if is_ours(p.id, p.payload))
        return out

    def scroll(self, payload: list[str] | bool = True, page: int = 1000,
               ours_only: bool = False) -> Iterator[tuple[str, dict]]:
        """Every point as ``(id, payload)`` (``payload``: keys to read, or True for all);
        ``ours_only``: only the points this project wrote."""
        keys = payload if payload is True or not ours_only else sorted({*payload,
                                                                       *BOOKKEEPING})
        offset = None
        while True:
            points, offset = self.call("list points", self.client.scroll, self.collection,
                                       limit=page, offset=offset, with_payload=keys,
                                       with_vectors=False)
            for p in points:
                if not ours_only or is_ours(p.id, p.payload):
                    yield str(p.id), p.payload or {}
            if offset is None:
                return

    def bookkeeping(self) -> dict[str, dict]:
        """Our points' bookkeeping payloads in one scan (the embedded store is small)."""
        return dict(self.scroll(BOOKKEEPING, ours_only=True))

    def count(self) -> int:
        """Points in the collection (0 when it does not exist yet)."""
        if not self.exists():
            return 0
        return self.call("count", self.client.count, self.collection, exact=True).count

    def search(self, vector: Any, k: int = 10, filter: Any = None, *, sparse: Any = None,
               mode: str = "dense", fusion: str = "rrf") -> list:
        """The ``k`` best points (qdrant ``ScoredPoint`` with payload), best first.
        ``filter``: ``{"metadata_key": value or [values]}`` or a qdrant ``models.Filter``.
        ``mode``: ``dense`` (``vector``), ``sparse`` (``sparse``, a BM25 query vector from
        ``store.sparse.encode_queries``) or ``hybrid`` (both, fused in Qdrant by ``fusion``:
        ``rrf`` or ``dbsf``); the last two need a hybrid collection."""
        hb.check_mode(mode, fusion)
        if not self.checked:  # the layout decides the query (named vectors or not)
            info = self.call("read the collection", self.client.get_collection,
                             self.collection)
            self._read_layout(info.config.params, create=False)
        if vector is not None:
            vector = vector.tolist() if hasattr(vector, "tolist") else list(vector)
        args = hb.query_args(self.layout, mode, fusion, k, vector, sparse,
                             qc.to_filter(filter), self.search_params)
        res = self.call("search", self.client.query_points, self.collection, **args,
                        with_payload=True)
        return res.points

    # -- writes -----------------------------------------------------------------------------
    def write(self, job: Job, vectors: Any) -> None:
        """Apply one planned job: delete its stale points, then upsert its chunks (with their
        BM25 vectors in a hybrid collection: cheap, computed here)."""
        if job.deletes:
            self.delete(job.deletes)
        if self.sparse is not None and len(vectors):
            sparse = self.sparse.encode_documents(job.texts)
            vectors = [hb.point_vector(d, s) for d, s in zip(vectors, sparse)]
        points = job.points(vectors)
        if points:
            self.call("upload points", self.client.upsert, self.collection, points=points,
                      wait=True)

    def delete(self, ids: list) -> None:
        from qdrant_client import models

        for i in range(0, len(ids), 1000):
            self.call("delete points", self.client.delete, self.collection,
                      points_selector=models.PointIdsList(points=ids[i: i + 1000]), wait=True)

    def prune(self, is_seen: Callable[[str], bool]) -> int:
        """Delete our points of documents not seen in this run; returns how many."""
        stale = [pid for pid, p in self.scroll(["doc_id"], ours_only=True)
                 if not is_seen(p["doc_id"])]
        self.delete(stale)
        return len(stale)

    def uploader(self) -> Uploader:
        """A background writer: jobs are written in order while the next one embeds."""
        return Uploader(self)

    def write_failure(self, err: BaseException, uploader: Uploader) -> OSError | None:
        """The error of an embedded store that could not write (a full disk): what is
        committed and what to do; None for any other failure."""
        cause = None if self.remote else qc.write_failure(err)
        if cause is None:
            return None
        uploader.stop()
        try:
            held = f"the collection now holds {self.count()} points"
        except Exception:  # noqa: BLE001 - the store may be unreadable too
            held = "the collection could not be counted"
        return OSError(
            f"The embedded Qdrant store {os.path.abspath(self.where)} could not write: "
            f"{cause}. Committed before the failure: {uploader.docs} documents "
            f"of this run written whole ({uploader.chunks} chunks); {held}. Nothing committed "
            f"is lost: free disk space (or index into another --qdrant-path) and re-run the "
            f"same command: it resumes, skipping documents already stored whole.")

    def delete_collection(self) -> None:
        self.call("delete the collection", self.client.delete_collection, self.collection)
        self.checked, self.recorded = False, {}

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> QdrantStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Uploader:
    """A background thread that writes jobs in order while the next one embeds.

    The queue is bounded (2 jobs), so memory stays flat when the store is slower.
    """

    def __init__(self, store: QdrantStore) -> None:
        self.store = store
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.docs = self.chunks = 0  # written (committed) so far
        self.thread = threading.Thread(target=self._run, name="qdrant-upload", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain after a failure so that put() never blocks forever
            try:
                self.store.write(*item)
                self.docs += len(item[0].docs)
                self.chunks += len(item[0].texts)
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                self.error = err

    def put(self, job: Job, vectors: Any) -> None:
        self._raise()
        self.queue.put((job, vectors))

    def close(self) -> None:
        """Wait for every job to be written; re-raise a write failure."""
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


def finish_run(store: QdrantStore, identity: EncoderIdentity, prior: dict,
               is_seen: Callable[[str], bool], prune: bool) -> int:
    """After a run's writes: prune (``prune=True``), refuse to leave two encoders' vectors
    in one collection, and record the encoder. ``prior``: the record before the run.
    Returns the number of points pruned.

    A run with another encoder than the one recorded re-embeds every document it reads; the
    documents it did not read keep the old encoder's vectors. Unless they are pruned, that
    mix is marked in the collection's record (searches refuse it) and raised as an error.
    """
    pruned = store.prune(is_seen) if prune else 0
    changed = bool(prior.get(MIXED)) or not same_encoder(prior, identity)
    if changed:
        left: dict[str, None] = {}
        for _, p in store.scroll(["doc_id"], ours_only=True):
            if not is_seen(p["doc_id"]):
                left[p["doc_id"]] = None
        if left:
            before = prior.get(MIXED) or prior.get(ENCODER)
            store.record({**identity.record(), MIXED: f"{before!r} and {identity.source!r}"})
            examples = ", ".join(repr(d) for d in list(left)[:5])
            raise UsageError(
                f"Collection {store.collection!r} at {store.where} was written by the encoder "
                f"{before!r}; this run re-embedded its own documents with {identity.source!r}, "
                f"but {len(left)} other documents (e.g. {examples}) keep the first encoder's "
                f"vectors, so the collection now mixes two models and searches refuse it. "
                f"Re-index every document with one encoder, or re-run with prune=True "
                f"(--prune) to delete the documents not in the run; or index into a new "
                f"collection.")
    wanted = {**identity.record(), MIXED: ""} if prior.get(MIXED) else identity.record()
    if any(store.recorded.get(k) != v for k, v in wanted.items()):
        store.record(wanted)
    return pruned
