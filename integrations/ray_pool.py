"""What the Ray entry points share: the encoder spec the actors load, pool checks, the
actors' CPU share, and a local cluster that dies with its driver.

``ray.py`` (``embed_dataset``) and ``_ray_index.py`` (``index_dataset``) both import from
here, never from each other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llm2vec_rag.errors import UsageError
from llm2vec_rag.spec import EncoderSpec

logger = logging.getLogger("llm2vec_rag.integrations.ray")


def encoder_spec(model: str | EncoderSpec | Any, adapters: Sequence[str] = (),
                 **options: Any) -> EncoderSpec:
    """A spec from a name (+ adapters, options), a spec, or an encoder that has one
    (``EncoderSpec.of``, the one way; kept under this name for Ray's callers)."""
    return EncoderSpec.of(model, adapters, **options)


def worker_spec(spec: EncoderSpec, num_gpus: float) -> EncoderSpec:
    """Actors with a GPU load on it (Ray sets CUDA_VISIBLE_DEVICES), the others on CPU."""
    return spec.replace(device="cuda" if num_gpus else "cpu")


def check_pool_args(concurrency: int, num_gpus: float, batch_size: int) -> None:
    if not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency (number of actors) must be an int >= 1, "
                         f"got {concurrency!r}")
    if num_gpus < 0:
        raise UsageError(f"num_gpus (per actor) must be >= 0, got {num_gpus!r}")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size!r}")


def actor_cpus(concurrency: int, num_cpus: float | None, reserve: float) -> float | None:
    """CPUs per actor so that ``concurrency`` actors leave ``reserve`` CPUs of the cluster to
    the upstream tasks that feed them. An actor pool that takes every CPU starves those tasks
    (Ray Data backpressures them with no CPU budget) and the run waits forever: on a 2-CPU
    machine, 2 actors of 1 CPU each and chunking tasks of 0.5 never finish."""
    import ray

    total = float(ray.cluster_resources().get("CPU", 0))
    want = 1.0 if num_cpus is None else float(num_cpus)
    if not total or concurrency * want + reserve <= total:
        return num_cpus
    reserve = min(reserve, total / 2)
    fitted = (total - reserve) / concurrency
    logger.warning("%d actors x %g CPUs would take all %g CPUs of the cluster and leave none "
                   "to the tasks that feed them: each actor gets %.3g CPUs instead (torch "
                   "threads unchanged)", concurrency, want, total, fitted)
    return fitted


# The watchdog: waits for the driver to die, then ends the Ray processes the driver started.
_WATCHDOG = r"""
import sys, time
import psutil

def alive(pid, started):
    try:
        return psutil.Process(pid).create_time() == started
    except psutil.Error:
        return False

parent, started = int(sys.argv[1]), float(sys.argv[2])
owned = [(int(p), float(t)) for p, t in (a.split(":") for a in sys.argv[3:])]
while alive(parent, started):
    time.sleep(0.5)
procs = []
for pid, t in owned:
    if alive(pid, t):
        p = psutil.Process(pid)
        try:
            procs += [p, *p.children(recursive=True)]
        except psutil.Error:
            procs.append(p)
for p in procs:
    try:
        p.terminate()
    except psutil.Error:
        pass
gone, left = psutil.wait_procs(procs, timeout=5)
for p in left:
    try:
        p.kill()
    except psutil.Error:
        pass
"""


def init_ray(address: str | None = None, **kwargs: Any) -> None:
    """``ray.init(address, **kwargs)``; when that starts a local cluster, its processes die
    with this one, even when it is killed with SIGKILL (which runs no exit handler, so Ray's
    own shutdown never happens): a small watchdog process waits for this process to end and
    then terminates them. A cluster joined by ``address`` is never touched."""
    import subprocess
    import sys

    import psutil
    import ray

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    ray.init(address=address, **kwargs)
    started = [p for p in me.children(recursive=True) if p.pid not in before]
    if not started:
        return
    owned = []
    for p in started:
        try:
            owned.append(f"{p.pid}:{p.create_time()}")
        except psutil.Error:
            continue
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(me.pid), str(me.create_time()),
                      *owned], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
