"""Reading the files a model folder holds, with errors that name the file and what to do.

A truncated download, an interrupted copy or a hand-edited config otherwise surfaces as a
parser's message without the file's name (``SafetensorError: incomplete metadata``,
``Expecting value: line 2 column 1``); these helpers turn it into one ``ValueError`` that
says which file is broken, where, and how to get a good one.
"""

from __future__ import annotations

import glob
import json
import os

REDOWNLOAD = ("Re-download or re-copy it (an interrupted download or copy leaves such files), "
              "or re-save the model")


def read_json_object(path: str | os.PathLike, fix: str = "Fix or re-create the file") -> dict:
    """A JSON file that must hold an object ``{...}``; errors name the file, line and column."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON at line {err.lineno}, column {err.colno} "
                         f"({err.msg}). {fix}.") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}): it is not a JSON file, "
                         f"or it is corrupt. {fix}.") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{...}} of settings, got a "
                         f"{type(raw).__name__}. {fix}.")
    return raw


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


def safetensors_error(where: str, err: Exception) -> ValueError:
    """The error for a weights file safetensors rejected: which file (when ``where`` is a
    local folder or file), why, and what to do."""
    paths = ([where] if os.path.isfile(where)
             else sorted(glob.glob(os.path.join(where, "*.safetensors"))))
    bad = corrupt_safetensors(paths)
    path, reason = bad if bad else (where, str(err))
    return ValueError(f"{path}: not a readable safetensors file, it is truncated or corrupt "
                      f"({reason}). {REDOWNLOAD}.")
