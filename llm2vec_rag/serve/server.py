"""uvicorn's server with a forced stop that answers its in-flight requests.

On a second SIGINT uvicorn stops waiting for in-flight requests and skips the app's shutdown;
the request tasks still running are cancelled when the event loop closes, and uvicorn answers
a cancelled request with ``500 Internal Server Error`` - a forced stop would blame the
server's code. Here the forced stop first calls ``on_forced_stop`` (the batcher fails every
request it has not answered with ``Closed``, which the routes answer ``503 shutting_down``),
gives those answers up to ``answer_timeout`` seconds to go out, then closes every connection
still open, so a request that is still running (reading its body, say) sees a closed
connection rather than a 500.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

log = logging.getLogger("llm2vec_rag.serve")


class Server(uvicorn.Server):
    """``uvicorn.Server`` whose forced stop answers 503 or closes (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, on_forced_stop: Callable[[], None],
                 answer_timeout: float = 2.0) -> None:
        super().__init__(config)
        self.on_forced_stop, self.answer_timeout = on_forced_stop, answer_timeout

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:
            await self.answer_in_flight()

    async def answer_in_flight(self) -> None:
        """Fail what the model has not answered (503), let the answers go out, close the rest."""
        state = self.server_state
        running = len(state.tasks)
        try:
            self.on_forced_stop()
        except Exception:  # noqa: BLE001 - the connections are still closed below
            log.exception("forced stop: failing the pending requests failed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout
        while state.tasks and loop.time() < deadline:
            await asyncio.sleep(0.02)
        left = list(state.connections)
        for connection in left:
            connection.transport.close()
        await asyncio.sleep(0.05)  # connection_lost runs: cancelled tasks write nothing
        log.info("forced stop: %d of %d request(s) in flight answered, %d connection(s) "
                 "closed", running - len(state.tasks), running, len(left))
