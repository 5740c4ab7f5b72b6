"""Reading request bodies from clients we do not trust: size and time limits, forms.

A body is never read past its limit, whatever Content-Length claims, and must
arrive within ``server.request_timeout``; what goes wrong is an exception the app
turns into one answer and one log line (see ``app.py``).
"""

from __future__ import annotations

import asyncio
import email.policy
import re
from email.parser import BytesParser
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    """The body did not arrive in time: answered 408 (see ``body_timeout`` in app.py)."""

    def __init__(self, received: int, seconds: float) -> None:
        super().__init__(f"{received} bytes in {seconds:g} s")
        self.received = received
        self.seconds = seconds


class ClientGone(Exception):
    """The client closed the connection before its body was complete: nobody to answer."""

    def __init__(self, received: int) -> None:
        super().__init__(f"after {received} bytes")
        self.received = received


# An answer that ends the connection: the rest of a refused body is never read.
CLOSE = {"Connection": "close"}

_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also accepts "²"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refusing more than ``limit`` bytes whatever Content-Length claims.

    The whole body must arrive within ``timeout`` seconds (BodyTimeout); a client
    that stalls halfway must not hold a buffer for as long as it keeps the socket
    open.  A buffer given up is freed at once, not when the exception is.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise HTTPException(400, "bad Content-Length")
        if int(declared) > limit:
            raise BodyTooLarge
    body = bytearray()  # one growing buffer: freed whole (realloc/mremap), not as 64 KB crumbs
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise BodyTooLarge
                body += chunk
        return bytes(body)
    except TimeoutError:
        raise BodyTimeout(len(body), timeout) from None
    except ClientDisconnect:
        raise ClientGone(len(body)) from None
    finally:
        body.clear()


def form_fields(content_type: str | None, body: bytes) -> dict[str, str]:
    """The fields of a urlencoded or multipart form (first value of each, name lower-cased).

    Anything else is read as urlencoded: some one-click senders set no Content-Type.
    """
    return {name: values[0] for name, values in form_values(content_type, body, 20).items()}


def form_values(content_type: str | None, body: bytes, limit: int = 50) -> dict[str, list[str]]:
    """Every value of each field (checkboxes sharing a name), at most ``limit`` fields."""
    ctype = (content_type or "").strip()
    out: dict[str, list[str]] = {}
    if ctype.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            return out
        for part in list(message.iter_parts())[:limit]:
            name = part.get_param("name", header="content-disposition")
            value = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(value, bytes):
                out.setdefault(name.strip().lower(), []).append(
                    value.decode("utf-8", "replace").strip()
                )
        return out
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=limit)
    except ValueError:  # too many fields
        return out
    for name, value in pairs:
        out.setdefault(name.strip().lower(), []).append(value.strip())
    return out
