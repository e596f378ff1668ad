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
503), so a wedged worker never leaves callers waiting forever. ``close`` drains (every
queued request is answered); ``abort`` is the forced stop: every request not answered yet
fails with ``Closed`` at once (HTTP 503), without waiting for the running forward pass. No web
imports: the server, a pool or any thread can use it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
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


@dataclass(eq=False)  # hashed by identity: the batcher keeps a set of live requests
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
        self._aborted = False
        self._live: set[_Request] = set()  # submitted, not answered yet (what abort fails)
        self._live_lock = threading.Lock()
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
        with self._live_lock:
            self._live.add(request)
        request.future.add_done_callback(lambda _: self._forget(request))
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            request.future.cancel()
            raise Overloaded(self.max_queue) from None
        return request.future

    async def embed(self, texts: str | Sequence[str],
                    instruction: str | Sequence[str] | None = None, normalize: bool = False,
                    truncate: bool = True) -> Result:
        """``submit`` for asyncio code: awaits the result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(texts, instruction, normalize, truncate))

    def close(self, timeout: float | None = 30.0) -> None:
        """Refuse new requests, answer the queued ones, stop the worker (within ``timeout``).
        After ``abort`` (or a first ``close``) it only waits for the worker to finish."""
        if not self._closed.is_set():
            self._closed.set()
            if self._thread.is_alive():
                try:
                    self._queue.put(_STOP, timeout=timeout)  # after every queued request
                except queue.Full:
                    pass
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("batcher worker still busy after %.0f s; pending requests fail",
                            timeout)
        self._fail_pending(Closed("the server shut down before this request was processed"))

    def abort(self, reason: str = "the server was stopped before this request was answered: "
                                  "retry it (on another replica)") -> None:
        """The forced stop: refuse new requests and fail every request not answered yet
        (queued, carried to the next batch, or in the forward pass now running) with
        ``Closed(reason)`` at once; the worker stops after its running batch, whose results
        are dropped. Does not block: callers get their answer while the batch still runs.
        ``close`` afterwards waits for the worker."""
        self._aborted = True
        self._closed.set()
        error = Closed(reason)
        self._fail_pending(error)
        with self._live_lock:
            live = list(self._live)
        for request in live:
            _answer(request.future, error=error)
        try:
            self._queue.put_nowait(_STOP)  # wakes a worker waiting for requests
        except queue.Full:
            pass

    def _forget(self, request: _Request) -> None:
        with self._live_lock:
            self._live.discard(request)

    def _fail_pending(self, error: Exception) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request):
                _answer(item.future, error=error)

    # -- worker side -------------------------------------------------------------------------
    def _run(self) -> None:
        """The supervisor: the loop below, started again after a crash."""
        while True:
            try:
                self._loop()
                break
            except BaseException as err:  # noqa: BLE001 - answered, then the loop restarts
                self._crashed(err)
                if self.failed is not None:
                    return
        if self._aborted:  # anything admitted after abort ran: answered, never left waiting
            self.abort()

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
            _answer(request.future, error=error)
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
        try:
            if not request.future.set_running_or_notify_cancel():
                return False  # the caller gave up while it waited
        except RuntimeError:
            return False  # answered already: abort failed it while it waited
        try:
            request.encoded = self.encoder.tokenize(request.texts, request.instruction)
            if not request.truncate:
                for i, row in enumerate(request.encoded):
                    if row.truncated:
                        raise InputTooLong(i, row.tokens, self.max_length)
        except Exception as err:  # noqa: BLE001 - the request's own error, handed back
            _answer(request.future, error=err)
            return False
        return True

    def _collect(self) -> list[_Request] | None:
        """Requests for one encode call ([] if none came), or None to stop."""
        if self._aborted or (self._stopping and self._carry is None):
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
        if self._aborted:
            return  # abort answered these requests: no forward pass for them
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
            _answer(batch[0].future, error=err)
            return
        seconds = time.perf_counter() - start
        row = 0
        for request in batch:
            out = vectors[row: row + len(request.texts)]
            row += len(request.texts)
            if request.normalize:
                out = normalize_rows(out)
            _answer(request.future, Result(np.ascontiguousarray(out), request.tokens))
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


def _answer(future: Future, result: Result | None = None,
            error: BaseException | None = None) -> None:
    """Set a request's result or error unless it has one already: ``abort`` fails requests
    from another thread while their batch is still running."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
