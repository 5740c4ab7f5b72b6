"""The studio's web app: the page, its JSON calls, and the guard in front of them.

The studio writes files, so it is a local tool that no other site may reach, even through the
user's own browser (the danger of a local server: another tab posting to 127.0.0.1, or a
hostile domain re-pointed to 127.0.0.1 by DNS rebinding).  :class:`Guard` therefore answers
403 unless

- the Host header is the address the studio is bound to (127.0.0.1/localhost with its port):
  a rebound domain carries its own name;
- the Origin, when the browser sends one, is that same address: a cross-site post carries
  the other site's;
- the request carries the per-run token: the first page load brings it in the query string
  (the URL `newsletter studio` prints), and the answer sets it as an HttpOnly, SameSite=Strict
  cookie and redirects to `/`, so the token leaves the address bar and rides on every
  same-site call after that.

What a call may write is decided here, never by the request: the issue file that was opened,
or a conflict copy beside it (see :mod:`.studio`).
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import Workspace
from .errors import CheckFailed, NewsletterError
from .issue_pictures import media_type
from .studio import Conflict, Studio
from .studio_yaml import NotAForm

COOKIE = "studio_token"
MAX_BODY = 2_000_000  # an issue file is far smaller; a larger body is refused (413)
MAX_PICTURE = 26_000_000  # check refuses pictures over 25 MB
PAGE = "studio.html.j2"
STATIC = {"studio.js": "text/javascript", "studio.css": "text/css"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src * data:; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)
MARKDOWN_HINT = (
    "Markdown: **bold**, *italic*, [link text](https://…), a line starting with - for a list, "
    "a blank line between paragraphs. HTML is shown as typed, never run."
)
SUBJECT_ADVICE = 78
LOCAL_NAMES = ("127.0.0.1", "localhost")


def picture_key(token: str) -> str:
    """The key in the address of the preview's pictures: derived from the token, so that
    neither can be guessed and the token itself never appears in the page."""
    return hmac.new(token.encode(), b"studio pictures", "sha256").hexdigest()[:32]


def _refuse(message: str) -> Response:
    return Response(
        message + "\n",
        status_code=403,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-store"},
    )


class Guard:
    """Host, Origin and token checks in front of every request (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.port: int | None = None  # set once the socket is bound
        self.pictures = picture_key(token)

    def hosts(self) -> set[str]:
        return {f"{name}:{self.port}" for name in LOCAL_NAMES}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        host = request.headers.get("host", "")
        if host not in self.hosts():
            await _refuse("This studio answers only at the address `newsletter studio` printed.")(
                scope, receive, send
            )
            return
        if request.method == "GET" and request.url.path.startswith(f"/images/{self.pictures}/"):
            # The preview's pictures, asked for by its sandboxed frames (an opaque origin that
            # carries no cookie): the path holds a key derived from the token instead.
            await self.app(scope, receive, send)
            return
        origin = request.headers.get("origin")
        fetch_site = request.headers.get("sec-fetch-site")
        if (origin is not None and origin != f"http://{host}") or fetch_site == "cross-site":
            await _refuse("Requests from other sites are refused.")(scope, receive, send)
            return
        given = request.query_params.get("token")
        if given is not None and request.url.path == "/" and request.method == "GET":
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await _refuse(_NO_TOKEN)(scope, receive, send)
                return
            redirect = RedirectResponse("/", status_code=303)
            redirect.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            redirect.headers["Cache-Control"] = "no-store"
            await redirect(scope, receive, send)
            return
        cookie = SimpleCookie(request.headers.get("cookie", ""))
        held = cookie[COOKIE].value if COOKIE in cookie else request.headers.get("x-studio-token")
        if held is None or not hmac.compare_digest(held.encode(), self.token.encode()):
            await _refuse(_NO_TOKEN)(scope, receive, send)
            return
        await self.app(scope, receive, send)


_NO_TOKEN = (
    "This page's session has ended or the address is incomplete: open the address "
    "`newsletter studio` printed (it ends in ?token=…)."
)


async def _body(request: Request, limit: int) -> bytes:
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > limit):
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


async def _payload(request: Request) -> dict[str, Any]:
    body = await _body(request, MAX_BODY)
    if "application/json" not in request.headers.get("content-type", ""):
        raise NewsletterError("the studio takes JSON")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise NewsletterError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise NewsletterError("the request is not a JSON object")
    return data


class _TooLarge(Exception):
    pass


def _json(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _failure(exc: Exception) -> JSONResponse:
    if isinstance(exc, _TooLarge):
        return _json(
            {
                "ok": False,
                "message": "That is too large: an issue's form takes up to 2 MB, a picture 25 MB.",
            },
            413,
        )
    if isinstance(exc, Conflict):
        return _json({"conflict": True, "message": f"{exc.message}. {exc.hint}"}, 409)
    if isinstance(exc, CheckFailed):
        errors = [p for p in exc.problems if p.severity == "error"] or exc.problems
        first = errors[0]
        where = f"{first.field}: " if first.field else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = f"Fix the issue's errors first: {where}{first.message}{more}."
        return _json({"ok": False, "message": message}, 400)
    if isinstance(exc, NotAForm):
        return _json({"ok": False, "message": f"The form cannot be used here: {exc}"}, 400)
    if isinstance(exc, NewsletterError):
        hint = f" {exc.hint}" if exc.hint else ""
        return _json({"ok": False, "message": f"{exc.message}.{hint}".replace("..", ".")}, 400)
    raise exc


def create_studio_app(ws: Workspace, issue_path: Path | None, token: str) -> Starlette:
    """The studio for one issue file (None: no issue yet, the page offers to create one)."""
    import jinja2

    studio = Studio(ws, issue_path)
    studio.picture_key = picture_key(token)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ws.pages_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    async def page(request: Request) -> Response:
        state = await run_in_threadpool(studio.state)
        text = json.dumps(state).replace("<", "\\u003c").replace(">", "\\u003e")
        html = env.get_template(PAGE).render(
            issue_file=studio.label(),
            state_json=Markup(text.replace("&", "\\u0026")),
            subject_advice=SUBJECT_ADVICE,
            markdown_hint=MARKDOWN_HINT,
            lang="en",
        )
        return HTMLResponse(html, headers=headers)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(
            ws.pages_dir / name, media_type=STATIC[name], headers={"Cache-Control": "no-store"}
        )

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # no icon: a browser's request for one is not an error

    async def picture(request: Request) -> Response:
        """The issue's own pictures as the last good build prepared them."""
        name = request.path_params["name"]
        data = studio.pictures.get(name)
        if data is None:
            return Response("no such picture in this issue\n", 404, media_type="text/plain")
        return Response(data, media_type=media_type(name), headers={"Cache-Control": "no-store"})

    async def add_picture(request: Request) -> Response:
        """A picture picked in the page: the raw file, its name in X-File-Name (%-encoded)."""
        try:
            if studio.issue_path is None:
                raise NewsletterError("there is no issue yet")
            name = unquote(request.headers.get("x-file-name", ""))
            data = await _body(request, MAX_PICTURE)
            return _json(await run_in_threadpool(studio.add_picture, name, data))
        except Exception as exc:
            return _failure(exc)

    async def state(request: Request) -> Response:
        return _json(await run_in_threadpool(studio.state))

    async def version(request: Request) -> Response:
        return _json({"version": await run_in_threadpool(studio.version)})

    def _call(work: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                payload = await _payload(request)
                return _json(await run_in_threadpool(work, payload))
            except Exception as exc:
                return _failure(exc)

        return endpoint

    def preview(payload: dict[str, Any]) -> dict[str, Any]:
        if studio.issue_path is None:
            raise NewsletterError("there is no issue yet")
        return studio.report(studio.text_for(payload))

    def save(payload: dict[str, Any]) -> dict[str, Any]:
        if studio.issue_path is None:
            raise NewsletterError("there is no issue yet")
        return studio.save(payload)

    def new(payload: dict[str, Any]) -> dict[str, Any]:
        return studio.create(str(payload.get("month") or ""))

    def test(payload: dict[str, Any]) -> dict[str, Any]:
        if studio.issue_path is None:
            raise NewsletterError("there is no issue yet")
        addresses = str(payload.get("addresses") or "").strip()
        if not addresses:
            raise NewsletterError("Type the address to send the test copy to")
        return {"ok": True, "message": studio.send_test(addresses, payload)}

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/favicon.ico", no_icon),
            Route("/api/state", state),
            Route("/api/version", version),
            Route("/api/preview", _call(preview), methods=["POST"]),
            Route("/api/save", _call(save), methods=["POST"]),
            Route("/api/new", _call(new), methods=["POST"]),
            Route("/api/test", _call(test), methods=["POST"]),
            Route("/api/picture", add_picture, methods=["POST"]),
            Route("/images/{key}/{name}", picture),
        ]
    )
    app.state.studio = studio
    return app
