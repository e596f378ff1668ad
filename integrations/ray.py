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

from collections.abc import Sequence
from typing import Any

import numpy as np

from llm2vec_rag.errors import UsageError
from llm2vec_rag.spec import EncoderSpec

from ._ray_index import index_dataset, probe_encoder
from .identity import EncoderIdentity
from .ray_pool import actor_cpus, check_pool_args, encoder_spec, logger, worker_spec

__all__ = ["EmbedBatch", "EncoderIdentity", "embed_dataset", "encoder_spec", "index_dataset",
           "probe_encoder"]

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
        column = batch[self.text_column]
        keep = np.array([isinstance(t, str) and bool(t.strip()) for t in column], dtype=bool)
        if not keep.all():  # None, NaN, numbers, empty texts: the indexer skips them too
            bad = [f"{t!r}" for t in column[~keep][:5]]
            logger.warning("embed_dataset: %d of %d rows skipped: %r is not a non-empty text "
                           "(e.g. %s)", int((~keep).sum()), len(keep), self.text_column,
                           ", ".join(bad))
            batch = {k: v[keep] for k, v in batch.items()}
            # a block of NaNs alone is a float column: keep the text column's type text
            batch[self.text_column] = np.array([str(t) for t in batch[self.text_column]],
                                               dtype=object)
        texts = [str(t) for t in batch[self.text_column]]
        batch[self.output_column] = (self.encode(texts, **self.kwargs) if texts else
                                     np.zeros((0, self.encoder.dim), np.float32))
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
    Rows whose text is not a non-empty string (None, NaN, a number, "") are dropped from the
    output with a warning naming them, never embedded as "None" or "nan". Lazy, like any Ray
    Data transform: nothing runs until the dataset is consumed (the actors' CPU share is
    sized now, from the cluster's CPUs, when Ray is already running).
    """
    import ray
    import ray.data

    if kind not in ("document", "query"):
        raise UsageError(f"kind must be 'document' or 'query', got {kind!r}")
    check_pool_args(concurrency, num_gpus, batch_size)
    spec = worker_spec(encoder_spec(model, adapters, **encoder_options), num_gpus)
    if ray.is_initialized():
        num_cpus = actor_cpus(concurrency, num_cpus, reserve=0.5)
    return ds.map_batches(
        EmbedBatch, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_gpus=num_gpus or None,
        num_cpus=num_cpus,
        fn_constructor_kwargs=dict(spec=spec, text_column=text_column,
                                   output_column=output_column, kind=kind,
                                   instruction=instruction, normalize=normalize,
                                   encode_batch_size=encode_batch_size))
