"""Commands: preview and archive (registered on the shared app when imported).

Everything heavy (starlette, uvicorn, the build pipeline) is imported inside the
commands, so that `newsletter --help` and the other commands do not pay for it.
"""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import NewsletterError
from ..words import plural
from . import app, console, state
from .plain_help import PlainHelp, check_port


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else (Path.cwd() / path)


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting the server, so `--port 0` can print the port the system chose."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NewsletterError(
                f"port {port} on {host} is already in use",
                hint="stop the other program, or pass --port 0 to pick a free port",
            ) from None
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint="use --host 127.0.0.1"
        ) from None
    sock.listen(128)
    return sock


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve_until_stopped(web_app: Any, sock: socket.socket) -> None:
    """Serve a local page on an already bound socket until Ctrl+C (preview, studio)."""
    import uvicorn

    config = uvicorn.Config(web_app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


@app.command(cls=PlainHelp)
def preview(
    issue: Annotated[
        Path,
        typer.Argument(
            metavar="ISSUE", help="The issue: its file (issues/2019-09.yaml) or its id (2019-09)."
        ),
    ],
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="PORT",
            help="Port (default 8025); 0 picks a free one.",
            show_default=False,
        ),
    ] = 8025,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help="Address to listen on (default 127.0.0.1).",
            show_default=False,
        ),
    ] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in a browser.")
    ] = False,
    as_reader: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="ADDRESS",
            help="Show the issue as this subscriber gets it: their name, their unsubscribe "
            "link and its page's language.",
        ),
    ] = None,
    list_name: Annotated[
        str | None,
        typer.Option(
            "--list",
            metavar="NAME",
            help="With --as: the list to find them on (default: the first list that has them).",
        ),
    ] = None,
) -> None:
    """Preview an issue in the browser as readers will see it.

    Desktop, phone, dark mode and plain text side by side, with a sample reader (or
    the subscriber given with --as); the page reloads as you edit.
    """

    from ..preview import check_issue_path, create_app, find_reader

    ws = state.workspace()
    ws.config  # noqa: B018 - a broken newsletter.toml is reported here, before the server starts
    check_port(port)
    from ..issue import issue_file

    issue_path = _resolve(issue_file(ws.issues_dir, issue))  # a path, or an id (2019-10)
    check_issue_path(issue_path)
    if list_name is not None and as_reader is None:
        raise typer.BadParameter("--list goes with --as ADDRESS", param_hint="--list")
    reader = find_reader(ws, as_reader, list_name) if as_reader is not None else None
    web_app = create_app(ws, issue_path, reader)
    snap = web_app.state.preview.current()
    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])
    summary = (
        f"{plural(len(snap.errors), 'error')}, {plural(len(snap.warnings), 'warning')} (listed in the page)"
        if snap.problems
        else "no problems"
    )
    console.print(f"Preview of {issue} at {url}", markup=False)
    if reader is not None:
        console.print(f"  as {reader.describe()}", markup=False)
    console.print(
        f"  {summary}; the page reloads when you save. Press Ctrl+C to stop.", markup=False
    )
    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    serve_until_stopped(web_app, sock)
    console.print("preview stopped", markup=False)


@app.command(cls=PlainHelp)
def archive(
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", metavar="FOLDER", help="Output folder (default archive-site/)."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
) -> None:
    """Write the web archive of all issues.

    An index page, one page per issue and an Atom feed, for any static host.
    """
    from ..archive import build_site, default_dir, write_site
    from .issues import print_problems

    ws = state.workspace()
    site = build_site(ws, strict=strict)
    target = _resolve(out) if out else default_dir(ws)
    written = write_site(site, target)
    print_problems(site.warnings)
    console.print(
        f"archive: {plural(len(site.entries), 'issue')}, {plural(len(site.warnings), 'warning')} -> {target}",
        markup=False,
    )
    for path in written:
        console.print(f"  {path.relative_to(target)}", markup=False)
