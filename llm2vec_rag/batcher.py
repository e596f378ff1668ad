"""Dynamic batching: concurrent requests merged into token-budgeted calls of one encoder.

The queue/worker split of TEI's router and infinity's ``batch_handler``: callers submit a
request (texts, one instruction per text) and get a future; one worker thread takes requests
off a bounded queue, tokenizes each once (``encoder.tokenize``: its token count is its share
of the budget), merges them until ``max_batch_tokens`` real tokens or ``max_wait_ms``, and
makes ONE ``encoder.encode_tokenized(rows, max_batch_tokens=...)`` call, so the core's
length-sorted batching does the work; each request gets its own rows back. A full queue
raises ``Overloaded`` instead of growing.

The worker is supervised: an error outside any one request's encode fails the requests it
held with ``WorkerCrashed`` (HTTP 500) and the loop starts again; after ``MAX_CRASHES`` in
``CRASH_WINDOW_S`` it gives up, fails what is queued and ``healthy`` turns False (``/health``
503), so a wedged worker never leaves callers waiting forever. No web imports: the server,
a pool or any thread can use it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from .encoder import BaseEncoder
from .errors import UsageError
from .preprocess import Encoded, check_inputs
from .quantize import normalize_rows

log = logging.getLogger(__name__)

_STOP = object()
MAX_CRASHES = 5  # worker crashes within CRASH_WINDOW_S before the batcher gives up
CRASH_WINDOW_S = 60.0


class Overloaded(RuntimeError):
    """The queue is full: retry after ``retry_after`` seconds (HTTP 429)."""

    def __init__(self, max_queue: int, retry_after: int = 1) -> None:
        super().__init__(f"the request queue is full ({max_queue} requests waiting, "
                         f"--max-queue {max_queue}): retry after {retry_after} s")
        self.max_queue, self.retry_after = max_queue, retry_after


class Closed(RuntimeError):
    """The batcher is shutting down and accepts no new requests (HTTP 503)."""


class WorkerCrashed(RuntimeError):
    """The worker failed outside any one request's encode: the requests it held fail with
    this (HTTP 500) and the worker starts again (or gives up, see ``Batcher.healthy``)."""


class InputTooLong(ValueError):
    """A text exceeds the model's ``max_length`` and the request asked not to truncate."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"text {index} has {tokens} tokens, more than the model's "
                         f"max_length={limit}: shorten it or allow truncation")
        self.index, self.tokens, self.limit = index, tokens, limit


@dataclass
class Result:
    vectors: np.ndarray  # (n, dim) float32, the request's texts in order
    tokens: list[int]  # tokens embedded per text (after truncation)


@dataclass
class BatchStats:
    """What one merged encode call held (for metrics)."""

    requests: int
    texts: int
    tokens: int
    seconds: float


@dataclass
class _Request:
    texts: list[str]
    instruction: list[str]
    normalize: bool
    truncate: bool
    future: Future
    encoded: list[Encoded] = field(default_factory=list)

    @property
    def tokens(self) -> list[int]:
        return [len(e.ids) for e in self.encoded]


class Batcher:
    """One supervised worker thread in front of one encoder.

    ``max_batch_tokens``: real tokens merged per encode call (also the padded budget passed to
    ``encode_tokenized``); a single request larger than it still runs, alone. ``max_wait_ms``:
    how long the worker waits for more requests once it has one. ``max_queue``: requests
    waiting before ``submit`` raises ``Overloaded``. ``merge=False`` runs one request per
    encode call (the unbatched baseline). ``on_batch`` is called from the worker after each
    encode call.
    """

    def __init__(self, encoder: BaseEncoder, max_batch_tokens: int = 8192,
                 max_wait_ms: float = 5.0, max_queue: int = 512, merge: bool = True,
                 on_batch: Callable[[BatchStats], None] | None = None,
                 start: bool = True) -> None:
        if max_batch_tokens < 1:
            raise UsageError(f"max_batch_tokens must be >= 1, got {max_batch_tokens}")
        if max_queue < 1:
            raise UsageError(f"max_queue must be >= 1, got {max_queue}")
        if max_wait_ms < 0:
            raise UsageError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.encoder = encoder
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.max_queue, self.merge, self.on_batch = max_queue, merge, on_batch
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._closed = threading.Event()
        self._carry: _Request | None = None  # admitted, over the last batch's budget
        self._in_hand: list[_Request] = []  # admitted requests the worker holds now
        self._stopping = False
        self._crashes: deque[float] = deque(maxlen=MAX_CRASHES)
        self.failed: str | None = None  # why the worker gave up (then healthy is False)
        self._thread = threading.Thread(target=self._run, name="llm2vec-batcher", daemon=True)
        self.batches = self.merged_batches = self.requests = self.texts = self.tokens = 0
        self.crashes = 0
        if start:
            self.start()

    # -- caller side -------------------------------------------------------------------------
    @property
    def max_length(self) -> int:
        """The encoder's limit, read at each use (a changed ``config.max_length`` counts)."""
        return int(self.encoder.config.max_length)

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def healthy(self) -> bool:
        """False once the worker gave up or died: requests would wait forever (``/health``)."""
        return self.failed is None and (self._thread.is_alive() or not self._thread.ident)

    @property
    def stopped(self) -> bool:
        """True when the worker thread is not running (never started, or finished)."""
        return not self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def submit(self, texts: str | Sequence[str], instruction: str | Sequence[str] | None = None,
               normalize: bool = False, truncate: bool = True) -> Future:
        """Queue one request; the future gives a ``Result`` (or the request's own error)."""
        if self._closed.is_set():
            raise Closed("the server is shutting down: send the request to another replica")
        if self.failed is not None:
            raise WorkerCrashed(f"the model worker stopped: {self.failed}")
        texts, instruction = check_inputs(texts, instruction)
        if isinstance(instruction, str):
            instruction = [instruction] * len(texts)
        request = _Request(texts, instruction, normalize, truncate, Future())
        if not texts:
            request.future.set_result(Result(np.zeros((0, self.encoder.dim), np.float32), []))
            return request.future
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise Overloaded(self.max_queue) from None
        return request.future

    async def embed(self, texts: str | Sequence[str],
                    instruction: str | Sequence[str] | None = None, normalize: bool = False,
                    truncate: bool = True) -> Result:
        """``submit`` for asyncio code: awaits the result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(texts, instruction, normalize, truncate))

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new requests, answer the queued ones, stop the worker (within ``timeout``)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if not self._thread.is_alive():
            self._fail_pending(Closed("the batcher stopped before this request was processed"))
            return
        try:
            self._queue.put(_STOP, timeout=timeout)  # after every queued request
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("batcher worker still busy after %.0f s; pending requests fail", timeout)
        self._fail_pending(Closed("the server shut down before this request was processed"))

    def _fail_pending(self, error: Exception) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request) and not item.future.done():
                item.future.set_exception(error)

    # -- worker side -------------------------------------------------------------------------
    def _run(self) -> None:
        """The supervisor: the loop below, started again after a crash."""
        while True:
            try:
                self._loop()
                return
            except BaseException as err:  # noqa: BLE001 - answered, then the loop restarts
                self._crashed(err)
                if self.failed is not None:
                    return

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            if batch:
                self._process(batch)
            self._in_hand = []

    def _crashed(self, err: BaseException) -> None:
        """Fail the requests the worker held; give up after too many crashes in a row."""
        self.crashes += 1
        log.error("batcher worker crashed (%s: %s); restarting", type(err).__name__, err,
                  exc_info=err)
        error = WorkerCrashed(f"the model worker failed on this batch ({type(err).__name__}: "
                              f"{err}); it restarted: retry the request")
        held = self._in_hand + ([self._carry] if self._carry is not None else [])
        self._in_hand, self._carry = [], None
        for request in held:
            if not request.future.done():
                request.future.set_exception(error)
        now = time.monotonic()
        self._crashes.append(now)
        if len(self._crashes) == MAX_CRASHES and now - self._crashes[0] < CRASH_WINDOW_S:
            self.failed = (f"{MAX_CRASHES} crashes within {CRASH_WINDOW_S:.0f} s, the last "
                           f"{type(err).__name__}: {err}")
            log.error("batcher worker gave up: %s", self.failed)
            self._fail_pending(WorkerCrashed(f"the model worker stopped: {self.failed}"))

    def _next(self, timeout: float | None) -> _Request | object | None:
        """The next admitted request (a carried one first), ``_STOP``, or None when
        ``timeout`` ran out. Requests that fail admission are answered and skipped."""
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                item = (self._queue.get_nowait() if left is not None and left <= 0
                        else self._queue.get(timeout=left))
            except queue.Empty:
                return None
            if item is _STOP or self._admit(item):
                return item

    def _admit(self, request: _Request) -> bool:
        """Tokenize the request once (its rows are what gets encoded); fail it here, alone,
        if it cannot be encoded. Called once per request."""
        if not request.future.set_running_or_notify_cancel():
            return False  # the caller gave up while it waited
        try:
            request.encoded = self.encoder.tokenize(request.texts, request.instruction)
            if not request.truncate:
                for i, row in enumerate(request.encoded):
                    if row.truncated:
                        raise InputTooLong(i, row.tokens, self.max_length)
        except Exception as err:  # noqa: BLE001 - the request's own error, handed back
            request.future.set_exception(err)
            return False
        return True

    def _collect(self) -> list[_Request] | None:
        """Requests for one encode call ([] if none came), or None to stop."""
        if self._stopping and self._carry is None:
            return None
        first = self._next(timeout=None)
        if first is _STOP:
            return None
        if first is None:
            return []
        self._in_hand = batch = [first]
        budget = sum(first.tokens)
        deadline = time.monotonic() + self.max_wait
        while self.merge and budget < self.max_batch_tokens:
            item = self._next(timeout=max(0.0, deadline - time.monotonic()))
            if item is None:
                break
            if item is _STOP:
                self._stopping = True  # answer this batch first, then stop
                break
            if budget + sum(item.tokens) > self.max_batch_tokens:
                self._carry = item  # admitted already: it starts the next batch
                break
            batch.append(item)
            budget += sum(item.tokens)
        return batch

    def _process(self, batch: list[_Request]) -> None:
        rows = [e for r in batch for e in r.encoded]
        start = time.perf_counter()
        try:
            vectors = self.encoder.encode_tokenized(rows, batch_size=len(rows),
                                                    max_batch_tokens=self.max_batch_tokens)
        except Exception as err:  # noqa: BLE001
            if len(batch) > 1:  # one bad request must not fail its neighbours: retry alone
                for request in batch:
                    self._process([request])
                return
            batch[0].future.set_exception(err)
            return
        seconds = time.perf_counter() - start
        row = 0
        for request in batch:
            out = vectors[row: row + len(request.texts)]
            row += len(request.texts)
            if request.normalize:
                out = normalize_rows(out)
            request.future.set_result(Result(np.ascontiguousarray(out), request.tokens))
        stats = BatchStats(len(batch), len(rows), sum(sum(r.tokens) for r in batch), seconds)
        self.batches += 1
        self.merged_batches += len(batch) > 1
        self.requests += stats.requests
        self.texts += stats.texts
        self.tokens += stats.tokens
        if self.on_batch is not None:
            try:
                self.on_batch(stats)
            except Exception:  # noqa: BLE001 - metrics must never stop the worker
                log.exception("on_batch callback failed")
