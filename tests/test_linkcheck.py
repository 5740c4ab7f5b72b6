"""`newsletter check --links` against a web server of our own on 127.0.0.1 (tests/linkserver.py).

Every behaviour of a real site the issue names is served here: 200, 301, 302, 403, 404,
410, 500, an answer slower than the timeout, a server that refuses HEAD, a redirect loop,
too many redirects, a port where nothing listens, pictures (wide, narrow, heavy, a page
named .jpg), and over https a certificate nobody trusts and a redirect down to http.  The assertions are on what `check` prints (its JSON) and on what the
server received.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli
from linkserver import LinkServer


@pytest.fixture
def server() -> Iterator[LinkServer]:
    s = LinkServer(slow_seconds=3.0).start(sites=2)
    yield s
    s.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ARTICLES = [
    ("/ok", None),
    ("/moved", None),
    ("/missing", None),
    ("/gone", None),
    ("/broken", None),
    ("/slow", None),
    ("/nohead", None),
    ("/loop-a", None),
    ("/chain/6", None),
    ("/forbidden", None),
    ("REFUSED", None),
    ("/found", "/wide.png"),
    ("/chain/4", "/narrow.png"),
    ("/ok?2", "/heavy.jpg"),
    ("/ok?3", "/page.jpg"),
]


def _issue(server: LinkServer) -> str:
    refused = f"http://127.0.0.1:{_closed_port()}/"
    lines = [
        'subject: "Links of every kind"',
        'preheader: "An issue whose links answer in every way a web site can answer"',
        "date: 2019-09-30",
        "intro: |",
        f"  See [the report]({server.url('/missing', 1)}) and [the page]({server.url('/ok', 1)}).",
        "articles:",
    ]
    for i, (path, picture) in enumerate(ARTICLES):
        url = refused if path == "REFUSED" else server.url(path)
        lines += [
            f'  - title: "Article {i + 1}"',
            "    summary: |",
            f"      Story number {i + 1}.",
            f"    url: {url}",
        ]
        if picture:
            lines += [f"    image: {{src: {server.url(picture)}, alt: 'A picture'}}"]
    return "\n".join(lines) + "\n"


def _setup(workspace: Path, server: LinkServer) -> None:
    (workspace / "issues" / "2019-09.yaml").write_text(_issue(server), "utf-8")
    toml = workspace / "newsletter.toml"
    text = toml.read_text("utf-8")
    text = text.replace('website = "https://www.example.org/"', f'website = "{server.url("/ok")}"')
    text = re.sub(r'logo_url = "[^"]*"', f'logo_url = "{server.url("/wide.png", 1)}"', text)
    text = re.sub(r'url = "https://[^"]*"', f'url = "{server.url("/ok", 1)}"', text)
    toml.write_text(text, "utf-8")


def _link_problems(result: Any) -> dict[str, list[dict[str, Any]]]:
    report = json.loads(result.out)
    found: dict[str, list[dict[str, Any]]] = {}
    for p in report["problems"]:
        if p["code"] != "not_https":
            found.setdefault(p["field"], []).append(p)
    return found


def test_check_links_reports_each_problem_at_its_field_and_line(
    cli: Cli, workspace: Path, server: LinkServer
) -> None:
    _setup(workspace, server)
    offline = cli("check", "2019-09", "--format", "json")
    assert server.requests == []  # without --links, check stays offline
    assert json.loads(offline.out)["errors"] == 0, offline.out

    r = cli("check", "2019-09", "--links", "--link-timeout", "1", "--format", "json")
    assert r.code == 1, r.err
    found = _link_problems(r)
    codes = {field: sorted(p["code"] for p in ps) for field, ps in found.items()}
    assert codes == {
        "intro": ["link_404"],
        "articles[2].url": ["moved_permanently"],
        "articles[3].url": ["link_404"],
        "articles[4].url": ["link_410"],
        "articles[5].url": ["link_server_error"],
        "articles[6].url": ["link_timeout"],
        "articles[8].url": ["redirect_loop"],
        "articles[9].url": ["too_many_redirects"],
        "articles[10].url": ["link_refused"],
        "articles[11].url": ["link_refused_connection"],
        "articles[13].image.src": ["remote_picture_narrow"],
        "articles[14].image.src": ["remote_picture_heavy"],
        "articles[15].image.src": ["remote_not_picture"],
    }
    severities = {f: ps[0]["severity"] for f, ps in found.items()}
    assert severities["articles[3].url"] == severities["articles[4].url"] == "error"
    assert severities["articles[8].url"] == severities["articles[11].url"] == "error"
    assert severities["articles[15].image.src"] == "error"
    for field in ("articles[2].url", "articles[5].url", "articles[6].url", "articles[10].url"):
        assert severities[field] == "warning", field
    assert severities["articles[13].image.src"] == severities["articles[14].image.src"] == "warning"

    # Each names the URL, the line of the field, and the file.
    moved = found["articles[2].url"][0]
    assert server.url("/moved") in moved["message"]
    assert server.url("/ok") in moved["hint"]  # the final address to use
    text = (workspace / "issues" / "2019-09.yaml").read_text("utf-8").splitlines()
    assert text[moved["line"] - 1].strip() == f"url: {server.url('/moved')}"
    gone = found["articles[4].url"][0]
    assert text[gone["line"] - 1].strip() == f"url: {server.url('/gone')}"
    assert gone["file"].endswith("2019-09.yaml")
    assert "1 seconds" in found["articles[6].url"][0]["message"]

    # HEAD first, GET where HEAD is refused; pictures by GET; a User-Agent naming the tool.
    assert server.paths("HEAD").count("/nohead") == 1
    assert server.paths("GET").count("/nohead") == 1
    assert "/ok" not in server.paths("GET")
    assert "/wide.png" in server.paths("GET")
    assert all(r.user_agent.startswith("newsletter-link-check/") for r in server.requests)
    # Each address once, however often it is written (site 1's /ok: the intro, 3 [[social]]).
    assert server.paths(site=1).count("/ok") == 1
    assert server.most_in_flight <= 4  # 2 per site, 2 sites


def test_check_links_text_output_and_cache(cli: Cli, workspace: Path, server: LinkServer) -> None:
    _setup(workspace, server)
    first = cli("check", "2019-09", "--links", "--link-timeout", "1")
    assert first.code == 1
    gone = server.url("/gone")
    assert re.search(
        rf"error: issues/2019-09\.yaml:\d+:5: articles\[4\]\.url: link {re.escape(gone)} "
        r"the page has been removed \(410 Gone\)",
        first.err,
    ), first.err
    assert "warning: " in first.err and "has moved for good to" in first.err
    asked = len(server.requests)
    assert (workspace / ".newsletter" / "links.json").is_file()

    again = cli("check", "2019-09", "--links", "--link-timeout", "1")
    assert again.err.count("\n") == first.err.count("\n")
    # Only what is not kept (a timeout, a 500, a refused port) was asked again.
    repeated = server.requests[asked:]
    assert sorted({r.path for r in repeated}) == ["/broken", "/slow"]

    before = len(server.requests)
    cli("check", "2019-09", "--links=fresh", "--link-timeout", "1")
    assert "/gone" in [r.path for r in server.requests[before:]]

    bad = cli("check", "2019-09", "--links=maybe")
    assert bad.code == 2 and "--links=fresh" in bad.err and "Traceback" not in bad.err


def test_failures_in_words() -> None:
    """DNS and TLS failures cannot be produced on 127.0.0.1 alone: their exceptions are."""
    import ssl

    import httpx

    from newsletter.linkcheck import _failure

    dns = httpx.ConnectError("[Errno -2] Name or service not known")
    assert _failure(dns, 10).code == "link_dns"
    assert _failure(dns, 10).severity == "error"
    tls = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    tls.__cause__ = ssl.SSLError(1, "CERTIFICATE_VERIFY_FAILED")
    assert _failure(tls, 10).code == "link_tls"


def test_tls_failure_and_a_step_down_from_https_to_http(
    cli: Cli, workspace: Path, server: LinkServer, tmp_path: Path
) -> None:
    """A certificate nobody trusts is an error; trusted, a redirect to http is a warning."""
    from linkserver import self_signed

    context, cert_file = self_signed(tmp_path)
    secure = LinkServer(downgrade_to=server.url("/ok")).start(tls=context)
    try:
        _setup(workspace, server)
        issue = workspace / "issues" / "2019-09.yaml"
        issue.write_text(
            issue.read_text("utf-8").replace(server.url("/ok"), secure.url("/to-http"), 1),
            "utf-8",
        )
        untrusted = _link_problems(cli("check", "2019-09", "--links", "--format", "json"))
        assert [p["code"] for p in untrusted["articles[1].url"]] == ["link_tls"]
        assert untrusted["articles[1].url"][0]["severity"] == "error"

        env = {"SSL_CERT_FILE": str(cert_file)}
        trusted = cli("check", "2019-09", "--links=fresh", "--format", "json", env=env)
        [step] = _link_problems(trusted)["articles[1].url"]
        assert step["code"] == "link_leaves_https" and step["severity"] == "warning"
        assert server.url("/ok") in step["message"]
        assert secure.paths("HEAD") == ["/to-http"]
    finally:
        secure.stop()
