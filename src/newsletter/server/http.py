"""Running the app with uvicorn, hardened against hostile clients (`newsletter serve`).

* A request's headers must be complete within ``server.request_timeout`` of the
  connection opening (or of the previous answer), else the connection is closed
  (:class:`DeadlineH11Protocol`); its body has the same deadline in
  :func:`.bodies.read_body` (else 408, the partial body dropped).
* At most ``server.max_connections`` connections are open; more get 503.
* uvicorn writes no access log and no config of its own: its records go to the
  handlers `serve` set up (with :class:`.logs.TokenMask`), named plainly
  (:class:`UvicornNames`).
* glibc is told to give large request buffers back to the system at once.

The client's Host header never reaches the app (:class:`.app.PinnedHost`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import sys

from starlette.applications import Starlette
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Server as ServerSettings
from .logs import log


class UvicornNames(logging.Filter):
    """A handler filter for uvicorn's records: plain words, and not all tagged "error".

    uvicorn logs everything, "Started server process" included, as ``uvicorn.error``;
    its records are shown as ``uvicorn``, and its 503 for too many connections says
    which setting decides.
    """

    def __init__(self, max_connections: int) -> None:
        super().__init__()
        self.max_connections = max_connections

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn"
            if record.msg == "Exceeded concurrency limit.":
                record.msg = (
                    "503 to a new request: %d connections are open already"
                    " (server.max_connections in newsletter.toml)"
                )
                record.args = (self.max_connections,)
        return True


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for a request's headers.

    uvicorn closes a connection that stays idle between requests, but not one that
    sends its headers a byte at a time: with ``limit_concurrency`` set, a hundred
    such sockets would lock every reader out for good.  From the moment a connection
    opens, and again after each answer, the next request's headers must be complete
    within ``header_seconds``; the body has its own deadline in :func:`read_body`.
    """

    header_seconds: float = 15.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_seconds, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body has its own deadline
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request; a silent idle socket is no news
            log.info(
                "connection from %s closed: no complete request within %g s"
                " (server.request_timeout)",
                self.client[0] if self.client else "?",
                self.header_seconds,
            )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)


def _give_big_buffers_back() -> None:
    """Make glibc return a freed request buffer to the system at once (Linux only).

    glibc serves allocations over 128 KB with their own mapping, given back when
    freed, but raises that threshold each time such a block is freed; after one
    batch of large bodies, the next ones come from the heap, which keeps its pages.
    Measured (benchmarks/bench_serve_hostile.py): 60 stalled 4.9 MB bodies left the
    server 50 MB larger after their 408s; with the threshold pinned, 2 MB.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has it too, as a no-op)
        return
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def serve_forever(application: Starlette, sock: socket.socket, settings: ServerSettings) -> None:
    """Run ``application`` with uvicorn on a listening socket until Ctrl+C (or SIGTERM).

    Log records are expected to reach the root logger's handlers (``serve`` sets
    them up, with :class:`TokenMask`); uvicorn's are renamed there.
    """
    import uvicorn

    class Protocol(DeadlineH11Protocol):
        header_seconds = settings.request_timeout

    for handler in logging.getLogger().handlers:
        handler.addFilter(UvicornNames(settings.max_connections))
    _give_big_buffers_back()
    config = uvicorn.Config(
        application,
        http=Protocol,
        # uvicorn answers 503 once open connections, the new one included, reach this.
        limit_concurrency=settings.max_connections + 1,
        access_log=False,
        server_header=False,
        log_level="info",
        log_config=None,  # uvicorn's records go to our handler (and its mask)
    )
    uvicorn.Server(config).run(sockets=[sock])
