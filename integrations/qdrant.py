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

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from . import _qdrant_config as qc
from ._encoder import check_encoder
from ._plan import IndexReport, Job, RunPlan, encoder_fingerprint
from .chunking import TokenChunker
from .sources import iter_documents

__all__ = ["Hit", "IndexReport", "QdrantIndexer"]


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float


class QdrantIndexer:
    """Index texts/dicts/files into one Qdrant collection with ``encoder``; search it."""

    def __init__(self, encoder, collection: str = "docs", *, path: str | None = None,
                 url: str | None = None, api_key: str | None = None, distance: str = "cosine",
                 on_disk: bool = False, hnsw: dict | None = None, quantization: Any = None,
                 shard_number: int | None = None, replication_factor: int | None = None,
                 payload_indexes: list[str] | dict[str, str] | None = None,
                 chunk_size: int = 256, chunk_overlap: int | None = None, batch_size: int = 64,
                 max_batch_tokens: int | None = None,
                 retries: int = 5, backoff: float = 0.5, timeout: float | None = None,
                 client: Any = None, rescore: bool = True,
                 oversampling: float | None = None) -> None:
        self.encoder = check_encoder(encoder)
        if not isinstance(collection, str) or not collection:
            raise ValueError(f"collection must be a non-empty name, got {collection!r}")
        room = encoder.max_text_tokens(encoder.config.document_instruction)
        if isinstance(chunk_size, int) and chunk_size > room:
            raise ValueError(f"chunk_size={chunk_size} tokens does not fit the encoder: "
                             f"max_length={encoder.config.max_length} leaves {room} tokens for "
                             f"a document's text (after special tokens and the document "
                             f"instruction): use chunk_size <= {room}")
        for name, value in (("batch_size", batch_size), ("retries", retries)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if retries < 0 or backoff < 0:
            raise ValueError(f"retries and backoff must be >= 0, got retries={retries}, "
                             f"backoff={backoff}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.collection = collection
        self.chunker = TokenChunker(encoder.tokenizer, chunk_size, chunk_overlap)
        self.batch_size = batch_size  # chunks per embed/upload group and per encode batch
        self.max_batch_tokens = max_batch_tokens  # None: the encoder's own budget
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
        params = qc.search_params(self._create_args["quantization"], rescore, oversampling)
        self._search_params = params if self._remote else None  # local mode is exact
        self._client_lock = threading.Lock()
        self._checked = False
        self._recorded: dict = {}

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
                       replication_factor=args["replication_factor"],
                       metadata=self._encoder_record())
            self._recorded = self._encoder_record()
            indexes = {"doc_id": "keyword", **args["payload_indexes"]} if self._remote else {}
            for key, schema in indexes.items():  # local mode has no payload indexes
                self._call("create a payload index", self.client.create_payload_index,
                           self.collection, key, field_schema=schema)
        else:
            info = self._call("read the collection", self.client.get_collection, self.collection)
            self._recorded = getattr(info.config, "metadata", None) or {}
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

    def _encoder_record(self) -> dict:
        """Collection metadata naming the encoder that wrote the vectors (search checks it)."""
        cfg = self.encoder.config
        return {"llm2vec_rag_encoder": getattr(self.encoder, "source", ""),
                "llm2vec_rag_pooling": cfg.pooling,
                "llm2vec_rag_document_instruction": cfg.document_instruction}

    def _check_search_encoder(self) -> None:
        recorded = self._recorded.get("llm2vec_rag_encoder")
        mine = getattr(self.encoder, "source", "")
        if recorded is None or not mine or recorded == mine:
            return  # a collection another tool wrote records no encoder: nothing to compare
        raise ValueError(
            f"Collection {self.collection!r} at {self._where} was written by the encoder "
            f"{recorded!r}, but this search uses {mine!r}: its vectors would be compared with "
            f"another model's and the hits would be meaningless. Search with the model that "
            f"indexed it, re-index with this one, or pass allow_other_encoder=True "
            f"(--allow-other-encoder) if the two are known to share a vector space.")

    # -- indexing ---------------------------------------------------------------------------
    def index(self, items: Any, *, prune: bool = False, show_progress: bool = True,
              text_field: str = "text", id_field: str = "id", one_per_line: bool = False,
              id_scope: str = "global") -> IndexReport:
        """Index ``items``: a folder (.txt/.md/.jsonl inside), a file, or an iterable of
        texts, ``{"id", "text", **metadata}`` dicts or paths. Returns an :class:`IndexReport`
        whose counts match what the collection holds afterwards.

        A document is its id, compared as text (``1`` and ``"1"`` are one document). The same
        id twice in one run is reported as a duplicate and the last record wins, wholly.
        Ids of JSONL records are global: two files in one folder with the same ids are
        duplicates, unless ``id_scope="file"`` prefixes each id with its file's relative
        path. Unchanged documents (every chunk stored with the same hash) are skipped;
        changed ones are replaced and their stale chunks deleted; ``prune=True`` deletes
        documents no longer in ``items``. Memory grows by one small entry per document id.
        """
        start = time.perf_counter()
        report = IndexReport()
        docs = iter_documents(items, text_field=text_field, id_field=id_field,
                              one_per_line=one_per_line, id_scope=id_scope)
        self._ensure_collection(create=True)
        plan = self.run_plan(report)
        uploader = _Uploader(self)
        bar = tqdm(disable=not show_progress, desc=f"index {self.collection}", unit="doc")
        try:
            for job in plan.jobs(docs):
                uploader.put(job, self._embed(job.texts))
                bar.update(job.n_read)
                bar.set_postfix(chunks=report.chunks, skipped=report.skipped, refresh=False)
            uploader.close()
            if prune:
                report.pruned += self._prune(plan.is_seen)
            if self._recorded != self._encoder_record():  # documents are re-embedded on change
                try:
                    self._call("record the encoder", self.client.update_collection,
                               self.collection, metadata=self._encoder_record())
                    self._recorded = self._encoder_record()
                except qc.QdrantServerError as err:  # a server without collection metadata
                    qc.logger.warning("could not record the encoder in the collection: %s", err)
        except Exception as err:
            if self._remote or not (cause := qc.write_failure(err)):
                raise
            raise self._disk_full(cause, uploader) from None
        finally:
            uploader.stop()
            bar.close()
        report.seconds = time.perf_counter() - start
        return report

    def _disk_full(self, cause: str, uploader: _Uploader) -> OSError:
        """The error of a local store that could not write: what is committed, what to do."""
        uploader.stop()
        try:
            held = f"the collection now holds {self.count()} points"
        except Exception:  # noqa: BLE001 - the store may be unreadable too
            held = "the collection could not be counted"
        return OSError(
            f"The embedded Qdrant store {os.path.abspath(self._where)} could not write: "
            f"{cause}. Committed before the failure: {uploader.docs} documents "
            f"of this run written whole ({uploader.chunks} chunks); {held}. Nothing committed "
            f"is lost: free disk space (or index into another --qdrant-path) and re-run the "
            f"same command: it resumes, skipping documents already stored whole.")

    def run_plan(self, report: IndexReport) -> RunPlan:
        """The planner of one run against this collection (shared with the Ray indexer)."""
        return RunPlan(self.chunker, encoder_fingerprint(self.encoder, self.chunker),
                       self.read_stored, report, self.batch_size)

    def read_stored(self, point_ids: list[str]) -> dict[str, dict]:
        """``{point id: payload}`` (bookkeeping keys only) of the stored ones among ids."""
        out: dict[str, dict] = {}
        for i in range(0, len(point_ids), 1000):
            found = self._call("read existing points", self.client.retrieve, self.collection,
                               point_ids[i: i + 1000],
                               with_payload=["doc_id", "doc_hash", "n_chunks"],
                               with_vectors=False)
            out.update((str(p.id), p.payload or {}) for p in found)
        return out

    def write(self, job: Job, vectors) -> None:
        """Apply one planned job: delete its stale points, then upsert its chunks."""
        if job.deletes:
            self._delete(job.deletes)
        points = job.points(vectors)
        if points:
            self._call("upload points", self.client.upsert, self.collection, points=points,
                       wait=True)

    def _embed(self, texts: list[str]):
        if not texts:
            return []
        return self.encoder.encode_documents(texts, normalize=True, show_progress=False,
                                             batch_size=self.batch_size,
                                             max_batch_tokens=self.max_batch_tokens)

    def _prune(self, is_seen) -> int:
        """Delete points of documents not seen in this run (only points this indexer wrote)."""
        stale, offset = [], None
        while True:
            page, offset = self._call("list points", self.client.scroll, self.collection,
                                      limit=1000, offset=offset, with_payload=["doc_id"],
                                      with_vectors=False)
            stale += [p.id for p in page
                      if (p.payload or {}).get("doc_id", None) is not None
                      and not is_seen(p.payload["doc_id"])]
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
               instruction: str | None = None, allow_other_encoder: bool = False) -> list[Hit]:
        """Top ``k`` chunks for ``query`` (encoded with the query instruction), best first.
        ``filter``: ``{"metadata_key": value or [values]}`` or a qdrant ``models.Filter``.
        Refuses a collection whose metadata records another encoder, unless
        ``allow_other_encoder``."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an integer, got {k!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self._ensure_collection(create=False)
        if not allow_other_encoder:
            self._check_search_encoder()
        vec = self.encoder.encode_queries([query], instruction=instruction, normalize=True,
                                          show_progress=False)[0]
        res = self._call("search", self.client.query_points, self.collection,
                         query=vec.tolist(), limit=k, query_filter=qc.to_filter(filter),
                         with_payload=True, search_params=self._search_params)
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


class _Uploader:
    """A background thread that applies jobs in order while the next one embeds.

    The queue is bounded (2 jobs), so memory stays flat when the store is slower.
    """

    def __init__(self, indexer: QdrantIndexer) -> None:
        self.indexer = indexer
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
                self.indexer.write(*item)
                self.docs += len(item[0].docs)
                self.chunks += len(item[0].texts)
            except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
                self.error = err

    def put(self, job: Job, vectors) -> None:
        self._raise()
        self.queue.put((job, vectors))

    def close(self) -> None:
        """Wait for every job to be written; re-raise an upload failure."""
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
