"""Encode on several devices or processes: one worker process per device, each with its own model.

Workers are started with the ``spawn`` context and build their encoder from an
:class:`~llm2vec_rag.spec.EncoderSpec` with their device: weights are loaded in the worker,
never pickled. The parent sorts the texts by length, cuts them into chunks of similar length,
hands a worker its next chunk as soon as it returns one (so a slow device takes fewer), and
puts the vectors back in input order. The parent polls worker liveness while it waits, so a
worker that dies (out of memory, SIGKILL) raises a clear error instead of hanging.

The names follow sentence-transformers::

    pool = model.start_multi_process_pool(["cuda:0", "cuda:1"])
    vectors = model.encode(texts, pool=pool)
    model.stop_multi_process_pool(pool)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import sys
import threading
import time
import traceback
from collections.abc import Sequence

import numpy as np

from .errors import SetupError, UsageError
from .preprocess import check_batching, check_count, check_inputs
from .quantize import normalize_rows
from .spec import EncoderSpec

POLL_S = 0.5  # how often a waiting parent checks that its workers are alive
IN_FLIGHT = 2  # chunks queued per worker: one running, one waiting, so no worker idles
# A worker's exit code when it found itself starting a pool while Python re-imported the
# caller's script (no ``if __name__ == "__main__":`` guard): the parent names the cause.
MAIN_GUARD_EXIT = 87
MAIN_GUARD_HINT = (
    "the script that started the pool has no `if __name__ == \"__main__\":` guard: worker "
    "processes are started with 'spawn', which re-imports the script, so each worker ran "
    "the script's top level again and tried to start a pool of its own. Put the code that "
    "starts the pool (and encodes) under `if __name__ == \"__main__\":`")


class PoolError(SetupError):
    """A pool worker died or failed; the pool is closed and cannot be used again."""


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the process that started it ends, even by SIGKILL (no ``with``
    block, no ``close``): a thread notices the worker was re-parented within ``POLL_S``.
    (Not ``prctl(PR_SET_PDEATHSIG)``: it fires when the parent's starting *thread* ends, which
    would kill a pool started from a short-lived thread.)"""
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="llm2vec-pool-parent-watch", daemon=True).start()


def default_devices() -> list[str]:
    """Every CUDA device, else 4 CPU workers (at most one per core)."""
    try:
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    except ImportError:  # the ONNX Runtime encoder works without torch
        pass
    return ["cpu"] * max(1, min(4, os.cpu_count() or 1))


def _worker(rank: int, spec: EncoderSpec, threads: int | None, jobs, results,
            parent_pid: int | None = None) -> None:
    """Build the encoder, then encode chunks until ``None`` arrives (runs in the child)."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    try:
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
            if spec.backend == "torch":
                import torch

                torch.set_num_threads(threads)
                torch.set_num_interop_threads(1)
        encoder = spec.load()
        results.put(("ready", rank, encoder.dim))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("failed", rank, traceback.format_exc()))
        return
    while (job := jobs.get()) is not None:
        job_id, chunk, texts, instruction, kwargs = job
        try:
            vectors = encoder.encode(texts, instruction=instruction, show_progress=False,
                                     **kwargs)
            results.put(("done", rank, (job_id, chunk, vectors)))
        except BaseException as err:  # noqa: BLE001 - the call's error, raised in the parent
            results.put(("error", rank, (job_id, chunk, traceback.format_exc(),
                                         _picklable(err))))


class MultiProcessMixin:
    """``start_multi_process_pool`` / ``stop_multi_process_pool`` for encoders with a
    ``spec`` and ``encoding_settings()`` (sentence-transformers' names). A mixin, so the
    base encoder stays below the pool instead of importing it."""

    spec: EncoderSpec | None

    def start_multi_process_pool(self, target_devices: list[str] | None = None,
                                 **pool_options) -> EncodePool:
        """Worker processes, one per device (default: every GPU, else 4 CPU workers), each
        loading this encoder from its ``spec``; pass the pool to ``encode(..., pool=pool)``.
        Options: ``threads_per_worker``, ``chunk_size``, ``min_texts``, ``timeout``."""
        if self.spec is None:
            raise UsageError("This encoder was built from objects in memory, so other "
                             "processes cannot rebuild it: load it with from_pretrained(...) "
                             "or start EncodePool(EncoderSpec(...)) directly")
        max_length, pooling = self.encoding_settings()  # the config now, changes included
        pool = EncodePool(self.spec.replace(max_length=max_length, pooling=pooling),
                          target_devices, **pool_options)
        pool.settings = (max_length, pooling)
        return pool

    @staticmethod
    def stop_multi_process_pool(pool: EncodePool) -> None:
        """Stop the pool's workers (also done by ``with pool:`` and at garbage collection)."""
        pool.close()


class EncodePool:
    """Worker processes that encode for one spec, one per entry of ``devices``.

    ``threads_per_worker``: intra-op threads of each worker (default on CPU: the cores
    divided among the CPU workers, so workers do not oversubscribe the machine).
    ``chunk_size``: texts per chunk sent to a worker. ``min_texts``: below this many texts,
    an encoder's ``encode(..., pool=pool)`` encodes in its own process (no transfer cost).
    ``timeout``: seconds to wait for a result before giving up (None: as long as the
    workers are alive).
    """

    def __init__(self, spec: EncoderSpec, devices: Sequence[str] | None = None, *,
                 threads_per_worker: int | None = None, chunk_size: int = 256,
                 min_texts: int | None = None, start_timeout: float = 600.0,
                 timeout: float | None = None) -> None:
        if not isinstance(spec, EncoderSpec):
            raise TypeError(f"spec must be an EncoderSpec, got {type(spec).__name__}")
        devices = list(default_devices() if devices is None else devices)
        if not devices or not all(isinstance(d, str) and d for d in devices):
            raise UsageError(f"devices must be a non-empty list of names like 'cpu' or "
                             f"'cuda:0', got {devices!r}")
        chunk_size = check_count("chunk_size", chunk_size)
        n_cpu = sum(d == "cpu" for d in devices)
        if threads_per_worker is None and n_cpu:
            threads_per_worker = max(1, (os.cpu_count() or 1) // n_cpu)
        self.spec, self.devices = spec, devices
        self.threads_per_worker = threads_per_worker
        self.chunk_size = chunk_size
        self.min_texts = chunk_size if min_texts is None else min_texts
        self.timeout = timeout
        self.dim: int | None = None
        self.calls = 0  # encode calls served by the workers
        self._closed = False
        ctx = mp.get_context("spawn")
        self._results = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in devices]
        self._procs = []
        for rank, device in enumerate(devices):
            worker_spec = spec.replace(device=device)
            threads = threads_per_worker if device == "cpu" else None
            proc = ctx.Process(target=_worker, name=f"llm2vec-pool-{rank}", daemon=True,
                               args=(rank, worker_spec, threads, self._jobs[rank],
                                     self._results, os.getpid()))
            try:
                proc.start()
            except RuntimeError as err:
                if "bootstrapping phase" in str(err):  # we are a worker re-running a script
                    print(f"llm2vec-rag pool: {MAIN_GUARD_HINT}", file=sys.stderr, flush=True)
                    raise SystemExit(MAIN_GUARD_EXIT) from None
                self.close()
                raise
            self._procs.append(proc)
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.close()
            raise

    # -- lifecycle -------------------------------------------------------------------------
    def _wait_ready(self, timeout: float) -> None:
        ready: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(ready) < len(self._procs):
            kind, rank, value = self._get(deadline, busy=set(range(len(self._procs))) - ready,
                                          what="start")
            if kind == "failed":
                raise PoolError(f"pool worker {rank} ({self.devices[rank]}) could not build "
                                f"its encoder from {self.spec.model!r}:\n{value}")
            if kind == "ready":
                ready.add(rank)
                self.dim = value

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers (idempotent); ones that do not exit in ``timeout`` are killed."""
        if self._closed:
            return
        self._closed = True
        for jobs, proc in zip(self._jobs, self._procs):
            if proc.is_alive():
                try:
                    jobs.put(None)
                except (OSError, ValueError):
                    pass
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for q in (*self._jobs, self._results):
            q.close()
            q.cancel_join_thread()

    def __enter__(self) -> EncodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten pool must not leave processes behind
        try:
            self.close(timeout=1.0)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    # -- work ------------------------------------------------------------------------------
    def _get(self, deadline: float | None, busy: set[int], what: str):
        """Next message from a worker; raises if a worker we wait on has died."""
        while True:
            try:
                return self._results.get(timeout=POLL_S)
            except queue.Empty:
                pass
            for rank in sorted(busy):
                proc = self._procs[rank]
                if not proc.is_alive():
                    self.close(timeout=1.0)
                    if what == "start" and proc.exitcode == MAIN_GUARD_EXIT:
                        raise PoolError(f"pool worker {rank} could not start: "
                                        f"{MAIN_GUARD_HINT}")
                    raise PoolError(
                        f"pool worker {rank} ({self.devices[rank]}) died during {what} (exit "
                        f"code {proc.exitcode}: {_exit_reason(proc.exitcode)}). The pool is "
                        f"closed; start a new one (fewer workers or a smaller batch_size if "
                        f"memory ran out).")
            if deadline is not None and time.monotonic() > deadline:
                self.close(timeout=1.0)
                raise PoolError(f"pool workers did not finish {what} within the timeout; "
                                f"the pool is closed")

    def encode(self, texts: str | list[str], instruction: str | list[str] | None = None,
               batch_size: int = 32, normalize: bool = False,
               max_batch_tokens: int | None = None,
               output_value: str = "sentence_embedding") -> np.ndarray | list[np.ndarray]:
        """Float32 ``(n, dim)`` vectors in input order, encoded by the workers
        (``output_value="token_embeddings"``: a list of ``(n_tokens_i, dim)`` arrays)."""
        if self._closed:
            raise PoolError("this pool is closed: start a new one")
        texts, instruction = check_inputs(texts, instruction)
        batch_size, max_batch_tokens = check_batching(batch_size, max_batch_tokens)
        tokens = output_value == "token_embeddings"
        out = ([None] * len(texts) if tokens
               else np.zeros((len(texts), self.dim or 0), dtype=np.float32))
        if not texts:
            return out
        kwargs = dict(batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                      output_value=output_value)
        # Longest first: chunks of similar length pad little, and the small ones at the end
        # even out the workers' finishing times.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = [np.array(order[i: i + self.chunk_size])
                  for i in range(0, len(order), self.chunk_size)]
        job_id = self.calls = self.calls + 1
        pending = list(range(len(chunks)))[::-1]
        in_flight: dict[int, int] = {rank: 0 for rank in range(len(self._procs))}
        deadline = None if self.timeout is None else time.monotonic() + self.timeout

        def send(rank: int) -> None:
            c = pending.pop()
            idx = chunks[c]
            ins = [instruction[i] for i in idx] if isinstance(instruction, list) else instruction
            self._jobs[rank].put((job_id, c, [texts[i] for i in idx], ins, kwargs))
            in_flight[rank] += 1

        for _ in range(IN_FLIGHT):
            for rank in in_flight:
                if pending:
                    send(rank)
        failure: tuple | None = None
        while any(in_flight.values()):
            busy = {r for r, n in in_flight.items() if n}
            kind, rank, value = self._get(deadline, busy, what="encode")
            if kind not in ("done", "error") or value[0] != job_id:
                continue  # a stale message from an earlier, interrupted call
            in_flight[rank] -= 1
            if kind == "error":
                # The call's own error (bad input, an instruction with no room for text):
                # the worker is fine, so the pool stays open. Stop sending, let the chunks
                # in flight finish, then raise it here.
                failure = failure or (rank, value[2], value[3])
                pending.clear()
                continue
            if tokens:
                for i, t in zip(chunks[value[1]], value[2]):
                    out[i] = normalize_rows(t) if normalize else t
            else:
                out[chunks[value[1]]] = value[2]
            if pending:
                send(rank)
        if failure is not None:
            rank, trace, err = failure
            note = (f"pool worker {rank} ({self.devices[rank]}) failed on this call (the "
                    f"pool stays open):\n{trace}")
            if err is None:
                raise PoolError(note)
            raise err from PoolError(note)
        if normalize and not tokens:
            out = normalize_rows(out)
        return out

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"EncodePool({self.spec.model!r}, devices={self.devices}, {state})"


def _picklable(err: BaseException) -> BaseException | None:
    """``err`` if it survives the trip to the parent, else None (the traceback text goes)."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 - any failure means: send the text only
        return None
    return err


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return "exited"
