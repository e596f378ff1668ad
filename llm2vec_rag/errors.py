"""The two kinds of error the library raises on purpose, so a caller can tell them from bugs.

``UsageError`` is bad input: a flag, an argument, a config key, a record of a data file. It
is a ``ValueError``, so code that catches ``ValueError`` keeps working. ``SetupError`` is an
environment that cannot do what was asked: a missing extra, no such device, a locked store,
a backend whose output fails its check. It is a ``RuntimeError`` for the same reason.

Both carry a message that names the problem, where it is and what to do, so the command line
prints them (and ``OSError``: files, network) as one line with exit code 2. Any other
exception, a ``ValueError`` from numpy or torch included, is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UsageError", "SetupError"]


class UsageError(ValueError):
    """Bad input (a flag, an argument, a config key, a record); the message says the fix."""


class SetupError(RuntimeError):
    """The environment cannot do what was asked (a missing extra, no device, a locked store,
    a backend failing its check); the message says the fix."""
