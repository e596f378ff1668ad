"""Deadlines for slow clients, at the HTTP protocol (uvicorn's h11 protocol).

uvicorn's ``timeout_keep_alive`` only covers an idle connection between requests: a client
that never finishes its headers, trickles its body one byte at a time or declares a body it
never sends holds a connection (and a request task) forever. Here every request must
deliver its headers within ``headers_timeout`` seconds of its first byte (or of the
connection opening) and its whole body within ``body_timeout`` seconds of its headers;
otherwise the connection is closed (the app sees the client disconnect). On graceful
shutdown, a connection accepted before it whose request was not read yet is still answered.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("llm2vec_rag.serve")


class DeadlineH11Protocol(H11Protocol):
    """``H11Protocol`` with header and body deadlines (see the module docstring)."""

    headers_timeout: float = 10.0
    body_timeout: float = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_kind = ""
        self._arm_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Graceful shutdown (SIGTERM). uvicorn closes a connection that has no request yet at
        once; but a client whose connection was accepted may have sent its request already
        (still unread while the server was busy): read it and answer it (then close), within
        ``headers_timeout``. Idle kept-alive connections close at once, as before."""
        if self.cycle is None and not self.transport.is_closing():
            self._draining = True
            return  # the headers deadline armed at connection_made still bounds the wait
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and getattr(self, "_draining", False):
            self.cycle.keep_alive = False  # answer this request, then close
        if self.cycle is not before:  # headers complete: a new request started
            self._disarm()
            if self.cycle.more_body:
                self._deadline_kind = "body"
                self._deadline = self.loop.call_later(self.body_timeout, self._body_late,
                                                      self.cycle)
        elif self._waiting_for_headers():
            self._arm_headers()  # first bytes of a request on a kept-alive connection

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_headers(self) -> None:
        if self._deadline is not None and self._deadline_kind == "body":
            self._disarm()  # the last body arrived in time; now the next request's headers
        if self._deadline is None:
            self._deadline_kind = "headers"
            cycle = self.cycle
            self._deadline = self.loop.call_later(self.headers_timeout, self._headers_late,
                                                  cycle)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self, cycle) -> None:
        self._deadline = None
        if self.cycle is cycle and not self.transport.is_closing():
            if self.timeout_keep_alive_task is not None:
                return  # idle between requests: uvicorn's keep-alive timeout closes it
            log.warning("%s: request headers not complete within %.0f s (--headers-timeout): "
                        "connection closed", _peer(self.client), self.headers_timeout)
            self.transport.close()

    def _body_late(self, cycle) -> None:
        self._deadline = None
        if self.cycle is cycle and cycle.more_body and not self.transport.is_closing():
            log.warning("%s: request body not complete within %.0f s (--body-timeout): "
                        "connection closed", _peer(self.client), self.body_timeout)
            self.transport.close()


def protocol_with(headers_timeout: float, body_timeout: float) -> type[DeadlineH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these deadlines."""
    return type("DeadlineH11Protocol", (DeadlineH11Protocol,),
                {"headers_timeout": headers_timeout, "body_timeout": body_timeout})


def _peer(client) -> str:
    return f"{client[0]}:{client[1]}" if client else "client"
