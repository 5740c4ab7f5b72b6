"""`newsletter preview`: the page, its four views, live rebuilds and errors shown in the page.

The app is exercised in-process (starlette's TestClient) for the rebuild logic, and
the real command is started as a subprocess on a free port (`--port 0`).
"""

from __future__ import annotations

import contextlib
import email
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli
from newsletter.config import Workspace
from newsletter.preview import create_app, force_dark

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

ISSUE = "issues/2019-09.yaml"
SUBJECT = "Mesoamerica &amp; Caribbean Digest — September 2019"


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None]  # None: end of output

    def stop(self) -> tuple[int, str, str]:
        """Ctrl+C, as a user stops it; returns (exit code, the rest of stdout, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=10)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        out: list[str] = []
        with contextlib.suppress(queue.Empty):
            while (line := self.lines.get(timeout=10)) is not None:
                out.append(line)
        return code, "".join(out), err


@contextmanager
def running_preview(ws: Path, *args: str) -> Iterator[Running]:
    """Start the real `newsletter preview ISSUE --port 0`; yield its URL and process; stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "preview", ISSUE, "--port", "0", *args],
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        try:
            first = lines.get(timeout=30)
        except queue.Empty:
            proc.kill()
            pytest.fail(
                f"preview printed nothing; stderr: {proc.stderr.read() if proc.stderr else ''}"
            )
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", first or "")
        assert match, first
        assert match.group(1) != "0"
        yield Running(match.group(0), proc, lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def edit(path: Path, old: str, new: str) -> None:
    """Edit a file as an editor would (and make sure its mtime moves on coarse clocks)."""
    text = path.read_text("utf-8")
    assert old in text, old
    before = path.stat().st_mtime_ns
    path.write_text(text.replace(old, new), "utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


@pytest.fixture
def client(workspace: Path) -> Iterator[Any]:
    from starlette.testclient import TestClient

    app = create_app(Workspace(workspace), workspace / ISSUE)
    with TestClient(app) as c:
        yield c


# ----------------------------------------------------------------- dark copy
def test_force_dark_rewrites_only_the_colour_scheme_queries() -> None:
    html = (
        '<html><head><meta name="color-scheme" content="light dark">'
        "<style>@media only screen and (max-width:479px) { .a { x: 1 } }"
        "@media (prefers-color-scheme: dark) { .b { color: #fff !important } }"
        "@media screen and (prefers-color-scheme:light) { .c { y: 2 } }</style></head>"
        "<body></body></html>"
    )
    out = force_dark(html)
    assert "prefers-color-scheme" not in out
    assert "@media (min-width: 0px) { .b { color: #fff !important } }" in out
    assert "@media screen and (max-width: 0px) { .c" in out
    assert "@media only screen and (max-width:479px)" in out
    assert '<meta name="color-scheme" content="dark">' in out
    assert ":root { color-scheme: dark; }</style></head>" in out


# ----------------------------------------------------------------- the app
def test_page_shows_four_views_and_the_filled_email(client: Any, workspace: Path) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    body = page.text
    assert f"<title>{SUBJECT} · preview</title>" in body
    for view in ("desktop", "mobile", "dark", "text"):
        assert f'id="view-{view}"' in body
    assert len(re.findall(r"<iframe ", body)) == 4
    assert 'src="/email.html?dark=1&amp;v=' in body
    assert 'id="status">no problems<' in body
    version = re.search(r'data-version="([0-9a-f]+)"', body)
    assert version and client.get("/version").json() == {"version": version.group(1)}

    html = client.get("/email.html").text
    assert "Hello Ana," in html
    assert "%%" not in html
    assert "https://news.example.org/u/preview" in html
    assert "prefers-color-scheme: dark" in html

    dark = client.get("/email.html?dark=1").text
    assert "prefers-color-scheme" not in dark and "(min-width: 0px)" in dark
    assert '<meta name="color-scheme" content="dark">' in dark
    assert "Hello Ana," in dark

    text = client.get("/email.txt")
    assert text.headers["content-type"].startswith("text/plain")
    assert "Hello Ana," in text.text and "%%" not in text.text

    web = client.get("/web.html").text
    assert "Hello" not in web and "%%" not in web

    eml = client.get("/preview.eml")
    assert eml.headers["content-type"] == "message/rfc822"
    msg = email.message_from_bytes(eml.content, policy=default_policy)
    assert msg["Subject"] == "Mesoamerica & Caribbean Digest — September 2019"


def test_editing_the_issue_rebuilds(client: Any, workspace: Path) -> None:
    v1 = client.get("/version").json()["version"]
    assert client.get("/version").json()["version"] == v1  # stable while nothing changes
    client.get("/")
    edit(
        workspace / ISSUE,
        'subject: "Mesoamerica & Caribbean Digest — September 2019"',
        'subject: "Edited while previewing"',
    )
    v2 = client.get("/version").json()["version"]
    assert v2 != v1
    page = client.get("/").text
    assert "<title>Edited while previewing · preview</title>" in page
    assert f'data-version="{v2}"' in page
    assert "<title>Edited while previewing</title>" in client.get("/email.html").text


def test_broken_yaml_is_shown_in_the_page_and_recovers(client: Any, workspace: Path) -> None:
    assert "Hello Ana," in client.get("/email.html").text
    issue = workspace / ISSUE
    good = issue.read_text("utf-8")
    edit(issue, "date: 2019-09-30", "date: 30/09/2019")
    page = client.get("/")
    assert page.status_code == 200
    assert 'class="status bad" id="status">1 error' in page.text
    line = next(i for i, ln in enumerate(good.splitlines(), 1) if ln.startswith("date:"))
    assert f"issues/2019-09.yaml:{line}:" in page.text
    assert "<strong>date</strong>" in page.text and "YYYY-MM-DD" in page.text
    # The last good build stays visible, marked as out of date.
    assert 'id="views" class="stale"' in page.text
    assert client.get("/email.html").status_code == 200

    edit(issue, "date: 30/09/2019", "date: 2019-09-30")
    page = client.get("/").text
    assert 'id="status">no problems<' in page
    assert "stale" not in page.split("<body", 1)[1].split("<script>", 1)[0]


def test_broken_from_the_start_shows_only_the_errors(workspace: Path) -> None:
    from starlette.testclient import TestClient

    issue = workspace / ISSUE
    issue.write_text(issue.read_text("utf-8").replace("articles:", "articles:\n\t- x"), "utf-8")
    with TestClient(create_app(Workspace(workspace), issue)) as c:
        page = c.get("/")
        assert page.status_code == 200
        assert "tab character" in page.text
        assert "<iframe" not in page.text
        assert "Nothing to show yet" in page.text
        assert c.get("/email.html").status_code == 409


def test_template_and_config_changes_rebuild(client: Any, workspace: Path) -> None:
    assert ">Read more</a>" in client.get("/email.html").text
    edit(
        workspace / "templates/default/labels.toml",
        'read_more = "Read more"',
        'read_more = "Continue reading"',
    )
    html = client.get("/email.html").text
    assert ">Continue reading</a>" in html and ">Read more</a>" not in html

    toml = workspace / "newsletter.toml"
    edit(toml, 'primary = "#0b5394"', 'primary = "blue"')
    page = client.get("/").text
    assert "newsletter.toml" in page and "brand.primary" in page
    edit(toml, 'primary = "blue"', 'primary = "#7a1f5c"')
    assert "#7a1f5c" in client.get("/email.html").text
    assert 'id="status">no problems<' in client.get("/").text

    edit(
        workspace / "templates/default/_article.mjml.j2",
        "{{ article.title }}</a>",
        "{{ article.title </a>",
    )
    page = client.get("/").text
    assert "template syntax error" in page and "_article.mjml.j2" in page


def test_check_warnings_are_listed(client: Any, workspace: Path) -> None:
    issue = workspace / ISSUE
    issue.write_text(re.sub(r"(?m)^preheader: .*\n", "", issue.read_text("utf-8")), "utf-8")
    page = client.get("/").text
    assert 'class="status warn" id="status">1 warning' in page
    assert "<strong>preheader</strong>" in page and "is missing" in page
    assert 'id="views">' in page  # warnings do not hide the views


# ----------------------------------------------------------------- the real command
def test_command_prints_the_real_url_and_serves(workspace: Path) -> None:
    with running_preview(workspace) as server:
        page = httpx.get(server.url, timeout=10)
        assert page.status_code == 200
        assert len(re.findall(r"<iframe ", page.text)) == 4
        assert httpx.get(server.url + "email.html", timeout=10).status_code == 200
        code, out, err = server.stop()
    assert code == 0, err
    assert "preview stopped" in out
    assert "Traceback" not in err


def test_port_in_use_and_missing_file_are_clear_errors(cli: Cli, workspace: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = cli("preview", ISSUE, "--port", str(port), timeout=30)
    assert r.code == 1
    assert f"port {port} on 127.0.0.1 is already in use" in r.err and "--port 0" in r.err
    r = cli("preview", "issues/2019-13.yaml", timeout=30)
    assert r.code == 1
    assert "2019-13.yaml: file not found" in r.err and "Traceback" not in r.err
