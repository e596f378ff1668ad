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

from llm2vec_rag.spec import EncoderSpec

from ._ray_index import EncoderIdentity, index_dataset, probe_encoder

__all__ = ["EmbedBatch", "EncoderIdentity", "embed_dataset", "encoder_spec", "index_dataset",
           "probe_encoder"]

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


