"""Documents from folders, text/Markdown files, JSONL, or any iterable of texts and dicts.

Streams: nothing is read before it is needed. Bad files and records come out as
``Skipped`` (reported and counted by the indexer), never as a crash mid-run; programming
errors in an in-memory iterable (a dict without text) raise at once.

Document ids are text: a record's id may be a string or an integer (``1`` and ``"1"`` are
the same document); a record without one gets ``file:line`` (JSONL), its relative path
(text files) or a hash of its text. ``id_scope="file"`` prefixes JSONL ids with the file's
path relative to the indexed folder (``"a.jsonl#1"``), so files may reuse ids. When several
folders are indexed together (``[Path("a"), Path("b")]``), relative paths start with each
folder's path relative to their common parent (``a/README.md``, ``b/README.md``), so files of
the same name in two folders stay two documents; one folder alone keeps ids relative to it.

Metadata keys ``doc_id`` and ``chunk`` are the indexer's own (every point's payload carries
the document id and chunk number under them, where LangChain and LlamaIndex readers find
them): a record whose metadata uses them for something else is skipped with the reason
(an in-memory record raises), never silently overwritten. A ``doc_id`` equal to the
record's id is accepted.

Files that are not regular files (a FIFO, socket or device with a text suffix) are
skipped and reported, never opened; a JSONL line nested too deeply for Python's parser is
one skipped line, not a failed run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm2vec_rag.errors import UsageError
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
        raise UsageError(f"id_scope must be one of {ID_SCOPES}, got {id_scope!r}")
    opts = dict(text_field=text_field, id_field=id_field, one_per_line=one_per_line,
                id_scope=id_scope)
    labels = folder_labels(items) if isinstance(items, (list, tuple)) else {}
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
            yield from_record(item, f"items[{i}]", text_field, id_field, strict=True)
        elif isinstance(item, os.PathLike):
            yield from _from_path(Path(item), **opts,
                                  label=labels.get(os.path.realpath(item), ""))
        else:
            raise TypeError(f"items[{i}] is {type(item).__name__}; expected a text, a dict "
                            f"with a {text_field!r} key, or a path")


def folder_labels(items: list | tuple) -> dict[str, str]:
    """``{real path: id prefix}`` of the folders among ``items`` when there are several: each
    one's path relative to their common parent, so their relative paths cannot collide."""
    dirs = sorted({os.path.realpath(i) for i in items
                   if isinstance(i, os.PathLike) and os.path.isdir(i)})
    if len(dirs) < 2:
        return {}
    common = os.path.commonpath(dirs)
    out = {}
    for d in dirs:
        rel = Path(os.path.relpath(d, common)).as_posix()
        out[d] = "" if rel == "." else rel + "/"
    return out


RESERVED = ("doc_id", "chunk")  # the indexer's payload metadata keys


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


def from_record(rec: dict, where: str, text_field: str, id_field: str, strict: bool,
                 default_id: str | None = None, id_prefix: str = "") -> SourceDoc | Skipped:
    text = rec.get(text_field)
    if not isinstance(text, str):
        msg = f"needs a {text_field!r} string field, got {type(text).__name__}"
        if strict:
            raise TypeError(f"{where}: {msg} (keys: {sorted(rec)[:10]})")
        return Skipped(where, msg)
    metadata = {k: v for k, v in rec.items() if k not in (text_field, id_field)}
    try:
        json.dumps({"metadata": {"metadata": metadata}})  # as deep as the payload nests it
    except RecursionError:
        msg = "metadata nested too deeply to store (Python's JSON limit)"
        if strict:
            raise UsageError(f"{where}: {msg}") from None
        return Skipped(where, msg)
    except (TypeError, ValueError) as err:
        if strict:
            raise TypeError(f"{where}: metadata must be JSON-serialisable ({err})") from None
        return Skipped(where, f"metadata not JSON-serialisable: {err}")
    raw = rec.get(id_field)
    if raw is None:
        doc_id = default_id or text_id(text)
    else:
        doc_id = normalize_id(raw)
        if doc_id is None:
            msg = (f"{id_field!r} must be a non-empty string or an integer, got "
                   f"{type(raw).__name__} {raw!r:.40}")
            if strict:
                raise TypeError(f"{where}: {msg}")
            return Skipped(where, msg)
        doc_id = id_prefix + doc_id
    clash = [k for k in RESERVED if k in metadata
             and not (k == "doc_id" and normalize_id(metadata[k]) == doc_id)]
    if clash:
        msg = (f"metadata key {clash[0]!r} is the indexer's own (it stores the document id "
               f"and chunk number there) and would be overwritten: rename the key, or, if "
               f"it is the document id, pass id_field={clash[0]!r} (--id-field {clash[0]})")
        if strict:
            raise UsageError(f"{where}: {msg}")
        return Skipped(where, msg)
    return _doc_or_skip(doc_id, text, metadata, where)


_from_record = from_record  # the name before it was public


def _from_path(path: Path, *, text_field: str, id_field: str, one_per_line: bool,
               id_scope: str, label: str = "") -> Iterator[SourceDoc | Skipped]:
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if not p.is_dir()):
            if file.suffix.lower() in (*TEXT_SUFFIXES, ".jsonl"):
                yield from _from_file(file, label + file.relative_to(path).as_posix(),
                                      text_field, id_field, one_per_line, id_scope)
    elif path.exists():
        yield from _from_file(path, path.as_posix(), text_field, id_field, one_per_line,
                              id_scope)
    else:
        raise FileNotFoundError(f"{path}: no such file or folder (to index a text itself, "
                                f"pass a list of texts)")


def _from_file(file: Path, rel: str, text_field: str, id_field: str, one_per_line: bool,
               id_scope: str) -> Iterator[SourceDoc | Skipped]:
    if file.exists() and not file.is_file():  # a FIFO would block forever, a device never end
        yield Skipped(str(file), "not a regular file (a FIFO, socket or device): skipped")
        return
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
            except RecursionError:
                yield Skipped(where, "JSON nested too deeply for Python's parser")
                continue
            if not isinstance(rec, dict):
                yield Skipped(where, f"a JSON object expected, got {type(rec).__name__}")
                continue
            rec.setdefault("source", str(file))
            yield from_record(rec, where, text_field, id_field, strict=False,
                               default_id=f"{rel}:{n}", id_prefix=id_prefix)
