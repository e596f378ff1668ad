"""Reading the files a model folder holds, with errors that name the file and what to do.

A truncated download, an interrupted copy or a hand-edited config otherwise surfaces as a
parser's message without the file's name (``SafetensorError: incomplete metadata``,
``Expecting value: line 2 column 1``); these helpers turn it into one ``UsageError`` (a
``ValueError``) that says which file is broken, where, and how to get a good one.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterator

from .errors import UsageError

REDOWNLOAD = ("Re-download or re-copy it (an interrupted download or copy leaves such files), "
              "or re-save the model")


def read_json_object(path: str | os.PathLike, fix: str = "Fix or re-create the file") -> dict:
    """A JSON file that must hold an object ``{...}``; errors name the file, line and column."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise UsageError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno} "
                         f"({err.msg}). {fix}.") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not UTF-8 text (byte {err.start}): it is not a JSON file, "
                         f"or it is corrupt. {fix}.") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a JSON object {{...}} of settings, got a "
                         f"{type(raw).__name__}. {fix}.")
    return raw


def read_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file (``-``: stdin), line ends stripped.

    Decoding line by line (not with ``errors="replace"``) means a Latin-1 file stops at its
    first bad line, named with its byte, instead of training on or indexing mangled text.
    """
    path = os.fspath(path)
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        for n, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UsageError(
                    f"{path}:{n}: not UTF-8 text (byte {err.start} of the line: {err.reason}), "
                    f"perhaps Latin-1: convert the file to UTF-8 first, e.g. iconv -f latin1 "
                    f"-t utf-8 {path} > utf8.txt") from None
            yield n, line.rstrip("\r\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_jsonl(path: str | os.PathLike, shape: str = "{...}") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSONL file; a bad line is an
    error naming ``file:line`` (``shape`` says what an object should look like)."""
    for n, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UsageError(f"{os.fspath(path)}:{n}: invalid JSON at column {err.colno} "
                             f"({err.msg}): a .jsonl file holds one JSON object per line; fix "
                             f"or remove that line") from None
        if not isinstance(record, dict):
            raise UsageError(f"{os.fspath(path)}:{n}: expected a JSON object {shape}, got a "
                             f"{type(record).__name__}")
        yield n, record


def corrupt_safetensors(paths: list[str]) -> tuple[str, str] | None:
    """The first of ``paths`` that safetensors cannot open, with the reason, or None."""
    from safetensors import SafetensorError, safe_open

    for path in paths:
        try:
            with safe_open(path, framework="numpy"):
                pass
        except (SafetensorError, OSError) as err:
            return path, str(err)
    return None


def safetensors_error(where: str, err: Exception) -> UsageError:
    """The error for a weights file safetensors rejected: which file (when ``where`` is a
    local folder or file), why, and what to do."""
    paths = ([where] if os.path.isfile(where)
             else sorted(glob.glob(os.path.join(where, "*.safetensors"))))
    bad = corrupt_safetensors(paths)
    path, reason = bad if bad else (where, str(err))
    return UsageError(f"{path}: not a readable safetensors file, it is truncated or corrupt "
                      f"({reason}). {REDOWNLOAD}.")


def unreadable_model(where: str, part: str, reason: object) -> UsageError:
    """The error for a model transformers rejects while reading it (a config.json without
    ``model_type``, a file that is not GGUF, weights of other shapes than the config's):
    the model's name, which part, why, and what to do."""
    return UsageError(f"{where}: transformers cannot read this model's {part}: "
                      f"{str(reason).rstrip('.')}. Pass a decoder-only model (a folder, hub "
                      f"id or .gguf file) whose files belong together; if it is damaged: "
                      f"{REDOWNLOAD}.")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (links and relative spellings included): an output
    that is also an input would be truncated before it is read."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare the resolved names
        return os.path.realpath(a) == os.path.realpath(b)
