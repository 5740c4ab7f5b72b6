"""Command: studio, the browser editor of an issue (registered on the shared app when imported)."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import app, console, state
from .plain_help import PlainHelp, check_port


@app.command(cls=PlainHelp)
def studio(
    issue: Annotated[
        Path | None,
        typer.Argument(
            metavar="ISSUE",
            help="The issue to edit: its file (issues/2019-10.yaml) or its id (2019-10). "
            "Default: the newest issue, or an offer to create next month's.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="PORT",
            help="Port (default 8026); 0 picks a free one.",
            show_default=False,
        ),
    ] = 8026,
    no_open: Annotated[
        bool, typer.Option("--no-open", help="Do not open the page in a browser.")
    ] = False,
) -> None:
    """Write an issue in the browser, with the email beside it.

    A form for every field of the issue, the email as it will be sent (desktop, phone,
    dark mode, plain text) rebuilt as you type, and check's messages beside each field.
    Save writes the same issues/YYYY-MM.yaml that check, build, send and git use.
    Only this computer can open it: the address printed carries a one-time key.
    """
    from ..issue import issue_file
    from ..studio import inside_issues, newest_issue
    from ..studio_app import Guard, create_studio_app
    from .web import _bind, _resolve, serve_until_stopped

    ws = state.workspace()
    ws.config  # noqa: B018 - a broken newsletter.toml is reported here, before the server starts
    check_port(port)
    if issue is not None:
        path: Path | None = _resolve(issue_file(ws.issues_dir, issue))
        assert path is not None
        if not path.is_file():
            from ..errors import NewsletterError

            raise NewsletterError(
                f"{issue}: file not found",
                hint="give an issue file such as issues/2019-10.yaml, or leave it out to "
                "open the newest (`newsletter new` makes one)",
            )
        inside_issues(ws, path)
    else:
        path = newest_issue(ws.issues_dir)
    token = secrets.token_urlsafe(24)
    guard = Guard(create_studio_app(ws, path, token), token)
    sock = _bind("127.0.0.1", port)
    guard.port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{guard.port}/?token={token}"
    what = f"Studio for {path.relative_to(ws.root.resolve()) if path else 'a new issue'}"
    console.print(f"{what}: {url}", markup=False, soft_wrap=True)
    console.print("Press Ctrl+C to stop (save first).", markup=False)
    sys.stdout.flush()
    if not no_open:
        import webbrowser

        webbrowser.open(url)
    serve_until_stopped(guard, sock)
    console.print("studio stopped", markup=False)
