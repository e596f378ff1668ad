"""``llm2vec-rag index`` and ``llm2vec-rag search``: the Qdrant indexer from the shell.

The API key of a Qdrant server comes from the QDRANT_API_KEY environment variable only
(a flag would land in shell history and process lists); it is never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm2vec_rag.errors import UsageError

from ._qdrant_config import QdrantServerError, StoreLockedError


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _store_flags() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("qdrant")
    g.add_argument("--collection", default="docs", help="collection name (default: docs)")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--qdrant-path", default=None,
                       help="embedded store folder (default: ./qdrant_data)")
    where.add_argument("--qdrant-url", default=None,
                       help="Qdrant server, e.g. http://localhost:6333 (API key: $QDRANT_API_KEY)")
    g.add_argument("--retries", type=_count, default=5,
                   help="server retries on connection errors (>= 0, default 5)")
    return p


def _indexer(args: argparse.Namespace, encoder, **options):
    from llm2vec_rag.integrations.qdrant import QdrantIndexer

    return QdrantIndexer(encoder, args.collection, path=args.qdrant_path, url=args.qdrant_url,
                         retries=args.retries, **options)


def _existing_collection(args: argparse.Namespace):
    """A client on the store, after checking that the collection to search exists."""
    import os

    from llm2vec_rag.integrations import _qdrant_config as qc

    api_key = os.environ.get("QDRANT_API_KEY") if args.qdrant_url else None
    client = qc.make_client(args.qdrant_path, args.qdrant_url, api_key, None)
    where = args.qdrant_url or args.qdrant_path or "./qdrant_data"
    try:
        exists = client.collection_exists(args.collection)
    except Exception:  # noqa: BLE001 - a server that does not answer: the indexer retries
        client.close()
        return None
    if not exists:
        names = sorted(c.name for c in client.get_collections().collections)
        client.close()
        raise UsageError(f"No collection {args.collection!r} at {where} (it has: "
                         f"{', '.join(names) or 'none'}): index documents into it first with "
                         f"`llm2vec-rag index --collection {args.collection} ...`, or pass "
                         "--collection/--qdrant-path/--qdrant-url of an existing one")
    return client


def _payload_indexes(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        key, _, schema = spec.partition(":")
        out[key] = schema or "keyword"
    return out


def cmd_index(args: argparse.Namespace) -> int:
    """Chunk, embed and upsert documents; re-runs skip unchanged documents and resume crashes."""
    paths = [Path(p) for p in args.inputs]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    from llm2vec_rag.flags import spec_from_args

    hnsw = {k: v for k, v in (("m", args.hnsw_m), ("ef_construct", args.hnsw_ef_construct))
            if v is not None}
    try:
        if args.ray:
            from .ray_cli import index_with_ray

            print(index_with_ray(args, paths, distance=args.distance, on_disk=args.on_disk,
                                 hnsw=hnsw or None, quantization=args.quantization,
                                 shard_number=args.shards, replication_factor=args.replicas,
                                 payload_indexes=_payload_indexes(args.payload_index),
                                 **({"hybrid": True} if args.hybrid else {})),
                  file=sys.stderr)
            return 0
        encoder = spec_from_args(args).load()
        with _indexer(args, encoder, distance=args.distance, on_disk=args.on_disk,
                      hnsw=hnsw or None, quantization=args.quantization,
                      shard_number=args.shards, replication_factor=args.replicas,
                      payload_indexes=_payload_indexes(args.payload_index),
                      chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap,
                      batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
                      late_chunking=args.late_chunking, hybrid=args.hybrid) as indexer:
            report = indexer.index(paths, prune=args.prune, show_progress=not args.no_progress,
                                   text_field=args.field, id_field=args.id_field,
                                   one_per_line=args.one_per_line, id_scope=args.id_scope)
    except (ConnectionError, QdrantServerError) as err:
        print(f"llm2vec-rag index: error: {err}", file=sys.stderr)
        return 1
    except StoreLockedError as err:
        print(f"llm2vec-rag index: error: {err.for_cli()}", file=sys.stderr)
        return 1
    print(report, file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Top-k chunks for a query, with score and metadata (--json: one JSON object per line)."""
    flt = {}
    for spec in args.filter:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UsageError(f"--filter {spec!r}: expected KEY=VALUE (a metadata key)")
        flt.setdefault(key, []).append(value)
    from llm2vec_rag.flags import spec_from_args

    try:
        client = _existing_collection(args)  # before the model loads: a typo fails at once
        with _indexer(args, spec_from_args(args).load(), client=client, distance=args.distance,
                      oversampling=args.oversampling) as indexer:
            hits = indexer.search(args.query, k=args.k, filter=flt or None,
                                  instruction=args.instruction,
                                  allow_other_encoder=args.allow_other_encoder,
                                  mode=args.mode, fusion=args.fusion)
    except (ConnectionError, QdrantServerError) as err:
        print(f"llm2vec-rag search: error: {err}", file=sys.stderr)
        return 1
    except StoreLockedError as err:
        print(f"llm2vec-rag search: error: {err.for_cli()}", file=sys.stderr)
        return 1
    for rank, hit in enumerate(hits, 1):
        if args.json:
            print(json.dumps({"rank": rank, "score": hit.score, "id": hit.id, "text": hit.text,
                              "metadata": hit.metadata}, ensure_ascii=False))
        else:
            snippet = " ".join(hit.text.split())[:160]
            print(f"{rank:>2}. {hit.score:.4f}  {hit.metadata.get('doc_id', '')}"
                  f"#{hit.metadata.get('chunk', 0)}\n    {snippet}")
    return 0


def add_commands(subparsers, model_flags: argparse.ArgumentParser) -> None:
    store = _store_flags()
    p = subparsers.add_parser("index", parents=[model_flags, store], help=cmd_index.__doc__,
                              description=cmd_index.__doc__)
    p.add_argument("inputs", nargs="+",
                   help="folders (.txt/.md/.jsonl inside), text/Markdown files, or .jsonl files")
    p.add_argument("--chunk-size", type=int, default=256, help="tokens per chunk (default 256)")
    p.add_argument("--chunk-overlap", type=int, default=None,
                   help="tokens shared by neighbouring chunks (default: size/8, at most 32)")
    p.add_argument("--batch-size", type=int, default=64, help="chunks per embed/upload batch")
    p.add_argument("--late-chunking", action="store_true",
                   help="pool each chunk from a forward pass over its whole document, so its "
                        "vector carries the document's context (same chunks, ids and payloads; "
                        "toggling it re-embeds)")
    p.add_argument("--max-batch-tokens", type=int, default=None,
                   help="most padded tokens per encode batch (default: the encoder's)")
    p.add_argument("--one-per-line", action="store_true",
                   help="each non-empty line of a text file is a document")
    p.add_argument("--field", default="text", help="JSONL field holding the text")
    p.add_argument("--id-field", default="id", help="JSONL field holding the document id")
    p.add_argument("--id-scope", choices=["global", "file"], default="global",
                   help="global: a JSONL id names one document across all files (repeats are "
                        "reported duplicates, the last kept); file: ids are per file "
                        "(stored as 'relative/path.jsonl#id')")
    p.add_argument("--prune", action="store_true",
                   help="delete documents that are no longer in the inputs")
    p.add_argument("--distance", default="cosine", help="cosine | dot | euclid | manhattan")
    p.add_argument("--on-disk", action="store_true", help="keep vectors on disk (server)")
    p.add_argument("--quantization", choices=["scalar", "int8", "binary"], default=None,
                   help="also store int8 (4x smaller) or 1-bit (32x) vectors; search rescores")
    p.add_argument("--hnsw-m", type=int, default=None,
                   help="HNSW graph links per node (default: Qdrant's, 16)")
    p.add_argument("--hnsw-ef-construct", type=int, default=None,
                   help="HNSW build-time candidate list size (default: Qdrant's, 100)")
    p.add_argument("--shards", type=int, default=None, help="shard number (cluster)")
    p.add_argument("--replicas", type=int, default=None, help="replication factor (cluster)")
    p.add_argument("--payload-index", action="append", default=[], metavar="KEY[:TYPE]",
                   help="index a metadata key on the server (repeatable; TYPE default keyword)")
    p.add_argument("--hybrid", action="store_true",
                   help="store a BM25 sparse vector beside the dense one in each point, so "
                        "`search --mode hybrid|sparse` can match exact terms (a new collection)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from .ray_cli import add_flags

    add_flags(p)
    p.set_defaults(func=cmd_index)

    p = subparsers.add_parser("search", parents=[model_flags, store], help=cmd_search.__doc__,
                              description=cmd_search.__doc__)
    p.add_argument("query", help="the query text (gets the model's query instruction)")
    p.add_argument("-k", "--k", type=int, default=10, help="hits to return (default 10)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata filter (repeatable; the same key twice means any of)")
    p.add_argument("--instruction", default=None,
                   help="query instruction (default: the model's configured one)")
    p.add_argument("--distance", default="cosine",
                   help="the distance the collection was indexed with (default cosine)")
    p.add_argument("--oversampling", type=float, default=None,
                   help="quantized collection: rescore k * N candidates with float vectors")
    p.add_argument("--mode", choices=["dense", "sparse", "hybrid"], default=None,
                   help="dense vectors, BM25 terms, or both fused in Qdrant (default: hybrid "
                        "for a collection indexed with --hybrid, else dense)")
    p.add_argument("--fusion", choices=["rrf", "dbsf"], default="rrf",
                   help="how --mode hybrid fuses the two rankings: reciprocal rank fusion "
                        "(default) or distribution-based score fusion")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    p.add_argument("--allow-other-encoder", action="store_true",
                   help="search a collection another encoder wrote (refused by default)")
    p.set_defaults(func=cmd_search)
