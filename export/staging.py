"""Output folders that appear complete or not at all.

Every export writes into a hidden sibling folder (same file system, so the final move is a
rename) and moves it into place only after validation passed. A crash, a failed validation
or Ctrl-C leaves no folder that looks like a finished export.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class OutputExistsError(FileExistsError, ValueError):
    """The output folder exists and ``overwrite`` was not given (a ValueError for the CLI)."""


def check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an existing output early, before any expensive loading or export."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"Output folder {str(out)!r} already exists. Choose a new folder, or pass "
            "overwrite=True (--overwrite) to replace it."
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"Output path {str(out)!r} exists and is not a folder.")
    return out


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``out``, on any error it is removed."""
    out = check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is a normal folder
    try:
        yield tmp
        check_output(out, overwrite)  # someone may have created it meanwhile
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
