"""A cache of merged models: a GGUF or folder base plus LoRA adapters, fused once and saved
as a plain safetensors folder, so the second load reads one file instead of parsing a GGUF,
dequantizing it and merging every adapter again (29 s -> about 2 s for the default model).

Where: ``$LLM2VEC_RAG_CACHE``, else ``$XDG_CACHE_HOME/llm2vec_rag``, else
``~/.cache/llm2vec_rag``; entries live in its ``fused/`` folder, one per key, and can be
deleted at any time (``rm -r``): the next load rebuilds them.

The key is what the fused weights depend on: the content of the base and of every adapter,
bidirectional or not, the dtype, and the versions of the code that does the merge. Content
is fingerprinted cheaply: small files (adapters, configs, tokenizers: < 16 MiB) are hashed
whole; a big file (a GGUF or safetensors base) by its size, mtime and a hash of its first
and last MiB, so a changed file is noticed without reading gigabytes on every load (a
same-size in-place edit of the middle of a base file that also keeps its mtime would not be).

Building is safe with several processes at once: an exclusive lock file per key (the
second process waits, then loads the first one's entry), the entry written into a temporary
folder and renamed into place atomically, with a manifest written last. The manifest records
each file's size and content hash (xxh3-128 where the ``xxhash`` package is installed, else
SHA-256), and every load checks them: an entry whose manifest is missing or whose files do
not match it (a crash, a truncated copy, bytes changed in place, an edited config.json) is
removed and rebuilt, with a warning. Checking costs one read of the entry: 0.65 s with xxh3
for the default model's 542 MB entry (SHA-256: 4.2 s; 2 shared CPU cores), next to ~2 s
for the cached load itself on an idle machine.
A cache that cannot be written (read-only, full disk) costs only the speed-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
MANIFEST = "llm2vec_rag_cache.json"
BIG_FILE = 16 * 2**20  # above this, fingerprint = size + mtime + head/tail blocks
BLOCK = 2**20

T = TypeVar("T")


def cache_root() -> str:
    """The cache folder (not created here)."""
    explicit = os.environ.get("LLM2VEC_RAG_CACHE")
    if explicit:
        return os.path.expanduser(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "llm2vec_rag")


def fingerprint_file(path: str) -> dict[str, Any]:
    """Size, and a content hash: whole for small files, head + tail + mtime for big ones."""
    st = os.stat(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= BIG_FILE:
            for block in iter(lambda: f.read(BLOCK), b""):
                digest.update(block)
            return {"size": st.st_size, "sha256": digest.hexdigest()}
        digest.update(f.read(BLOCK))
        f.seek(-BLOCK, os.SEEK_END)
        digest.update(f.read(BLOCK))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": digest.hexdigest()}


def fingerprint(path: str) -> dict[str, Any]:
    """A file's fingerprint, or a folder's: every top-level file (subfolders such as training
    checkpoints do not take part in loading, so they are left out)."""
    path = os.path.abspath(path)
    if os.path.isfile(path):
        return {"file": fingerprint_file(path)}
    files = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n))
                   and not n.startswith("."))
    return {"files": {n: fingerprint_file(os.path.join(path, n)) for n in files}}


def cache_key(sources: Sequence[str], options: dict[str, Any]) -> str:
    """A stable name for the fused result of ``sources`` (base first, then adapters in order)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("llm2vec_rag", "transformers", "peft", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    key = {"format": CACHE_FORMAT, "sources": [fingerprint(s) for s in sources],
           "options": options, "versions": versions}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _hasher() -> tuple[str, Callable[[], Any]]:
    """The fastest content hash at hand: xxh3-128 (~10x SHA-256 here), else SHA-256."""
    try:
        import xxhash
    except ImportError:
        return "sha256", hashlib.sha256
    return "xxh3_128", xxhash.xxh3_128


def _content_hash(path: str, algorithm: str) -> str:
    if algorithm == "xxh3_128":
        import xxhash

        digest = xxhash.xxh3_128()
    else:
        digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(folder: str) -> dict[str, dict[str, Any]]:
    """Size and content hash of each top-level file of ``folder``: what a manifest records."""
    algorithm, _ = _hasher()
    return {n: {"size": os.path.getsize(os.path.join(folder, n)),
                algorithm: _content_hash(os.path.join(folder, n), algorithm)}
            for n in sorted(os.listdir(folder))
            if n != MANIFEST and os.path.isfile(os.path.join(folder, n))}


def verify(entry: str) -> str | None:
    """Why the entry does not match its manifest (sizes first, then content), or None."""
    try:
        with open(os.path.join(entry, MANIFEST), encoding="utf-8") as f:
            files = json.load(f)["files"]
        if not isinstance(files, dict):
            return "its manifest is not a file table"
        for name, recorded in files.items():
            if not isinstance(recorded, dict):  # an entry written before content hashes
                return "its manifest records no content hashes"
            if os.path.getsize(os.path.join(entry, name)) != recorded["size"]:
                return f"{name} has the wrong size (incomplete)"
        for name, recorded in files.items():
            algorithm = next((a for a in ("xxh3_128", "sha256") if a in recorded), None)
            if algorithm is None:
                return f"its manifest records no content hash for {name}"
            if algorithm == "xxh3_128" and _hasher()[0] != algorithm:
                return f"{name} was hashed with xxh3_128 and xxhash is not installed"
            if _content_hash(os.path.join(entry, name), algorithm) != recorded[algorithm]:
                return f"{name} changed after it was written (content hash differs)"
    except FileNotFoundError as err:
        return f"{os.path.basename(err.filename or MANIFEST)} is missing (incomplete)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"its manifest is unreadable ({err})"
    return None


def is_complete(entry: str) -> bool:
    """The entry's manifest exists and every file it lists has the recorded size and content."""
    return verify(entry) is None


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    """An inter-process lock (flock); where there is none, the atomic rename still protects."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; racing builders waste work but stay correct
        yield
        return
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove(entry: str) -> None:
    shutil.rmtree(entry, ignore_errors=True)


def load_or_build(sources: Sequence[str], options: dict[str, Any], *,
                  load: Callable[[str], T], build: Callable[[], T],
                  save: Callable[[T, str], None]) -> T:
    """``load(entry)`` from the cache, else ``build()`` it, ``save`` it into the cache, return it.

    A broken entry is removed and rebuilt; a cache that cannot be written (read-only or full
    disk) costs only the speed-up: the built result is returned anyway, with a warning.
    """
    root = os.path.join(cache_root(), "fused")
    entry = os.path.join(root, cache_key(sources, options))
    loaded = _try_load(entry, load)
    if loaded is not None:
        return loaded[0]
    stack = contextlib.ExitStack()
    try:
        os.makedirs(root, exist_ok=True)
        stack.enter_context(_exclusive(entry + ".lock"))
    except OSError as err:
        logger.warning("model cache %s is not writable (%s): loading without it", root, err)
        return build()
    with stack:
        loaded = _try_load(entry, load)  # another process may have built it while we waited
        if loaded is not None:
            return loaded[0]
        result = build()
        _save_entry(result, entry, root, save)
        return result


def _try_load(entry: str, load: Callable[[str], T]) -> tuple[T] | None:
    if not os.path.isdir(entry):
        return None
    problem = verify(entry)
    if problem is None:
        try:
            return (load(entry),)
        except Exception as err:  # noqa: BLE001 - any failure to read the entry means: rebuild
            logger.warning("model cache entry %s is unreadable (%s): rebuilding it", entry, err)
    else:
        logger.warning("model cache entry %s is damaged: %s; rebuilding it", entry, problem)
    remove(entry)
    return None


def _save_entry(result: T, entry: str, root: str, save: Callable[[T, str], None]) -> None:
    tmp = None
    try:
        tmp = tempfile.mkdtemp(prefix=".build-", dir=root)
        save(result, tmp)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump({"format": CACHE_FORMAT, "files": describe_files(tmp)}, f, indent=1)
        os.rename(tmp, entry)  # atomic: readers see no entry or a whole one
        tmp = None
        logger.info("cached the fused model in %s", entry)
    except Exception as err:  # noqa: BLE001 - a full disk surfaces as OSError, SafetensorError,
        # RuntimeError (torch) ...: whatever fails, the cache only costs its speed-up
        logger.warning("could not write the model cache entry %s (%s: %s): continuing without "
                       "it", entry, type(err).__name__, err)
    finally:
        if tmp is not None:
            remove(tmp)


SAMPLES = 8  # evenly spaced blocks of a big file, besides its head and tail


def content_fingerprint(path: str) -> str:
    """A hash of what a file or folder holds, independent of where it lives and of its
    mtime, so the same weights reached through a moved or copied checkout match.

    Small files are hashed whole; a big one (a GGUF or safetensors base) by its size, head,
    tail and ``SAMPLES`` evenly spaced 1 MiB blocks (a few MiB read, not gigabytes). A folder:
    its top-level files by name, as :func:`fingerprint` takes them.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n))
                       and not n.startswith("."))
        parts = {n: content_fingerprint(os.path.join(path, n)) for n in names}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= BIG_FILE:
            for block in iter(lambda: f.read(BLOCK), b""):
                digest.update(block)
        else:
            for i in range(SAMPLES + 2):
                f.seek(min(i * (size - BLOCK) // (SAMPLES + 1), size - BLOCK))
                digest.update(f.read(BLOCK))
    return digest.hexdigest()
