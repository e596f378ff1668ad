"""Output folders that appear complete or not at all, and overwrites that only replace exports.

Every export writes into a hidden sibling folder (same file system, so the final move is a
rename) and moves it into place only after validation passed. A crash, a failed validation,
Ctrl-C or SIGTERM leaves no folder that looks like a finished export; a SIGKILL leaves a
hidden ``.NAME.partial-PID-*`` folder, which the next export to the same place removes once
process PID is gone.

Every export folder holds a marker file (``MARKER``). ``overwrite=True`` replaces only a
folder with that marker (or an empty one): never a folder of other files, the current
folder, or a folder holding the export's own source model or adapters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from llm2vec_rag.errors import UsageError

MARKER = ".llm2vec-rag-export.json"
# Written by exports before the marker existed: such folders are ours too.
LEGACY_INFO = ("onnx_export.json", "fused_from.json")


class OutputExistsError(FileExistsError, UsageError):
    """The output folder exists and may not be replaced (a ValueError for the CLI)."""


def is_export(folder: Path) -> bool:
    return any((folder / name).is_file() for name in (MARKER, *LEGACY_INFO))


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or inside it."""
    return a == b or b in a.parents


def check_output(out: str | os.PathLike, overwrite: bool,
                 sources: Sequence[object] = ()) -> Path:
    """Refuse an output that may not be written, early, before any expensive loading.

    ``sources``: the model and adapter paths the export reads (hub ids are ignored)."""
    out = Path(out).expanduser().absolute()
    real = Path(os.path.realpath(out))
    for src in sources:
        if not isinstance(src, (str, os.PathLike)) or not Path(src).expanduser().exists():
            continue
        src_real = Path(os.path.realpath(Path(src).expanduser()))
        if _inside(src_real, real) or _inside(real, src_real):
            raise OutputExistsError(
                f"Output folder {str(out)!r} would overwrite or sit inside the export's own "
                f"source {str(src)!r}. Choose an --out outside it; nothing was written.")
    if not out.exists():
        return out
    if not out.is_dir():
        raise OutputExistsError(f"Output path {str(out)!r} exists and is not a folder.")
    if not overwrite:
        raise OutputExistsError(
            f"Output folder {str(out)!r} already exists. Choose a new folder, or pass "
            "overwrite=True (--overwrite) to replace a previous export there.")
    if _inside(Path(os.path.realpath(Path.cwd())), real):
        raise OutputExistsError(
            f"Output folder {str(out)!r} is (or holds) the current folder: refusing to "
            f"replace it. Choose a new folder; nothing was deleted.")
    if any(out.iterdir()) and not is_export(out):
        names = sorted(p.name for p in out.iterdir())
        raise OutputExistsError(
            f"Output folder {str(out)!r} holds files that are not an llm2vec-rag export "
            f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}; no {MARKER}): "
            f"--overwrite only replaces a previous export. Choose another folder, or delete "
            f"this one yourself; nothing was deleted.")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale(parent: Path, name: str) -> list[Path]:
    """Remove hidden staging folders of ``name`` in ``parent`` whose process is gone."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(?:partial|old)-(\d+)(?:-.*)?$")
    removed = []
    if not parent.is_dir():
        return removed
    for p in parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def make_staging(parent: Path, name: str) -> Path:
    """A fresh hidden folder ``.NAME.partial-PID-*`` in ``parent`` (stale ones removed)."""
    clean_stale(parent, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-{os.getpid()}-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is a normal folder
    return tmp


class _Terminated(SystemExit):
    """SIGTERM during an export: unwinds like Ctrl-C so that the staging folder is removed."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, overwrite: bool = False, kind: str = "export",
                  sources: Sequence[object] = ()) -> Iterator[Path]:
    """Yield a temporary folder; on success it gets the marker and replaces ``out``, on any
    error (SIGTERM included) it is removed."""
    out = check_output(out, overwrite, sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _sigterm_unwinds():
        tmp = make_staging(out.parent, out.name)
        try:
            yield tmp
            (tmp / MARKER).write_text(json.dumps({"llm2vec_rag_export": kind}) + "\n",
                                      encoding="utf-8")
            check_output(out, overwrite, sources)  # someone may have created it meanwhile
            old = None
            if out.exists():
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.replace(out, old)
            os.replace(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
