"""``llm2vec-rag index --ray``: the same documents and options as ``index``, on Ray Data.

Files are read by the driver with the indexer's own reader (so ids and metadata are the
indexer's), then chunked, planned and embedded on the cluster by ``index_dataset``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ray")
    g.add_argument("--ray", action="store_true",
                   help="run on Ray Data (extra [ray]): chunk in CPU tasks, embed in actors")
    g.add_argument("--workers", type=int, default=1, help="--ray: embedding actors")
    g.add_argument("--gpus-per-worker", type=float, default=0, help="--ray: GPUs per actor")
    g.add_argument("--cpus-per-worker", type=float, default=1,
                   help="--ray: CPUs per actor (also its torch threads)")
    g.add_argument("--ray-address", default=None,
                   help="--ray: cluster to join (e.g. auto); default: start a local one")


def spec_from_args(args: argparse.Namespace):
    """Deprecated alias of ``llm2vec_rag.flags.spec_from_args`` (the one mapping)."""
    from llm2vec_rag.flags import spec_from_args as shared

    return shared(args)


def index_with_ray(args: argparse.Namespace, paths: list[Path], **collection_options):
    import ray

    from .ray import index_dataset
    from .ray_pool import init_ray
    from .sources import Skipped, iter_documents

    rows, skipped = [], []
    for doc in iter_documents(paths, text_field=args.field, id_field=args.id_field,
                              one_per_line=args.one_per_line, id_scope=args.id_scope):
        if isinstance(doc, Skipped):
            skipped.append(doc)
        else:
            rows.append({"id": doc.id, "text": doc.text, "meta": json.dumps(doc.metadata)})
    if not ray.is_initialized():
        init_ray(args.ray_address, include_dashboard=False, log_to_driver=False)
    report = index_dataset(
        ray.data.from_items(rows), spec_from_args(args), collection=args.collection,
        path=args.qdrant_path, url=args.qdrant_url, retries=args.retries,
        concurrency=args.workers, num_gpus=args.gpus_per_worker,
        num_cpus=args.cpus_per_worker, threads_per_worker=max(1, int(args.cpus_per_worker)),
        batch_size=args.batch_size, chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap, metadata_column="meta", prune=args.prune,
        late_chunking=args.late_chunking,
        show_progress=not args.no_progress, **collection_options)
    for s in skipped:
        report.skip(s.source, s.reason)
    return report
