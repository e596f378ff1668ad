"""Keep freed activation memory in the process instead of handing it back to the kernel.

glibc's malloc returns free memory above its trim threshold to the kernel and serves blocks
above its mmap threshold with fresh ``mmap`` calls; both thresholds start small and only
grow with what was freed last. A CPU forward pass allocates and frees the same few-megabyte
activations in every layer, so each layer faults its memory back in page by page: 32 long
texts at the default token budget took 2.4 million minor page faults and 4.0 s of system
time, and ran 1.15x faster with the thresholds raised (benchmarks/README.md, issue #10).
Raising them once with ``mallopt`` is what jemalloc or tcmalloc (``LD_PRELOAD``, as
``python -m torch.backends.xeon.run_cpu`` sets up) do by design, without a preload.

The cost: freed memory up to ``TRIM_THRESHOLD`` stays in the process (its resident size stays
near the largest batch's peak). Set ``LLM2VEC_RAG_MALLOC=default`` to leave glibc as it is;
malloc settings of your own (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``, a jemalloc or
tcmalloc in ``LD_PRELOAD``) are left alone too.
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


@functools.cache
def retain_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds once per process; True when they are raised.

    False (and nothing changed) off glibc, when ``LLM2VEC_RAG_MALLOC`` is ``default`` (not
    ``retain``, the default), or when the user's environment already sets malloc parameters.
    """
    choice = os.environ.get("LLM2VEC_RAG_MALLOC", "retain").strip().lower() or "retain"
    if choice != "retain":
        if choice != "default":
            warnings.warn(f"LLM2VEC_RAG_MALLOC={choice!r} is not 'retain' or 'default': "
                          f"leaving glibc's malloc settings as they are", stacklevel=2)
        return False
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
