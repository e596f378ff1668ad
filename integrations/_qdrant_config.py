"""Qdrant plumbing for the indexer: client, collection options, retries, payload layout.

Payload of every point (one chunk), readable by three readers:

- ``page_content`` + ``metadata`` (dict): ``langchain_qdrant.QdrantVectorStore`` defaults;
- ``_node_content`` (a TextNode as JSON) + ``_node_type`` + ``doc_id``/``ref_doc_id``/
  ``document_id``: LlamaIndex's ``QdrantVectorStore`` defaults (its filters take keys
  like ``metadata.lang``, the same nested keys as ours);
- ``doc_hash``, ``chunk``, ``n_chunks``: the indexer's bookkeeping for resume and pruning.

The text is stored twice (``page_content`` and inside ``_node_content``): the price of
being read natively by both frameworks.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

from llm2vec_rag.errors import SetupError, UsageError

logger = logging.getLogger("llm2vec_rag.integrations.qdrant")

# Point ids: uuid5 of (document id, chunk number) in our own namespace.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://llm2vec-rag/qdrant-point-ids")


def point_id(doc_id: str, chunk: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{doc_id}\x1f{chunk}"))


def distance(name: Any):
    from qdrant_client import models

    if isinstance(name, models.Distance):
        return name
    names = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT,
             "euclid": models.Distance.EUCLID, "euclidean": models.Distance.EUCLID,
             "manhattan": models.Distance.MANHATTAN}
    if str(name).lower() not in names:
        raise UsageError(f"distance must be one of {sorted(names)}, got {name!r}")
    return names[str(name).lower()]


def quantization(spec: Any):
    """None, "scalar"/"int8" (4x smaller), "binary"/"ubinary" (32x smaller), or a qdrant
    config object; the names of ``encode(precision=...)``. Qdrant keeps the float vectors
    too and rescores with them (see :func:`search_params`)."""
    from qdrant_client import models

    if spec is None or not isinstance(spec, str):
        return spec
    if spec in ("scalar", "int8", "uint8"):
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, always_ram=True))
    if spec in ("binary", "ubinary"):
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    raise UsageError(f"quantization must be 'scalar' (or 'int8'), 'binary', None or a "
                     f"qdrant_client QuantizationConfig, got {spec!r}")


def search_params(quantization_config: Any, rescore: bool = True,
                  oversampling: float | None = None):
    """Search over the quantized vectors, then rescore the top ``k * oversampling`` with the
    float ones (Qdrant's recommended use of quantization). None without quantization and
    oversampling (a searcher that did not create the collection may give only oversampling;
    Qdrant ignores it for a collection that is not quantized)."""
    from qdrant_client import models

    if quantization_config is None and oversampling is None:
        return None
    if oversampling is not None and oversampling < 1:
        raise UsageError(f"oversampling must be >= 1 (candidates = k * oversampling), "
                         f"got {oversampling}")
    return models.SearchParams(quantization=models.QuantizationSearchParams(
        rescore=rescore, oversampling=oversampling))


def hnsw(spec: Any):
    from qdrant_client import models

    if spec is None or isinstance(spec, models.HnswConfigDiff):
        return spec
    if isinstance(spec, dict):
        return models.HnswConfigDiff(**spec)
    raise UsageError(f"hnsw must be a dict like {{'m': 16, 'ef_construct': 100}}, got {spec!r}")


def payload_indexes(spec: Any) -> dict[str, str]:
    """Metadata keys to index on a server: a list (keyword indexes) or {key: schema}."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    items = spec.items() if isinstance(spec, dict) else ((k, "keyword") for k in spec)
    allowed = ("keyword", "integer", "float", "bool", "geo", "datetime", "text", "uuid")
    out = {}
    for key, schema in items:
        if schema not in allowed:
            raise UsageError(f"payload index {key!r}: schema must be one of {allowed}, "
                             f"got {schema!r}")
        out[key if key.startswith("metadata.") else f"metadata.{key}"] = schema
    return out


def make_client(path: str | None, url: str | None, api_key: str | None,
                timeout: float | None):
    from qdrant_client import QdrantClient

    if url and path:
        raise UsageError("give either path= (embedded store) or url= (Qdrant server), not both")
    if url:
        return QdrantClient(url=url, api_key=api_key, timeout=timeout,
                            check_compatibility=False)
    if path == ":memory:":
        return QdrantClient(location=":memory:")
    folder = path or "./qdrant_data"
    try:
        return QdrantClient(path=folder)
    except RuntimeError as err:  # portalocker: another client holds the folder
        raise StoreLockedError(folder) from err


class StoreLockedError(SetupError):
    """An embedded store's folder is held by another client (local mode allows one)."""

    def __init__(self, path: str, flags: bool = False) -> None:
        self.path = path
        where = os.path.abspath(path)
        if flags:  # the command line's words
            fix = ("wait for the other command to finish, index into another --qdrant-path, "
                   "or run a Qdrant server and pass --qdrant-url")
        else:
            fix = ("close the other client (client.close(), or use the indexer in a `with` "
                   "block), use another path=, or run a Qdrant server and pass url=")
        super().__init__(f"The embedded Qdrant store {where} is locked: another process (or "
                         f"another client in this process) has it open, and an embedded "
                         f"store allows one. To go on: {fix}.")

    def for_cli(self) -> StoreLockedError:
        return StoreLockedError(self.path, flags=True)


def is_remote(client) -> bool:
    """False for local mode (path= / ":memory:"), which needs no retries or payload indexes."""
    try:
        from qdrant_client.local.qdrant_local import QdrantLocal
    except ImportError:  # pragma: no cover - layout of a future client
        return True
    return not isinstance(getattr(client, "_client", None), QdrantLocal)


def transient_errors() -> tuple[type[BaseException], ...]:
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException

    return (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError)


class QdrantServerError(SetupError):
    """A Qdrant server answered with an error status: the message names URL, status, fix."""


def server_error(err, what: str, where: str) -> QdrantServerError:
    """One line for an HTTP error status (the API key is never part of it)."""
    status, reason = err.status_code, getattr(err, "reason_phrase", "") or ""
    if status in (401, 403):
        fix = ("check the API key: set QDRANT_API_KEY to the server's key"
               if status == 401 else "the API key lacks the permission (a read-only key?)")
    elif status == 404:
        fix = ("check the URL: it should be the server's root, e.g. http://host:6333, "
               "without a path (a proxy prefix or another service answers 404)")
    else:
        body = bytes(getattr(err, "content", b"") or b"")[:200].decode("utf-8", "replace")
        fix = f"the server said: {' '.join(body.split()) or 'nothing'}"
    return QdrantServerError(f"Qdrant at {where} refused to {what}: HTTP {status} {reason}"
                             f"".rstrip() + f"; {fix}.")


def with_retries(fn, what: str, where: str, retries: int, backoff: float):
    """``fn()`` with bounded exponential backoff on connection errors, then a clear error."""
    from qdrant_client.http.exceptions import UnexpectedResponse

    errors = transient_errors()
    delay = backoff
    for attempt in range(retries + 1):
        try:
            return fn()
        except (*errors, UnexpectedResponse) as err:
            status = getattr(err, "status_code", None)
            if isinstance(err, UnexpectedResponse) and status not in (429, 502, 503, 504):
                raise server_error(err, what, where) from None
            if attempt == retries:
                cause = (f"HTTP {status}" if isinstance(err, UnexpectedResponse)
                         else f"{type(err).__name__}: {' '.join(str(err).split())[:200]}")
                raise ConnectionError(
                    f"Qdrant at {where} failed to {what} after {retries + 1} attempts "
                    f"({cause}). Check that the server is up "
                    f"and the URL is right; re-running the same command resumes the job "
                    f"without duplicates.") from err
            logger.warning("Qdrant %s failed (%s), retry %d/%d in %.1fs", what,
                           type(err).__name__, attempt + 1, retries, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


def payload(doc_id: str, chunk: int, n_chunks: int, text: str, metadata: dict,
            doc_hash: str) -> dict:
    meta = {**metadata, "doc_id": doc_id, "chunk": chunk}
    node = {
        "id_": point_id(doc_id, chunk), "text": text, "metadata": meta,
        "relationships": {"1": {"node_id": doc_id, "node_type": "4", "metadata": {},
                                "class_name": "RelatedNodeInfo"}},
        "class_name": "TextNode",
    }
    return {
        "page_content": text, "metadata": meta,
        "_node_content": json.dumps(node), "_node_type": "TextNode",
        "doc_id": doc_id, "ref_doc_id": doc_id, "document_id": doc_id,
        "chunk": chunk, "n_chunks": n_chunks, "doc_hash": doc_hash,
    }


def node_text(payload: dict) -> str:
    """The text of a point LlamaIndex wrote (inside ``_node_content``), else ""."""
    try:
        return str(json.loads(payload.get("_node_content") or "{}").get("text") or "")
    except (TypeError, ValueError, AttributeError):
        return ""


def to_filter(spec: Any):
    """{"key": value} (value may be a list: any of) on metadata keys, or a qdrant Filter."""
    from qdrant_client import models

    if spec is None or isinstance(spec, models.Filter):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"filter must be a dict {{metadata_key: value}} or a "
                        f"qdrant_client.models.Filter, got {type(spec).__name__}")
    must = []
    for key, value in spec.items():
        field = key if key.startswith("metadata.") else f"metadata.{key}"
        match = (models.MatchAny(any=list(value)) if isinstance(value, (list, tuple, set))
                 else models.MatchValue(value=value))
        must.append(models.FieldCondition(key=field, match=match))
    return models.Filter(must=must)


def write_failure(err: BaseException) -> str | None:
    """What a local store's failed write means, when it is a full disk (or a file size limit,
    or sqlite's I/O error on a write), else None: such runs can resume once there is room."""
    import errno
    import sqlite3

    while err is not None:
        if isinstance(err, sqlite3.OperationalError):
            name = getattr(err, "sqlite_errorname", "")
            if name.startswith("SQLITE_FULL") or str(err) == "database or disk is full":
                return f"the disk is full (sqlite: {err})"
            if name.startswith("SQLITE_IOERR") or str(err) == "disk I/O error":
                return f"a write failed, most likely a full disk (sqlite: {err})"
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG,
                                                      getattr(errno, "EDQUOT", -1)):
            return f"the disk is full ({os.strerror(err.errno)})"
        err = err.__cause__ or err.__context__
    return None
