"""The server's log: one logger, and no unsubscribe token in any line.

Every server module logs as ``newsletter.server`` (the name support greps for).  An
unsubscribe token holds the reader's address, so paths are written as ``/u/<token>``
(:func:`mask_tokens`), and `serve` puts :class:`TokenMask` on its log handlers so that
uvicorn's lines, tracebacks included, are masked too.  Addresses themselves appear
only as keyed tags (:mod:`newsletter.logmask`).
"""

from __future__ import annotations

import logging
import re

from starlette.requests import Request

log = logging.getLogger("newsletter.server")

_TOKEN_IN_PATH = re.compile(r"/(u|p|confirm)/[^/?#\s\"'<>]+")


def mask_tokens(text: str) -> str:
    """``/u/<token>`` for every link token in a text (unsubscribe, preferences, confirm):
    an older unsubscribe token is the address, and no token belongs in a log."""
    return _TOKEN_IN_PATH.sub(lambda m: f"/{m.group(1)}/<token>", text)


class TokenMask(logging.Filter):
    """A handler filter that takes unsubscribe tokens out of every record, traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_tokens(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_tokens(record.exc_text)
        return True


def client(request: Request) -> str:
    """The peer's address, for log lines."""
    return request.client.host if request.client else "?"
