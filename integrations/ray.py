"""Bulk embedding and indexing on Ray Data: chunking in CPU tasks, embedding in an actor pool.

Every actor builds its encoder from one :class:`~llm2vec_rag.spec.EncoderSpec` in
``__init__`` (weights are read by the worker, never shipped through the object store) and
embeds a batch in ``__call__`` - Ray Data's stateful-transform pattern. Faults are Ray's:
Ray Data restarts a dead actor and retries its batch (its actor-pool defaults are
``max_restarts=-1``, ``max_task_retries=-1``) and retries CPU tasks whose worker died;
writes are idempotent (deterministic point ids), so a retried batch never duplicates.

``index_dataset`` writes exactly what :class:`~llm2vec_rag.integrations.qdrant.QdrantIndexer`
writes (it runs the indexer's own hashing, planning and point-building functions), so a
collection indexed with Ray and one indexed without are identical and either run skips what
the other already stored. With a server (``url=``) the actors write in parallel; the
embedded store (``path=``) is single-process, so there the driver is the one writer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm2vec_rag.config import EncoderConfig
from llm2vec_rag.spec import EncoderSpec

from .sources import Skipped, SourceDoc, _from_record

_STATUS_TODO, _STATUS_UNCHANGED, _STATUS_SKIPPED = "todo", "unchanged", "skipped"


def encoder_spec(model: str | EncoderSpec | Any, adapters: Sequence[str] = (),
                 **options: Any) -> EncoderSpec:
    """A spec from a name (+ adapters, options), a spec, or an encoder that has one."""
    if isinstance(model, EncoderSpec):
        return model.replace(**options) if options else model
    if isinstance(model, str):
        return EncoderSpec(model, tuple(adapters), options.pop("backend", "torch"), options)
    spec = getattr(model, "spec", None)
    if spec is None:
        raise TypeError(f"model must be a name, an EncoderSpec or an encoder loaded by name "
                        f"(which has .spec), got {type(model).__name__}: Ray workers rebuild "
                        f"the encoder themselves")
    return spec.replace(**options) if options else spec


def _worker_spec(spec: EncoderSpec, num_gpus: float) -> EncoderSpec:
    """Actors with a GPU load on it (Ray sets CUDA_VISIBLE_DEVICES), the others on CPU."""
    return spec.replace(device="cuda" if num_gpus else "cpu")


# -- embed_dataset ---------------------------------------------------------------------------
class EmbedBatch:
    """Ray Data callable class: loads the encoder once per actor, embeds one batch per call."""

    def __init__(self, spec: EncoderSpec, text_column: str = "text",
                 output_column: str = "embedding", kind: str = "document",
                 instruction: str | None = None, normalize: bool = True,
                 encode_batch_size: int = 32) -> None:
        self.encoder = spec.load()
        self.text_column, self.output_column = text_column, output_column
        self.encode = (self.encoder.encode_queries if kind == "query"
                       else self.encoder.encode_documents)
        self.kwargs = dict(instruction=instruction, normalize=normalize,
                           batch_size=encode_batch_size, show_progress=False)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.text_column not in batch:
            raise KeyError(f"embed_dataset: no column {self.text_column!r} in the dataset "
                           f"(columns: {sorted(batch)}); pass text_column=")
        texts = [str(t) for t in batch[self.text_column]]
        batch[self.output_column] = self.encode(texts, **self.kwargs)
        return batch


def embed_dataset(ds, model: str | EncoderSpec | Any, adapters: Sequence[str] = (), *,
                  concurrency: int = 1, num_gpus: float = 0, num_cpus: float | None = None,
                  batch_size: int = 256, text_column: str = "text",
                  output_column: str = "embedding", kind: str = "document",
                  instruction: str | None = None, normalize: bool = True,
                  encode_batch_size: int = 32, **encoder_options: Any):
    """``ds`` with an ``output_column`` of float32 vectors, embedded by ``concurrency`` actors.

    ``kind``: "document" (the document instruction) or "query". ``num_gpus`` per actor
    (the actor then loads on ``cuda``); ``num_cpus`` per actor is also its thread count.
    ``batch_size`` rows go to an actor per call; ``encode_batch_size`` rows per forward pass.
    Lazy, like any Ray Data transform: nothing runs until the dataset is consumed.
    """
    import ray.data

    if kind not in ("document", "query"):
        raise ValueError(f"kind must be 'document' or 'query', got {kind!r}")
    _check_pool_args(concurrency, num_gpus, batch_size)
    spec = _worker_spec(encoder_spec(model, adapters, **encoder_options), num_gpus)
    return ds.map_batches(
        EmbedBatch, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_gpus=num_gpus or None,
        num_cpus=num_cpus,
        fn_constructor_kwargs=dict(spec=spec, text_column=text_column,
                                   output_column=output_column, kind=kind,
                                   instruction=instruction, normalize=normalize,
                                   encode_batch_size=encode_batch_size))


def _check_pool_args(concurrency: int, num_gpus: float, batch_size: int) -> None:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency (number of actors) must be an int >= 1, "
                         f"got {concurrency!r}")
    if num_gpus < 0:
        raise ValueError(f"num_gpus (per actor) must be >= 0, got {num_gpus!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")


# -- index_dataset: what the driver learns once ----------------------------------------------
@dataclass
class EncoderIdentity:
    """What hashing, chunking and the collection check need from an encoder, without weights:
    measured once by a probe task that loads the real encoder (so it cannot drift from it)."""

    config: EncoderConfig
    tokenizer: Any
    dim: int
    source: str

    def encode(self, *args, **kwargs):  # the indexer checks for the encoder surface
        raise RuntimeError("EncoderIdentity has no weights: Ray actors do the embedding")

    encode_queries = encode_documents = encode


def probe_encoder(spec: EncoderSpec, num_gpus: float = 0) -> EncoderIdentity:
    """Load the encoder once on the cluster and return its identity (dim, config, source)."""
    import ray

    def probe(spec: EncoderSpec) -> EncoderIdentity:
        enc = spec.load()
        return EncoderIdentity(enc.config, enc.tokenizer, int(enc.dim), enc.source)

    task = ray.remote(probe).options(num_gpus=num_gpus or None, max_retries=3)
    return ray.get(task.remote(spec))


# -- index_dataset: CPU tasks read, chunk and plan ------------------------------------------
_PREPARE_SCHEMA = None


def _prepare_schema():
    import pyarrow as pa

    global _PREPARE_SCHEMA
    if _PREPARE_SCHEMA is None:
        _PREPARE_SCHEMA = pa.schema([
            ("doc_id", pa.string()), ("status", pa.string()), ("chunks", pa.list_(pa.string())),
            ("doc_hash", pa.string()), ("metadata", pa.string()),
            ("deletes", pa.list_(pa.string())), ("where", pa.string()), ("reason", pa.string())])
    return _PREPARE_SCHEMA


@dataclass
class _Job:
    """Everything a prepare task or a writing actor needs, shipped once through the store."""

    identity: EncoderIdentity
    collection: str
    chunk_size: int
    chunk_overlap: int | None
    text_column: str
    id_column: str
    metadata_column: str | None
    server: dict | None  # url, api_key, retries, backoff, timeout: the workers write
    stored: dict[str, dict] | None  # embedded store: bookkeeping payload read by the driver
    token: str = ""  # names the job in a worker's cache


_CACHE: dict[str, Any] = {}  # per worker process: one chunker/indexer per job


def _server_indexer(job: _Job, encoder):
    from .qdrant import QdrantIndexer

    s = job.server
    return QdrantIndexer(encoder, job.collection, url=s["url"], api_key=s["api_key"],
                         retries=s["retries"], backoff=s["backoff"], timeout=s["timeout"],
                         chunk_size=job.chunk_size, chunk_overlap=job.chunk_overlap)


def _record(row: dict, job: _Job, where: str) -> SourceDoc | Skipped:
    """A dataset row as the indexer's document: text, id, and the other columns as metadata
    (or the ``metadata_column``'s dict / JSON). Null columns are left out: Arrow cannot tell a
    missing key from a null one."""
    rec = {k: v for k, v in row.items() if v is not None}
    if job.metadata_column is not None:
        meta = rec.pop(job.metadata_column, None) or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        rec = {**meta, **{k: rec[k] for k in (job.text_column, job.id_column) if k in rec}}
    return _from_record(rec, where, job.text_column, job.id_column, strict=False)


def _prepare(table, job: _Job):
    """Rows -> one row per document: its chunks, hash, and plan (todo / unchanged / skipped)."""
    import pyarrow as pa

    from .chunking import TokenChunker
    from .qdrant import IndexReport, doc_hash, plan

    key = job.token
    if key not in _CACHE:
        chunker = TokenChunker(job.identity.tokenizer, job.chunk_size, job.chunk_overlap)
        indexer = _server_indexer(job, job.identity) if job.server else None
        _CACHE.clear()
        _CACHE[key] = (chunker, indexer)
    chunker, indexer = _CACHE[key]
    out, group = [], []
    for n, row in enumerate(table.to_pylist()):
        doc = _record(row, job, f"row {row.get(job.id_column, n)!s}")
        if isinstance(doc, Skipped):
            out.append(dict(status=_STATUS_SKIPPED, where=doc.source, reason=doc.reason))
            continue
        group.append((doc, chunker.chunk(doc.text)))
    if group:
        stored = indexer._stored(group) if indexer is not None else job.stored
        hash_fn = lambda d: doc_hash(d, chunker, job.identity)  # noqa: E731
        for doc, chunks in group:  # the indexer's own plan, one document at a time
            todo, deletes = plan([(doc, chunks)], stored, hash_fn, IndexReport())
            if not todo:
                out.append(dict(doc_id=doc.id, status=_STATUS_UNCHANGED))
                continue
            out.append(dict(doc_id=doc.id, status=_STATUS_TODO, chunks=chunks,
                            doc_hash=todo[0][2], metadata=json.dumps(doc.metadata),
                            deletes=deletes))
    return pa.Table.from_pylist(out, schema=_prepare_schema())


# -- index_dataset: actors embed (and, with a server, write) ---------------------------------
class EmbedAndWrite:
    """Ray Data callable class: embeds the chunks of the documents to (re)index; with a server
    it deletes stale chunks and upserts the points itself, else it returns the vectors."""

    def __init__(self, spec: EncoderSpec, job: _Job, encode_batch_size: int = 32,
                 threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.encoder = spec.load()
        self.job, self.encode_batch_size = job, encode_batch_size
        self.indexer = _server_indexer(job, self.encoder) if job.server else None

    def __call__(self, table):
        import pyarrow as pa

        from .qdrant import points

        rows = [{**r, "chunks": r["chunks"] or [], "deletes": r["deletes"] or []}
                for r in table.to_pylist()]  # Arrow gives null for the empty lists
        todo = [r for r in rows if r["status"] == _STATUS_TODO]
        texts = [c for r in todo for c in r["chunks"]]
        vectors = (self.encoder.encode_documents(texts, normalize=True, show_progress=False,
                                                 batch_size=self.encode_batch_size)
                   if texts else np.zeros((0, self.encoder.dim), np.float32))
        blobs, row = {}, 0
        for r in todo:
            n = len(r["chunks"])
            blobs[r["doc_id"]] = vectors[row: row + n]
            row += n
        if self.indexer is not None:  # server: this actor writes, in parallel with the others
            ix = self.indexer
            deletes = [pid for r in todo for pid in r["deletes"]]
            if deletes:
                ix._delete(deletes)
            pts = points([(_doc(r), r["chunks"], r["doc_hash"]) for r in todo], vectors)
            if pts:
                ix._call("upload points", ix.client.upsert, ix.collection, points=pts,
                         wait=True)
        out = []
        for r in rows:
            written = self.indexer is not None and r["status"] == _STATUS_TODO
            keep = r["status"] == _STATUS_TODO and self.indexer is None
            out.append({**r, "chunks": r["chunks"] if keep else [],
                        "n_chunks": len(r["chunks"]), "written": written,
                        "vectors": blobs[r["doc_id"]].tobytes() if keep else None})
        schema = _prepare_schema().append(pa.field("n_chunks", pa.int64())).append(
            pa.field("written", pa.bool_())).append(pa.field("vectors", pa.binary()))
        return pa.Table.from_pylist(out, schema=schema)


def _doc(row: dict) -> SourceDoc:
    return SourceDoc(row["doc_id"], "", json.loads(row["metadata"]))


# -- index_dataset: the driver -----------------------------------------------------------------
def index_dataset(ds, model: str | EncoderSpec | Any, adapters: Sequence[str] = (), *,
                  collection: str = "docs", path: str | None = None, url: str | None = None,
                  api_key: str | None = None, concurrency: int = 1, num_gpus: float = 0,
                  num_cpus: float = 1, threads_per_worker: int | None = None,
                  batch_size: int = 64, encode_batch_size: int = 32, chunk_size: int = 256,
                  chunk_overlap: int | None = None, text_column: str = "text",
                  id_column: str = "id", metadata_column: str | None = None,
                  prune: bool = False, retries: int = 5, backoff: float = 0.5,
                  timeout: float | None = None, prepare_num_cpus: float = 0.5,
                  show_progress: bool = False, encoder_options: dict | None = None,
                  **indexer_options: Any):
    """Index a Ray dataset of documents into Qdrant exactly as ``QdrantIndexer.index`` would.

    Rows are documents: ``text_column``, ``id_column`` (optional: the text's hash, as in the
    indexer) and metadata (the other columns, or the dict/JSON in ``metadata_column``).
    ``concurrency`` actors with ``num_gpus`` / ``num_cpus`` each embed ``batch_size``
    documents per call. ``indexer_options``: the collection settings of ``QdrantIndexer``
    (distance, on_disk, hnsw, quantization, shard_number, ...). Returns an ``IndexReport``.
    """
    import os
    import uuid

    import ray
    import ray.data

    from .qdrant import IndexReport, QdrantIndexer

    start = time.perf_counter()
    _check_pool_args(concurrency, num_gpus, batch_size)
    if not ray.is_initialized():
        ray.init()
    spec = _worker_spec(encoder_spec(model, adapters, **(encoder_options or {})), num_gpus)
    identity = probe_encoder(spec, num_gpus)
    if url and api_key is None:
        api_key = os.environ.get("QDRANT_API_KEY")  # never logged
    indexer = QdrantIndexer(identity, collection, path=path, url=url, api_key=api_key,
                            retries=retries, backoff=backoff, timeout=timeout,
                            chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            batch_size=batch_size, **indexer_options)
    report = IndexReport()
    try:
        indexer._ensure_collection(create=True)
        server = (dict(url=url, api_key=api_key, retries=retries, backoff=backoff,
                       timeout=timeout) if url else None)
        job = _Job(identity, collection, chunk_size, chunk_overlap, text_column, id_column,
                   metadata_column, server, None if server else _bookkeeping(indexer),
                   uuid.uuid4().hex)
        prepared = ds.map_batches(_prepare, batch_size=batch_size, batch_format="pyarrow",
                                  fn_kwargs=dict(job=job), num_cpus=prepare_num_cpus)
        embedded = prepared.map_batches(
            EmbedAndWrite, batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_gpus=num_gpus or None, num_cpus=num_cpus,
            fn_constructor_kwargs=dict(spec=spec, job=job,
                                       encode_batch_size=encode_batch_size,
                                       threads=threads_per_worker))
        _drain(embedded, indexer, identity.dim, report, prune, show_progress)
    finally:
        indexer.close()
    report.seconds = time.perf_counter() - start
    return report


def _bookkeeping(indexer) -> dict[str, dict]:
    """The embedded store's first/last-chunk payloads (what ``plan`` reads), in one scan."""
    out, offset = {}, None
    while True:
        page, offset = indexer._call("list points", indexer.client.scroll, indexer.collection,
                                     limit=1000, offset=offset,
                                     with_payload=["doc_hash", "n_chunks", "chunk"],
                                     with_vectors=False)
        for p in page:
            pl = p.payload or {}
            if pl.get("chunk") in (0, (pl.get("n_chunks") or 0) - 1):
                out[str(p.id)] = {k: pl[k] for k in ("doc_hash", "n_chunks") if k in pl}
        if offset is None:
            return out


def _drain(ds, indexer, dim: int, report, prune: bool, show_progress: bool) -> None:
    """Consume the pipeline: count, and (embedded store) write through the one uploader."""
    from tqdm.auto import tqdm

    from .qdrant import _Uploader, points

    seen: set[str] | None = set() if prune else None
    uploader = None if indexer._remote else _Uploader(indexer, report)
    bar = tqdm(disable=not show_progress, desc=f"index {indexer.collection}", unit="doc")
    try:
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            todo, deletes, n_docs = [], [], 0
            for r in table.to_pylist():
                r["deletes"] = r["deletes"] or []
                if r["status"] == _STATUS_SKIPPED:
                    report.skipped += 1
                    if len(report.skipped_examples) < 20:
                        report.skipped_examples.append((r["where"], r["reason"]))
                    continue
                report.documents += 1
                n_docs += 1
                if seen is not None:
                    seen.add(r["doc_id"])
                if r["status"] == _STATUS_UNCHANGED:
                    report.unchanged += 1
                elif r["written"]:  # an actor wrote it to the server
                    report.indexed += 1
                    report.chunks += r["n_chunks"]
                    report.pruned += len(r["deletes"])
                else:
                    vecs = np.frombuffer(r["vectors"], dtype=np.float32).reshape(-1, dim)
                    todo.append(((_doc(r), r["chunks"], r["doc_hash"]), vecs))
                    deletes += r["deletes"]
            if uploader is not None and (todo or deletes):
                vectors = (np.concatenate([v for _, v in todo]) if todo
                           else np.zeros((0, dim), np.float32))
                uploader.put(deletes, points([t for t, _ in todo], vectors), len(todo))
            bar.update(n_docs)
        if uploader is not None:
            uploader.close()
    finally:
        if uploader is not None:
            uploader.stop()
        bar.close()
    if seen is not None:
        report.pruned += indexer._prune(seen)
