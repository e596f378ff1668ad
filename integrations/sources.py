"""Documents from folders, text/Markdown files, JSONL, or any iterable of texts and dicts.

Streams: nothing is read before it is needed. Bad files and records come out as
``Skipped`` (reported and counted by the indexer), never as a crash mid-run; programming
errors in an in-memory iterable (a dict without text) raise at once.

Document ids are text: a record's id may be a string or an integer (``1`` and ``"1"`` are
the same document); a record without one gets ``file:line`` (JSONL), its relative path
(text files) or a hash of its text. ``id_scope="file"`` prefixes JSONL ids with the file's
path relative to the indexed folder (``"a.jsonl#1"``), so files may reuse ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm2vec_rag.preprocess import unencodable

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class SourceDoc:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # file:line or items[i], for reports


@dataclass
class Skipped:
    source: str
    reason: str


def text_id(text: str) -> str:
    """A document without an id is identified by its text."""
    return "sha1:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


ID_SCOPES = ("global", "file")


def iter_documents(items: Any, *, text_field: str = "text", id_field: str = "id",
                   one_per_line: bool = False,
                   id_scope: str = "global") -> Iterator[SourceDoc | Skipped]:
    """``items``: a path (folder, .txt/.md, .jsonl), or an iterable of texts, dicts, paths."""
    if id_scope not in ID_SCOPES:
        raise ValueError(f"id_scope must be one of {ID_SCOPES}, got {id_scope!r}")
    opts = dict(text_field=text_field, id_field=id_field, one_per_line=one_per_line,
                id_scope=id_scope)
    if isinstance(items, (str, os.PathLike)):
        yield from _from_path(Path(items), **opts)
        return
    if isinstance(items, dict) or not isinstance(items, Iterable):
        raise TypeError(f"items must be a path or an iterable of texts/dicts/paths, got "
                        f"{type(items).__name__}" + (" (wrap one dict in a list)"
                                                     if isinstance(items, dict) else ""))
    for i, item in enumerate(items):
        if isinstance(item, str):
            yield _doc_or_skip(text_id(item), item, {}, f"items[{i}]")
        elif isinstance(item, dict):
            yield _from_record(item, f"items[{i}]", text_field, id_field, strict=True)
        elif isinstance(item, os.PathLike):
            yield from _from_path(Path(item), **opts)
        else:
            raise TypeError(f"items[{i}] is {type(item).__name__}; expected a text, a dict "
                            f"with a {text_field!r} key, or a path")


def _doc_or_skip(doc_id: str, text: str, metadata: dict, where: str) -> SourceDoc | Skipped:
    if not text.strip():
        return Skipped(where, "empty text")
    for what, value in (("text", text), ("id", doc_id)):
        if not value.isascii() and (why := unencodable(value)):
            return Skipped(where, f"{what} {why}")
    if metadata and (why := unencodable(json.dumps(metadata, ensure_ascii=False))):
        return Skipped(where, f"metadata {why}")
    return SourceDoc(doc_id, text, metadata, where)


def normalize_id(value: Any) -> str | None:
    """A record's id as text, or None when it is not a usable id (strings and integers)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if text.strip() else None


def _from_record(rec: dict, where: str, text_field: str, id_field: str, strict: bool,
                 default_id: str | None = None, id_prefix: str = "") -> SourceDoc | Skipped:
    text = rec.get(text_field)
    if not isinstance(text, str):
        msg = f"needs a {text_field!r} string field, got {type(text).__name__}"
        if strict:
            raise TypeError(f"{where}: {msg} (keys: {sorted(rec)[:10]})")
        return Skipped(where, msg)
    metadata = {k: v for k, v in rec.items() if k not in (text_field, id_field)}
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as err:
        if strict:
            raise TypeError(f"{where}: metadata must be JSON-serialisable ({err})") from None
        return Skipped(where, f"metadata not JSON-serialisable: {err}")
    raw = rec.get(id_field)
    if raw is None:
        return _doc_or_skip(default_id or text_id(text), text, metadata, where)
    doc_id = normalize_id(raw)
    if doc_id is None:
        msg = (f"{id_field!r} must be a non-empty string or an integer, got "
               f"{type(raw).__name__} {raw!r:.40}")
        if strict:
            raise TypeError(f"{where}: {msg}")
        return Skipped(where, msg)
    return _doc_or_skip(id_prefix + doc_id, text, metadata, where)


def _from_path(path: Path, *, text_field: str, id_field: str, one_per_line: bool,
               id_scope: str) -> Iterator[SourceDoc | Skipped]:
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if not p.is_dir()):
            if file.suffix.lower() in (*TEXT_SUFFIXES, ".jsonl"):
                yield from _from_file(file, file.relative_to(path).as_posix(), text_field,
                                      id_field, one_per_line, id_scope)
    elif path.exists():
        yield from _from_file(path, path.as_posix(), text_field, id_field, one_per_line,
                              id_scope)
    else:
        raise FileNotFoundError(f"{path}: no such file or folder (to index a text itself, "
                                f"pass a list of texts)")


def _from_file(file: Path, rel: str, text_field: str, id_field: str, one_per_line: bool,
               id_scope: str) -> Iterator[SourceDoc | Skipped]:
    if file.suffix.lower() == ".jsonl":
        yield from _from_jsonl(file, rel, text_field, id_field,
                               f"{rel}#" if id_scope == "file" else "")
        return
    try:
        raw = file.read_bytes()
    except OSError as err:
        yield Skipped(str(file), f"unreadable: {err.strerror or err}")
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        yield Skipped(str(file), f"not UTF-8 (invalid byte at offset {err.start}); convert it, "
                                 f"e.g. iconv -t UTF-8")
        return
    if not one_per_line:
        yield _doc_or_skip(rel, text, {"source": str(file)}, str(file))
        return
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield SourceDoc(f"{rel}:{n}", line, {"source": str(file), "line": n},
                            f"{file}:{n}")


def _from_jsonl(file: Path, rel: str, text_field: str, id_field: str,
                id_prefix: str) -> Iterator[SourceDoc | Skipped]:
    try:
        stream = file.open("rb")
    except OSError as err:
        yield Skipped(str(file), f"unreadable: {err.strerror or err}")
        return
    with stream:
        for n, raw in enumerate(stream, 1):
            where = f"{file}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield Skipped(where, f"not UTF-8 (invalid byte at offset {err.start})")
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                yield Skipped(where, f"invalid JSON: {err.msg}")
                continue
            if not isinstance(rec, dict):
                yield Skipped(where, f"a JSON object expected, got {type(rec).__name__}")
                continue
            rec.setdefault("source", str(file))
            yield _from_record(rec, where, text_field, id_field, strict=False,
                               default_id=f"{rel}:{n}", id_prefix=id_prefix)
