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

import time
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from llm2vec_rag.errors import UsageError

from . import _qdrant_config as qc
from . import hybrid as hb
from ._encoder import check_encoder
from ._plan import IndexReport, Job, RunPlan, encoder_fingerprint
from .chunking import TokenChunker, check_chunk_size
from .embed import check_late_chunking, embed_chunks
from .identity import EncoderIdentity, identity_of
from .options import ChunkOptions, CollectionOptions, Connection, WriteOptions, split_keywords
from .sources import iter_documents
from .store import QdrantStore, finish_run

__all__ = ["ChunkOptions", "CollectionOptions", "Connection", "Hit", "IndexReport",
           "QdrantIndexer", "QdrantStore", "WriteOptions"]


@dataclass
class Hit:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float


class QdrantIndexer:
    """Index texts/dicts/files into one Qdrant collection with ``encoder``; search it.

    An encoder + a :class:`~llm2vec_rag.integrations.store.QdrantStore` (``.store``) + a
    :class:`~llm2vec_rag.integrations.chunking.TokenChunker` (``.chunker``). Options come in
    four groups (``connection``, ``options``, ``chunking``, ``writing``: see
    :mod:`~llm2vec_rag.integrations.options`) or as their flat keywords, as before
    (``path=``, ``url=``, ``api_key=``, ``chunk_size=``, ``quantization=``, ``batch_size=``...).
    """

    def __init__(self, encoder, collection: str = "docs", *,
                 connection: Connection | None = None, options: CollectionOptions | None = None,
                 chunking: ChunkOptions | None = None, writing: WriteOptions | None = None,
                 **keywords: Any) -> None:
        self.encoder = check_encoder(encoder)
        groups = split_keywords(keywords, {Connection: connection, CollectionOptions: options,
                                           ChunkOptions: chunking, WriteOptions: writing},
                                "QdrantIndexer")
        chunking, self.writing = groups[ChunkOptions], groups[WriteOptions]
        check_chunk_size(chunking.size,
                         encoder.max_text_tokens(encoder.config.document_instruction),
                         encoder.config.max_length)
        if not isinstance(collection, str) or not collection:
            raise UsageError(f"collection must be a non-empty name, got {collection!r}")
        self.chunker = TokenChunker.from_options(encoder.tokenizer, chunking)
        check_late_chunking(encoder, self.chunker)
        self.store = QdrantStore(collection, groups[Connection], groups[CollectionOptions])
        self.collection = collection
        self.client = self.store.client
        self.batch_size = self.writing.batch_size  # chunks per embed/upload group and batch
        self.max_batch_tokens = self.writing.max_batch_tokens  # None: the encoder's own

    @property
    def retries(self) -> int:
        return self.store.retries

    @property
    def backoff(self) -> float:
        return self.store.backoff

    @property
    def _create_args(self) -> dict:  # read by older callers; the store owns it
        return self.store.create_args

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
        documents no longer in ``items`` (only points this project wrote: another tool's
        points in a shared collection are left alone). A run with another encoder than the
        one the collection records re-embeds the documents it reads; documents it does not
        read would keep the other encoder's vectors, which is refused with an error unless
        ``prune=True`` deletes them. Memory grows by one small entry per document id.
        """
        start = time.perf_counter()
        report = IndexReport()
        docs = iter_documents(items, text_field=text_field, id_field=id_field,
                              one_per_line=one_per_line, id_scope=id_scope)
        identity = identity_of(self.encoder)
        prior = dict(self.store.ensure(identity.dim, identity.record(), create=True))
        identity = identity.as_recorded(prior)
        plan = self.plan_run(report, identity)
        uploader = self.store.uploader()
        bar = tqdm(disable=not show_progress, desc=f"index {self.collection}", unit="doc")
        try:
            for job in plan.jobs(docs):
                uploader.put(job, self._embed(job))
                bar.update(job.n_read)
                bar.set_postfix(chunks=report.chunks, skipped=report.skipped, refresh=False)
            uploader.close()
            report.pruned += finish_run(self.store, identity, prior, plan.is_seen, prune)
        except Exception as err:
            full = self.store.write_failure(err, uploader)
            if full is None:
                raise
            raise full from None
        finally:
            uploader.stop()
            bar.close()
        report.seconds = time.perf_counter() - start
        return report

    def plan_run(self, report: IndexReport, identity: EncoderIdentity | None = None) -> RunPlan:
        """The planner of one run against this collection (the Ray indexer builds the same)."""
        identity = identity or identity_of(self.encoder)
        return RunPlan(self.chunker, encoder_fingerprint(identity, self.chunker),
                       self.store.read_stored, report, self.batch_size)

    def run_plan(self, report: IndexReport) -> RunPlan:
        """Deprecated name of :meth:`plan_run` (it plans with the encoder's own source)."""
        return self.plan_run(report)

    def read_stored(self, point_ids: list[str]) -> dict[str, dict]:
        """``{point id: payload}`` (bookkeeping keys only) of the stored ones among ids."""
        return self.store.read_stored(point_ids)

    def write(self, job: Job, vectors) -> None:
        """Apply one planned job: delete its stale points, then upsert its chunks."""
        self.store.write(job, vectors)

    def _embed(self, job: Job):
        return embed_chunks(self.encoder, [(p.doc.text, p.chunks) for p in job.docs],
                            self.chunker, batch_size=self.batch_size,
                            max_batch_tokens=self.max_batch_tokens)

    # -- search -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, filter: Any = None,
               instruction: str | None = None, allow_other_encoder: bool = False,
               mode: str | None = None, fusion: str = "rrf") -> list[Hit]:
        """Top ``k`` chunks for ``query`` (encoded with the query instruction), best first.
        ``filter``: ``{"metadata_key": value or [values]}`` or a qdrant ``models.Filter``.
        Refuses a collection whose metadata records another encoder, unless
        ``allow_other_encoder``. ``mode``: ``dense``, ``sparse`` (BM25) or ``hybrid`` (both,
        fused in Qdrant by ``fusion``: ``rrf`` or ``dbsf``); default hybrid for a collection
        indexed with ``hybrid=True``, else dense. Hybrid scores are fusion scores."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"k must be an integer, got {k!r}")
        if k < 1:
            raise UsageError(f"k must be >= 1, got {k}")
        hb.check_mode(mode or "dense", fusion)
        identity = identity_of(self.encoder)
        self.store.ensure(identity.dim, identity.record(), create=False)
        mode = mode or ("hybrid" if self.store.layout == "hybrid" else "dense")
        hb.check_layout(self.store.layout, mode)  # before encoding anything
        if not allow_other_encoder and mode != "sparse":
            self.store.check_search_encoder(identity)
        vec = sparse = None
        if mode != "sparse":
            vec = self.encoder.encode_queries([query], instruction=instruction, normalize=True,
                                              show_progress=False)[0]
        if mode != "dense":
            sparse = self.store.sparse.encode_queries([query])[0]
        hits = []
        for p in self.store.search(vec, k, filter, sparse=sparse, mode=mode, fusion=fusion):
            payload = p.payload or {}
            text = payload.get("page_content", payload.get("text")) or qc.node_text(payload)
            hits.append(Hit(str(p.id), text, payload.get("metadata") or {}, float(p.score)))
        return hits

    def count(self) -> int:
        """Points in the collection (0 when it does not exist yet)."""
        return self.store.count()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> QdrantIndexer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
