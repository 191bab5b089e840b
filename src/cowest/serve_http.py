"""The HTTP server under `cowest serve`: uvicorn, with a deadline on receiving each request and a connection cap.

uvicorn's `timeout_keep_alive` covers only the idle time between requests and is reset by every byte received, and
an ASGI app is called only once a request's headers are parsed, so neither can cut a client that trickles its
headers or body a byte at a time (400 such connections stayed open for ever). `ReceiveDeadline` wraps uvicorn's h11
protocol: from a connection's start, and from the first byte of each later request on it, the whole request must
arrive within `serve.receive_timeout_s`; the deadline is off while the app answers, so long answers and streams are
never cut.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cowest.core.config import ServeConfig


def receive_deadline(timeout_s: float) -> type:
    """uvicorn's h11 protocol class with a `timeout_s` deadline on receiving each request."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    complete = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.SWITCHED_PROTOCOL)

    class ReceiveDeadline(H11Protocol):  # type: ignore[misc]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in complete:
                self._disarm()  # the app has the whole request: its answer takes what it takes
            else:
                self._arm()  # a request (or the next one on a kept-alive connection) is on its way

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.logger.warning("closed a connection that did not deliver its request within %g s", timeout_s)
                self.transport.close()

    return ReceiveDeadline


def server_config(app: Any, s: ServeConfig, log_level: str = "warning") -> Any:
    """The uvicorn config `cowest serve` runs `app` with."""
    import uvicorn

    return uvicorn.Config(app, host=s.host, port=s.port, log_level=log_level, access_log=False,
                          http=receive_deadline(s.receive_timeout_s), limit_concurrency=s.max_connections)
