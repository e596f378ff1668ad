"""``index_dataset``: the Qdrant indexer's run, spread over a Ray Data pipeline.

Three stages, all running the indexer's own code (``_plan.RunPlan``, ``Job.points``,
``QdrantIndexer.write``), so Ray-indexed and single-process collections are identical:

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
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llm2vec_rag.config import EncoderConfig
from llm2vec_rag.spec import EncoderSpec

from . import _qdrant_config as qc
from ._plan import IndexReport, Job, Planned, RunPlan, encoder_fingerprint
from .sources import Skipped, SourceDoc, _from_record

TODO, UNCHANGED, SKIPPED = "todo", "unchanged", "skipped"


@dataclass
class EncoderIdentity:
    """What chunking, hashing and the collection check need from an encoder, without its
    weights: measured once by a probe task that loads the real encoder, so it cannot drift."""

    config: EncoderConfig
    tokenizer: Any
    dim: int
    source: str
    text_tokens: int  # max_text_tokens(document instruction)

    def max_text_tokens(self, instruction: str | None = None) -> int:
        if (instruction or "") != (self.config.document_instruction or ""):
            raise ValueError("EncoderIdentity knows the text budget of documents only")
        return self.text_tokens

    def encode(self, *args, **kwargs):  # the indexer checks for the encoder surface
        raise RuntimeError("EncoderIdentity has no weights: the Ray actors embed")

    encode_queries = encode_documents = encode


def _identity(spec: EncoderSpec) -> EncoderIdentity:
    enc = spec.load()
    doc = enc.config.document_instruction
    return EncoderIdentity(enc.config, enc.tokenizer, int(enc.dim), enc.source,
                           enc.max_text_tokens(doc))


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
    chunk_size: int
    chunk_overlap: int | None
    text_column: str
    id_column: str
    metadata_column: str | None
    server: dict | None  # url, api_key, retries, backoff, timeout: the actors write
    snapshot: dict[str, dict] | None  # embedded store: bookkeeping payloads, read up front
    token: str = ""


_CACHE: dict[str, Any] = {}  # per worker process: the run's chunker and server indexer


def _server_indexer(job: _Job, encoder):
    from .qdrant import QdrantIndexer

    s = job.server
    return QdrantIndexer(encoder, job.collection, url=s["url"], api_key=s["api_key"],
                         retries=s["retries"], backoff=s["backoff"], timeout=s["timeout"],
                         chunk_size=job.chunk_size, chunk_overlap=job.chunk_overlap)


def _tools(job: _Job):
    if job.token not in _CACHE:
        from .chunking import TokenChunker

        chunker = TokenChunker(job.identity.tokenizer, job.chunk_size, job.chunk_overlap)
        _CACHE.clear()
        _CACHE[job.token] = (chunker, _server_indexer(job, job.identity) if job.server
                             else None)
    return _CACHE[job.token]


def _record(row: dict, job: _Job, where: str) -> SourceDoc | Skipped:
    """A row as the indexer's document: text, id, and the other columns as metadata (or the
    ``metadata_column``'s dict / JSON). Null columns are left out: Arrow cannot tell a
    missing key from a null one."""
    rec = {k: v for k, v in row.items() if v is not None}
    if job.metadata_column is not None:
        meta = rec.pop(job.metadata_column, None) or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        rec = {**meta, **{k: rec[k] for k in (job.text_column, job.id_column) if k in rec}}
    return _from_record(rec, where, job.text_column, job.id_column, strict=False)


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

    chunker, indexer = _tools(job)
    read_store = indexer.read_stored if indexer is not None else (
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
        self.encode_batch_size = encode_batch_size
        self.indexer = _server_indexer(job, self.encoder) if job.server else None

    def __call__(self, table):
        import pyarrow as pa

        rows = [{**r, "chunks": r["chunks"] or [], "deletes": r["deletes"] or []}
                for r in table.to_pylist()]  # Arrow gives null for empty lists
        todo = [r for r in rows if r["status"] == TODO]
        texts = [c for r in todo for c in r["chunks"]]
        vectors = (self.encoder.encode_documents(texts, normalize=True, show_progress=False,
                                                 batch_size=self.encode_batch_size)
                   if texts else np.zeros((0, self.encoder.dim), np.float32))
        if self.indexer is not None:  # a server: every actor writes its own batches
            job = Job([Planned(_doc(r), r["chunks"], r["doc_hash"]) for r in todo],
                      [d for r in todo for d in r["deletes"]])
            self.indexer.write(job, vectors)
        row = 0
        for r in rows:
            n = len(r["chunks"]) if r["status"] == TODO else 0
            r["vectors"] = vectors[row: row + n].tobytes() if n else None
            r["written"] = self.indexer is not None and n > 0
            row += n
        return pa.Table.from_pylist(rows, schema=_schema(
            [("vectors", pa.binary()), ("written", pa.bool_())]))


def _doc(r: dict) -> SourceDoc:
    return SourceDoc(r["doc_id"], r["text"], json.loads(r["metadata"]), r["where"])



def _late_embed(spec: EncoderSpec, texts: list[str]) -> np.ndarray:
    return spec.load().encode_documents(texts, normalize=True, show_progress=False)


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
                  **indexer_options: Any) -> IndexReport:
    """Index a Ray dataset of documents into Qdrant exactly as ``QdrantIndexer.index`` does.

    Rows are documents: ``text_column``, ``id_column`` (optional: the text's hash, as in the
    indexer) and metadata (the other columns, or the dict/JSON in ``metadata_column``).
    ``concurrency`` actors with ``num_gpus`` / ``num_cpus`` each (``threads_per_worker``
    torch threads) embed ``batch_size`` documents per call. ``indexer_options``: collection
    settings of ``QdrantIndexer`` (distance, on_disk, hnsw, quantization, shard_number...).
    The report counts what the collection holds afterwards, as the indexer's does.
    """
    import ray
    import ray.data

    from .qdrant import QdrantIndexer, _Uploader
    from .ray import _check_pool_args, _worker_spec, encoder_spec

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
    uploader = None
    try:
        indexer._ensure_collection(create=True)
        server = (dict(url=url, api_key=api_key, retries=retries, backoff=backoff,
                       timeout=timeout) if indexer._remote else None)
        snapshot = None if server else _bookkeeping(indexer)
        job = _Job(identity, collection, chunk_size, chunk_overlap, text_column, id_column,
                   metadata_column, server, snapshot, uuid.uuid4().hex)
        out = ds.map_batches(prepare, batch_size=batch_size, batch_format="pyarrow",
                             fn_kwargs=dict(job=job), num_cpus=prepare_num_cpus)
        out = out.map_batches(
            EmbedAndWrite, batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=concurrency), num_gpus=num_gpus or None,
            num_cpus=num_cpus, fn_constructor_kwargs=dict(
                spec=spec, job=job, encode_batch_size=encode_batch_size,
                threads=threads_per_worker))
        out.context.execution_options.preserve_order = True  # "the last record wins"
        uploader = None if server else _Uploader(indexer)
        plan = _drain(out, indexer, job, spec.replace(device="cpu"), report, uploader,
                      show_progress)
        if uploader is not None:
            uploader.close()
        if prune:
            report.pruned += indexer._prune(plan.is_seen)
    finally:
        if uploader is not None:
            uploader.stop()
        indexer.close()
    report.seconds = time.perf_counter() - start
    return report


def _bookkeeping(indexer) -> dict[str, dict]:
    """The embedded store's bookkeeping payloads, in one scan (it is small by design)."""
    out, offset = {}, None
    while True:
        page, offset = indexer._call("list points", indexer.client.scroll, indexer.collection,
                                     limit=1000, offset=offset,
                                     with_payload=["doc_id", "doc_hash", "n_chunks"],
                                     with_vectors=False)
        out.update((str(p.id), p.payload or {}) for p in page)
        if offset is None:
            return out


def _drain(ds, indexer, job: _Job, cpu_spec: EncoderSpec, report: IndexReport, uploader,
           show_progress: bool) -> RunPlan:
    """Stage 3 (driver): the run-wide plan, in source order; the embedded store's writes."""
    from tqdm.auto import tqdm

    observed: dict[str, dict] = {}
    read = ((lambda ids: {i: observed[i] for i in ids if i in observed}) if job.server else
            (lambda ids: {i: job.snapshot[i] for i in ids if i in job.snapshot}))
    plan = RunPlan(indexer.chunker, encoder_fingerprint(job.identity, indexer.chunker), read,
                   report, indexer.batch_size)
    slots: dict[str, int] = {}  # server: chunk slots any record of an id may have written
    bar = tqdm(disable=not show_progress, desc=f"index {indexer.collection}", unit="doc")
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
                texts = [c for p in missing for c in p.chunks]
                import ray

                vecs = ray.get(ray.remote(_late_embed).remote(cpu_spec, texts))
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
                indexer.write(final, stacked)
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
