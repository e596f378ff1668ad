"""``index_dataset``: the Qdrant indexer's run, spread over a Ray Data pipeline.

Three stages, all running the indexer's own code (``_plan.RunPlan``, ``Job.points``,
``QdrantStore.write``), so Ray-indexed and single-process collections are identical:

1. CPU tasks turn rows into documents, chunk them and plan them against the store
   (a ``RunPlan`` over the batch) to decide which documents need embedding. They record
   the store payloads they read, so the driver later plans from the very same view.
2. Actors embed the chunks of those documents; with a server (``url=``) they also write
   them, in parallel.
3. The driver, in source order (``preserve_order``), runs the run-wide ``RunPlan``: the
   authority for the report, duplicates (the last record wins, wholly) and stale chunks.
   To the embedded store (single-process) it writes every job itself; with a server it
   only re-applies what the actors could not know: records whose id came earlier in the
   run (with every chunk slot any of them used deleted first).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from llm2vec_rag.spec import EncoderSpec

from . import _qdrant_config as qc
from ._plan import IndexReport, Job, Planned, RunPlan, encoder_fingerprint
from .chunking import TokenChunker, check_chunk_size
from .embed import embed_chunks
from .identity import EncoderIdentity, identity_of
from .options import (
    ChunkOptions,
    CollectionOptions,
    Columns,
    Connection,
    Workers,
    WriteOptions,
    split_keywords,
)
from .ray_pool import actor_cpus, check_pool_args, encoder_spec, init_ray, worker_spec
from .sources import Skipped, SourceDoc, from_record
from .store import QdrantStore, Uploader, finish_run

TODO, UNCHANGED, SKIPPED = "todo", "unchanged", "skipped"


def _identity(spec: EncoderSpec) -> EncoderIdentity:
    return identity_of(spec.load())


def probe_encoder(spec: EncoderSpec, num_gpus: float = 0) -> EncoderIdentity:
    """Load the encoder once on the cluster (one extra load per run) for its identity."""
    import ray

    task = ray.remote(_identity).options(num_gpus=num_gpus or None, max_retries=3)
    return ray.get(task.remote(spec))


@dataclass
class _Job:
    """What every task and actor of one run needs (shipped once with the stage)."""

    identity: EncoderIdentity
    collection: str
    chunking: ChunkOptions
    options: CollectionOptions
    text_column: str
    id_column: str
    metadata_column: str | None
    server: Connection | None  # a Qdrant server: the actors write
    snapshot: dict[str, dict] | None  # embedded store: bookkeeping payloads, read up front
    token: str = ""


_CACHE: dict[str, Any] = {}  # per worker process: the run's chunker and server store


def _server_store(job: _Job) -> QdrantStore:
    return QdrantStore(job.collection, job.server, job.options)


def _tools(job: _Job) -> tuple[TokenChunker, QdrantStore | None]:
    if job.token not in _CACHE:
        chunker = TokenChunker.from_options(job.identity.tokenizer, job.chunking)
        _CACHE.clear()
        _CACHE[job.token] = (chunker, _server_store(job) if job.server else None)
    return _CACHE[job.token]


def _record(row: dict, job: _Job, where: str) -> SourceDoc | Skipped:
    """A row as the indexer's document: text, id, and the other columns as metadata (or the
    ``metadata_column``'s dict / JSON object; a row whose metadata is anything else is
    skipped with the reason). Null columns are left out: Arrow cannot tell a missing key
    from a null one."""
    rec = {k: v for k, v in row.items() if v is not None}
    if job.metadata_column is not None:
        meta = rec.pop(job.metadata_column, None) or {}
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except (ValueError, RecursionError) as err:
                why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
                return Skipped(where, f"metadata column {job.metadata_column!r} is not valid "
                                      f"JSON ({why})")
        if not isinstance(meta, dict):
            return Skipped(where, f"metadata column {job.metadata_column!r} must hold a JSON "
                                  f"object (a dict), got {type(meta).__name__}")
        rec = {**meta, **{k: rec[k] for k in (job.text_column, job.id_column) if k in rec}}
    return from_record(rec, where, job.text_column, job.id_column, strict=False)


def _schema(extra=()):
    import pyarrow as pa

    return pa.schema([
        ("status", pa.string()), ("doc_id", pa.string()), ("text", pa.string()),
        ("metadata", pa.string()), ("where", pa.string()), ("reason", pa.string()),
        ("chunks", pa.list_(pa.string())), ("deletes", pa.list_(pa.string())),
        ("observed", pa.string()), ("doc_hash", pa.string()), *extra])


def prepare(table, job: _Job):
    """Stage 1 (CPU task): rows -> documents with chunks and the batch's plan."""
    import pyarrow as pa

    chunker, store = _tools(job)
    read_store = store.read_stored if store is not None else (
        lambda ids: {i: job.snapshot[i] for i in ids if i in job.snapshot})
    observed: dict[str, dict] = {}

    def read(ids):
        got = read_store(ids)
        observed.update(got)
        return got

    out, group = [], []
    for n, row in enumerate(table.to_pylist()):
        doc = _record(row, job, f"dataset row {row.get(job.id_column, n)!s}")
        if isinstance(doc, Skipped):
            out.append(dict(status=SKIPPED, where=doc.source, reason=doc.reason))
            continue
        group.append((doc, chunker.chunk(doc.text)))
        out.append(None)
    fingerprint = encoder_fingerprint(job.identity, chunker)
    planned = RunPlan(chunker, fingerprint, read, IndexReport()).plan(group)
    todo = {id(p.doc): p.doc_hash for p in planned.docs}
    slots = max([len(c) for _, c in group] + [int(v.get("n_chunks") or 0)
                                             for v in observed.values()], default=0) + 1
    owner = {qc.point_id(d.id, i): d.id for d, _ in group for i in range(slots)}
    deletes: dict[str, list[str]] = {}
    for pid in planned.deletes:
        deletes.setdefault(owner.get(pid, ""), []).append(pid)
    rows = iter(group)
    for i, slot in enumerate(out):
        if slot is not None:
            continue
        doc, chunks = next(rows)
        write = id(doc) in todo
        own = {k: v for k, v in observed.items() if owner.get(k) == doc.id}
        out[i] = dict(status=TODO if write else UNCHANGED, doc_id=doc.id, text=doc.text,
                      metadata=json.dumps(doc.metadata), where=doc.where, chunks=chunks,
                      deletes=deletes.get(doc.id, []) if write else [],
                      observed=json.dumps(own), doc_hash=todo.get(id(doc)))
    return pa.Table.from_pylist(out, schema=_schema())


class EmbedAndWrite:
    """Stage 2 (actor): embed the documents the batch plan marked; with a server, write them."""

    def __init__(self, spec: EncoderSpec, job: _Job, encode_batch_size: int = 32,
                 threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.encoder = spec.load()
        self.chunker = TokenChunker.from_options(self.encoder.tokenizer, job.chunking)
        self.encode_batch_size = encode_batch_size
        self.store = _server_store(job) if job.server else None

    def __call__(self, table):
        import pyarrow as pa

        rows = [{**r, "chunks": r["chunks"] or [], "deletes": r["deletes"] or []}
                for r in table.to_pylist()]  # Arrow gives null for empty lists
        todo = [r for r in rows if r["status"] == TODO]
        vectors = embed_chunks(self.encoder, [(r["text"], r["chunks"]) for r in todo],
                               self.chunker, batch_size=self.encode_batch_size)
        if self.store is not None:  # a server: every actor writes its own batches
            job = Job([Planned(_doc(r), r["chunks"], r["doc_hash"]) for r in todo],
                      [d for r in todo for d in r["deletes"]])
            self.store.write(job, vectors)
        row = 0
        for r in rows:
            n = len(r["chunks"]) if r["status"] == TODO else 0
            r["vectors"] = vectors[row: row + n].tobytes() if n else None
            r["written"] = self.store is not None and n > 0
            row += n
        return pa.Table.from_pylist(rows, schema=_schema(
            [("vectors", pa.binary()), ("written", pa.bool_())]))


def _doc(r: dict) -> SourceDoc:
    return SourceDoc(r["doc_id"], r["text"], json.loads(r["metadata"]), r["where"])



def _late_embed(spec: EncoderSpec, chunking: ChunkOptions,
                docs: list[tuple[str, list[str]]]) -> np.ndarray:
    encoder = spec.load()
    return embed_chunks(encoder, docs, TokenChunker.from_options(encoder.tokenizer, chunking))


def index_dataset(ds, model: str | EncoderSpec | Any, adapters: Sequence[str] = (), *,
                  collection: str = "docs", connection: Connection | None = None,
                  options: CollectionOptions | None = None,
                  chunking: ChunkOptions | None = None, writing: WriteOptions | None = None,
                  workers: Workers | None = None, columns: Columns | None = None,
                  prune: bool = False, show_progress: bool = False,
                  encoder_options: dict | None = None, **keywords: Any) -> IndexReport:
    """Index a Ray dataset of documents into Qdrant exactly as ``QdrantIndexer.index`` does.

    Rows are documents (``columns``: the text, the id, optional: the text's hash as in the
    indexer, and the metadata: the other columns, or the dict/JSON in ``columns.metadata``).
    ``workers.concurrency`` actors (``Workers``: GPUs, CPUs and torch threads each) embed
    ``writing.batch_size`` documents per call. The store, collection, chunking and writing
    options are ``QdrantIndexer``'s groups. Every group also takes its flat keywords, as
    before (``path=``, ``url=``, ``api_key=``, ``retries=``, ``chunk_size=``, ``batch_size=``,
    ``quantization=``, ``concurrency=``, ``num_cpus=``, ``threads_per_worker=``,
    ``text_column=``...; ``late_chunking=True`` is ``ChunkOptions(late=True)``: the vectors
    ``QdrantIndexer(late_chunking=True)`` stores). The report counts what the collection
    holds afterwards, as the indexer's does.
    """
    import ray
    import ray.data

    groups = split_keywords(keywords, {Connection: connection, CollectionOptions: options,
                                       ChunkOptions: chunking, WriteOptions: writing,
                                       Workers: workers, Columns: columns}, "index_dataset")
    conn, chunking, batch_size = (groups[Connection], groups[ChunkOptions],
                                  groups[WriteOptions].batch_size)
    w, cols = groups[Workers], groups[Columns]
    start = time.perf_counter()
    check_pool_args(w.concurrency, w.num_gpus, batch_size)
    if not ray.is_initialized():
        init_ray()
    num_cpus = actor_cpus(w.concurrency, w.num_cpus, w.prepare_num_cpus)
    spec = worker_spec(encoder_spec(model, adapters, **(encoder_options or {})), w.num_gpus)
    identity = probe_encoder(spec, w.num_gpus)
    check_chunk_size(chunking.size, identity.text_tokens, identity.config.max_length)
    store = QdrantStore(collection, conn, groups[CollectionOptions])
    report = IndexReport()
    uploader = None
    try:
        prior = dict(store.ensure(identity.dim, identity.record(), create=True))
        identity = identity.as_recorded(prior)
        server = replace(conn, client=None) if store.remote else None
        snapshot = None if server else store.bookkeeping()
        job = _Job(identity, collection, chunking, store.options, cols.text, cols.id,
                   cols.metadata, server, snapshot, uuid.uuid4().hex)
        out = ds.map_batches(prepare, batch_size=batch_size, batch_format="pyarrow",
                             fn_kwargs=dict(job=job), num_cpus=w.prepare_num_cpus)
        out = out.map_batches(
            EmbedAndWrite, batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=w.concurrency),
            num_gpus=w.num_gpus or None, num_cpus=num_cpus, fn_constructor_kwargs=dict(
                spec=spec, job=job, encode_batch_size=w.encode_batch_size, threads=w.threads))
        out.context.execution_options.preserve_order = True  # "the last record wins"
        uploader = None if server else store.uploader()
        chunker = TokenChunker.from_options(identity.tokenizer, chunking)
        plan = _drain(out, store, RunPlan(chunker, encoder_fingerprint(identity, chunker),
                                          _reader(job), report, batch_size),
                      job, spec.replace(device="cpu"), uploader, show_progress)
        if uploader is not None:
            uploader.close()
        report.pruned += finish_run(store, identity, prior, plan.is_seen, prune)
    finally:
        if uploader is not None:
            uploader.stop()
        store.close()
    report.seconds = time.perf_counter() - start
    return report


class _Reader:
    """The driver plan's view of the store: with a server, the payloads the CPU tasks read
    (``observed``, filled as batches arrive); else the snapshot read before the run."""

    def __init__(self, snapshot: dict[str, dict] | None) -> None:
        self.stored = snapshot if snapshot is not None else {}

    def __call__(self, ids: list[str]) -> dict[str, dict]:
        return {i: self.stored[i] for i in ids if i in self.stored}


def _reader(job: _Job) -> _Reader:
    return _Reader(None if job.server else job.snapshot)


def _drain(ds, store: QdrantStore, plan: RunPlan, job: _Job, cpu_spec: EncoderSpec,
           uploader: Uploader | None, show_progress: bool) -> RunPlan:
    """Stage 3 (driver): the run-wide plan, in source order; the embedded store's writes."""
    from tqdm.auto import tqdm

    report = plan.report
    observed = plan.read.stored if job.server else {}
    slots: dict[str, int] = {}  # server: chunk slots any record of an id may have written
    bar = tqdm(disable=not show_progress, desc=f"index {store.collection}", unit="doc")
    try:
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            group, vectors, written, repeats = [], {}, {}, set()
            for r in table.to_pylist():
                if r["status"] == SKIPPED:
                    report.skip(r["where"], r["reason"])
                    continue
                report.documents += 1
                doc, chunks = _doc(r), r["chunks"] or []
                if plan.is_seen(doc.id) or any(d.id == doc.id for d, _ in group):
                    repeats.add(doc.id)
                group.append((doc, chunks))
                stored = json.loads(r["observed"] or "{}")
                observed.update(stored)
                if r["vectors"] is not None:
                    vectors[id(doc)] = np.frombuffer(r["vectors"], np.float32).reshape(
                        len(chunks), job.identity.dim)
                written[id(doc)] = bool(r["written"])
                slots[doc.id] = max([slots.get(doc.id, 0), len(chunks)]
                                    + [int(v.get("n_chunks") or 0) for v in stored.values()]
                                    + [len(stored)])
            final = plan.plan(group)
            if job.server:  # the actors wrote; re-apply only what they could not know
                final = _fixups(final, written, repeats, slots)
            missing = [p for p in final.docs if id(p.doc) not in vectors]
            if missing:  # a repeated id whose content is back to what was stored
                import ray

                vecs = ray.get(ray.remote(_late_embed).remote(
                    cpu_spec, job.chunking, [(p.doc.text, p.chunks) for p in missing]))
                row = 0
                for p in missing:
                    vectors[id(p.doc)] = vecs[row: row + len(p.chunks)]
                    row += len(p.chunks)
            rows = [vectors[id(p.doc)] for p in final.docs]
            stacked = (np.concatenate(rows) if rows
                       else np.zeros((0, job.identity.dim), np.float32))
            if uploader is not None:
                uploader.put(final, stacked)
            elif final.docs or final.deletes:
                store.write(final, stacked)
            bar.update(len(group))
    finally:
        bar.close()
    return plan


def _fixups(final: Job, written: dict, repeats: set[str], slots: dict[str, int]) -> Job:
    """Server: the documents an actor did not write as planned - repeated ids (rewritten
    whole: every chunk slot any record of the id used is deleted first) and documents the
    batch plan thought unchanged."""
    docs = [p for p in final.docs if p.doc.id in repeats or not written.get(id(p.doc))]
    ids = {p.doc.id for p in docs}
    deletes = [d for d in final.deletes if any(d == qc.point_id(i, k) for i in ids
                                               for k in range(slots.get(i, 0)))]
    for p in docs:
        if p.doc.id in repeats:
            deletes += [qc.point_id(p.doc.id, k) for k in range(len(p.chunks),
                                                                 slots.get(p.doc.id, 0))]
    return Job(docs, list(dict.fromkeys(deletes)), final.n_read)
