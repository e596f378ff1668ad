"""The RAM a preset's run was measured to need, set against what the machine has now.

``simcse-cpu`` keeps every layer's activations of 64 rows (32 sentences and their dropout
copies) for the backward pass: a 2-step run on SmolLM2-135M peaked at 13.2 GiB resident
(presets/README.md). A run the kernel kills for lack of memory part-way says nothing useful,
so when such a preset is loaded the figure is logged next to the RAM available now, and a
machine with less gets a warning that says what to lower, before any model loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class MeasuredPeak:
    """A preset's peak resident memory and the settings it was measured at."""

    gib: float
    batch_size: int
    max_length: int
    measured: str  # model and method, for the message


# /usr/bin/time -v, maximum resident set size (presets/README.md has the command)
PRESET_PEAKS = {
    "simcse-cpu": MeasuredPeak(13.2, 32, 64, "SmolLM2-135M with the bundled MNTP adapter, "
                                             "2 steps"),
}


def available_ram() -> int | None:
    """Bytes of RAM this process can still get now: ``MemAvailable`` of /proc/meminfo, capped
    by a container's cgroup memory limit less its usage; psutil where there is no /proc;
    None when neither can be read."""
    available = _meminfo_available()
    if available is None:
        try:
            import psutil
        except ImportError:
            return None
        return int(psutil.virtual_memory().available)
    room = cgroup_memory_room()
    return available if room is None else min(available, room)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_memory_room() -> int | None:
    """Limit minus usage of the cgroup (v2, then v1) this process sees, None if unlimited."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 2**60:  # "max", or v1's "no limit" value
            return None
        return max(0, int(limit) - usage)
    return None


def preset_memory_check(preset: str, batch_size: int, max_length: int,
                        available: int | None) -> tuple[int, str] | None:
    """``(logging level, message)`` announcing ``preset``'s measured peak against ``available``
    bytes; WARNING when the run is at least as large as the measurement and the machine has
    less. None for a preset without a measured peak."""
    peak = PRESET_PEAKS.get(preset)
    if peak is None:
        return None
    need = peak.gib * GIB
    message = (f"{preset} preset: expect a peak of about {peak.gib:.1f} GiB of RAM (measured "
               f"at batch_size={peak.batch_size}, max_length={peak.max_length} on "
               f"{peak.measured}: the backward pass keeps every layer's activations)")
    smaller = batch_size < peak.batch_size or max_length < peak.max_length
    larger = batch_size > peak.batch_size or max_length > peak.max_length
    if available is None:
        return logging.WARNING, message + (
            f"; the RAM available could not be read here: make sure {peak.gib:.0f} GiB are "
            f"free, or lower batch_size or max_length")
    message += f"; {available / GIB:.1f} GiB available now"
    if smaller and not larger:
        return logging.INFO, message + (f"; this run (batch_size={batch_size}, max_length="
                                         f"{max_length}) keeps fewer activations and needs less")
    if available >= need:
        return logging.INFO, message + ("; this run is larger: expect more" if larger else "")
    return logging.WARNING, message + (
        f", less than that: the kernel may kill the run part-way; lower batch_size (e.g. "
        f"batch_size={max(1, peak.batch_size // 4)}: fewer in-batch negatives) or max_length, "
        f"or free memory first")


def announce_preset_memory(preset: str, batch_size: int, max_length: int,
                           logger: logging.Logger) -> None:
    """Log ``preset_memory_check`` with the RAM available now (nothing for other presets)."""
    if preset not in PRESET_PEAKS:
        return
    level, message = preset_memory_check(preset, batch_size, max_length, available_ram())
    logger.log(level, message)

