"""Keep freed activation memory in the process instead of handing it back to the kernel.

glibc's malloc returns free memory above its trim threshold to the kernel and serves blocks
above its mmap threshold with fresh ``mmap`` calls; both thresholds start small and only
grow with what was freed last. A CPU forward pass allocates and frees the same few-megabyte
activations in every layer, so each layer faults its memory back in page by page: 32 long
texts at the default token budget took 2.4 million minor page faults and 4.0 s of system
time, and ran 1.15x faster with the thresholds raised (benchmarks/results/issue10/NOTES.md).
Raising them once with ``mallopt`` is what jemalloc or tcmalloc (``LD_PRELOAD``, as
``python -m torch.backends.xeon.run_cpu`` sets up) do by design, without a preload.

The cost: freed memory up to ``TRIM_THRESHOLD`` stays in the process (its resident size stays
near the largest batch's peak). Malloc settings are the whole process's, so the library
never changes them on its own: the ``llm2vec-rag`` command (encode, index, serve, ...) turns
the tuning on for its process (``LLM2VEC_RAG_MALLOC=default`` keeps glibc as it is there);
library users opt in with ``LLM2VEC_RAG_MALLOC=tuned`` (applied when an encoder is put on the
CPU) or by calling ``retain_freed_memory()``. Malloc settings of your own (``MALLOC_*_``
variables, ``GLIBC_TUNABLES``, a jemalloc or tcmalloc in ``LD_PRELOAD``) are left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import warnings

# mallopt parameters (malloc.h) and the values set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit: blocks above it are always mmap'd
TRIM_THRESHOLD = 512 << 20
TOP_PAD = 64 << 20
_OWN_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
ENV = "LLM2VEC_RAG_MALLOC"
CHOICES = {"tuned": True, "retain": True, "default": False}  # "retain": the earlier name


def tune_from_env(default: str = "default") -> bool:
    """``retain_freed_memory()`` if ``LLM2VEC_RAG_MALLOC`` (else ``default``) is ``tuned``;
    True when the thresholds are raised. Encoders on the CPU call it with the library's
    default (leave malloc alone); the CLI and the server with ``default="tuned"``."""
    choice = os.environ.get(ENV, "").strip().lower() or default
    if choice not in CHOICES:
        warnings.warn(f"{ENV}={choice!r} is not 'tuned' or 'default': leaving glibc's malloc "
                      f"settings as they are", stacklevel=2)
        return False
    return CHOICES[choice] and retain_freed_memory()


@functools.cache
def retain_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds once per process (an explicit opt-in for the
    whole process); True when they are raised. False (and nothing changed) off glibc, or when
    the user's environment already sets malloc parameters.
    """
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in os.environ for name in _OWN_SETTINGS) or \
            "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or \
            "jemalloc" in preload or "tcmalloc" in preload:  # the user's allocator rules
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD)))
