"""`newsletter studio`: the guard, live problems and preview, saving, conflicts, test copies.

The app runs in-process behind its guard (starlette's TestClient, addressed as the bound
127.0.0.1:PORT), and the real command is started once as a user starts it.  The page itself
is driven in Chromium by tests/test_studio_browser.py.
"""

from __future__ import annotations

import email
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli
from newsletter.config import Workspace
from newsletter.studio_app import COOKIE, Guard, create_studio_app

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PORT = 8026
TOKEN = "t0ken-for-tests"
BASE = f"http://127.0.0.1:{PORT}"
ISSUE = "issues/2019-09.yaml"


def studio_client(ws: Path, issue: Path | None) -> Any:
    from starlette.testclient import TestClient

    guard = Guard(create_studio_app(Workspace(ws), issue, TOKEN), TOKEN)
    guard.port = PORT
    return TestClient(guard, base_url=BASE)


@pytest.fixture
def client(workspace: Path) -> Iterator[Any]:
    with studio_client(workspace, workspace / ISSUE) as c:
        c.cookies.set(COOKIE, TOKEN)
        yield c


def state(client: Any) -> dict[str, Any]:
    r = client.get("/api/state")
    assert r.status_code == 200, r.text
    return dict(r.json())


# -- the guard -----------------------------------------------------------------------------


def test_the_printed_address_sets_a_strict_cookie_and_leaves_the_address_bar(
    workspace: Path,
) -> None:
    with studio_client(workspace, workspace / ISSUE) as c:
        r = c.get(f"/?token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        page = c.get("/")
        assert page.status_code == 200
        assert "Content-Security-Policy" in page.headers
        assert c.get("/api/state").json()["file"] == ISSUE


@pytest.mark.parametrize(
    ("path", "headers", "cookie"),
    [
        ("/", {}, None),  # no token at all
        ("/api/state", {}, "wrong"),
        (f"/?token={TOKEN}x", {}, None),
        ("/api/state", {"host": f"evil.example:{PORT}"}, TOKEN),  # DNS rebinding
        ("/api/state", {"host": "127.0.0.1:9"}, TOKEN),
        ("/api/state", {"origin": "http://evil.example"}, TOKEN),  # another site's page
        ("/api/state", {"sec-fetch-site": "cross-site"}, TOKEN),
    ],
)
def test_requests_without_the_token_or_from_elsewhere_get_403(
    workspace: Path, path: str, headers: dict[str, str], cookie: str | None
) -> None:
    with studio_client(workspace, workspace / ISSUE) as c:
        if cookie:
            c.cookies.set(COOKIE, cookie)
        r = c.get(path, headers=headers, follow_redirects=False)
        assert r.status_code == 403
        assert "issues" not in r.text.lower() or "studio" in r.text.lower()


def test_a_cross_site_post_writes_nothing(workspace: Path, client: Any) -> None:
    before = (workspace / ISSUE).read_bytes()
    st = state(client)
    form = st["form"]
    form["subject"] = "Hacked"
    r = client.post(
        "/api/save",
        json={"form": form, "version": st["version"]},
        headers={"origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert (workspace / ISSUE).read_bytes() == before


# -- live problems and preview -----------------------------------------------------------


def test_problems_come_with_the_field_names_the_form_uses(client: Any) -> None:
    form = state(client)["form"]
    form["articles"][1]["url"] = "www.example.org/story"
    form["subject"] = "S" * 90
    r = client.post("/api/preview", json={"form": form}).json()
    assert r["preview"] is None  # an error stops the build: the page keeps the last preview
    [problem] = r["problems"]
    assert problem["field"] == "articles[2].url"
    assert problem["severity"] == "error"
    assert problem["message"].startswith("is not a web address")
    assert problem["where"].startswith(f"{ISSUE}:")
    form["articles"][1]["url"] = "https://example.org/story"
    r = client.post("/api/preview", json={"form": form}).json()
    assert r["counts"] == {"errors": 0, "warnings": 1}
    assert r["problems"][0]["field"] == "subject"
    assert "S" * 90 in r["preview"]["subject"]
    assert "https://example.org/story" in r["preview"]["html"]


def test_the_preview_escapes_what_is_typed(client: Any) -> None:
    form = state(client)["form"]
    form["articles"][0]["title"] = "<script>alert(1)</script> & more"
    form["intro"] = "Hello <img src=x onerror=alert(1)>"
    r = client.post("/api/preview", json={"form": form}).json()
    html = r["preview"]["html"]
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


def test_the_preview_matches_what_check_would_say_of_the_saved_file(
    workspace: Path, client: Any, cli: Cli
) -> None:
    st = state(client)
    form = st["form"]
    form["articles"][3]["image"]["alt"] = ""
    shown = client.post("/api/preview", json={"form": form}).json()["problems"]
    client.post("/api/save", json={"form": form, "version": st["version"]})
    checked = cli("check", ISSUE, "--format", "json")
    assert checked.code != 0
    fields = {p.get("field") for p in json.loads(checked.out)["problems"]}
    assert {p["field"] for p in shown} <= fields


# -- saving -----------------------------------------------------------------------------------


def test_save_writes_the_file_and_a_form_with_errors_is_saved_all_the_same(
    workspace: Path, client: Any
) -> None:
    st = state(client)
    form = st["form"]
    form["subject"] = "October #news: *now*"
    form["articles"][0]["url"] = "not a link"
    r = client.post("/api/save", json={"form": form, "version": st["version"]})
    assert r.status_code == 200
    body = r.json()
    assert "with 1 error" in body["message"] and "check and send will refuse" in body["message"]
    text = (workspace / ISSUE).read_text("utf-8")
    assert 'subject: "October #news: *now*"\n' in text
    assert "    url: not a link\n" in text
    assert text.startswith("# Mesoamerica & Caribbean Digest, September 2019.\n")
    assert body["version"] == state(client)["version"]


def test_an_edit_on_disk_is_never_overwritten_and_keep_both_writes_a_copy(
    workspace: Path, client: Any, cli: Cli
) -> None:
    st = state(client)
    form = st["form"]
    form["subject"] = "Edited in the studio"
    path = workspace / ISSUE
    on_disk = path.read_text("utf-8").replace("number: 42", "number: 43")
    path.write_text(on_disk, "utf-8")
    r = client.post("/api/save", json={"form": form, "version": st["version"]})
    assert r.status_code == 409 and r.json()["conflict"] is True
    assert "changed outside the studio" in r.json()["message"]
    assert path.read_text("utf-8") == on_disk
    r = client.post(
        "/api/save", json={"form": form, "version": st["version"], "resolve": "keep-both"}
    )
    assert r.status_code == 200 and r.json()["reload"] is True
    [copy] = list((workspace / "issues").glob("2019-09.conflict-*.yaml"))
    assert r.json()["saved"] == f"issues/{copy.name}"
    assert 'subject: "Edited in the studio"' in copy.read_text("utf-8")
    assert "number: 42" in copy.read_text("utf-8")  # the version the page had loaded
    assert path.read_text("utf-8") == on_disk
    assert state(client)["form"]["number"] == "43"
    # the copy is not an issue: check of the folder still sees one issue
    assert "conflict" not in cli("check").out + cli("check").err


def test_a_broken_file_opens_as_text_with_its_problems_at_their_lines(
    workspace: Path, client: Any
) -> None:
    path = workspace / ISSUE
    text = path.read_text("utf-8").replace("number: 42", "number: 42\n  oops: [", 1)
    path.write_text(text, "utf-8")
    st = state(client)
    assert st["mode"] == "text" and st["form"] is None and st["text"] == text
    assert st["problems"] and st["problems"][0]["line"] == 8
    fixed = text.replace("\n  oops: [", "")
    r = client.post("/api/save", json={"text": fixed, "version": st["version"]})
    assert r.status_code == 200
    assert path.read_text("utf-8") == fixed
    assert state(client)["mode"] == "form"


def test_a_body_too_large_is_refused(workspace: Path, client: Any) -> None:
    r = client.post(
        "/api/save",
        content=b'{"text": "' + b"x" * 2_100_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert (workspace / ISSUE).read_text("utf-8").startswith("# Mesoamerica")


def test_no_issue_yet_offers_to_create_one(workspace: Path) -> None:
    for p in (workspace / "issues").iterdir():
        p.unlink()
    with studio_client(workspace, None) as c:
        c.cookies.set(COOKIE, TOKEN)
        st = state(c)
        assert st["mode"] == "none" and re.fullmatch(r"\d{4}-\d{2}", st["suggested"])
        r = c.post("/api/new", json={"month": "2027-01"})
        assert r.json() == {"file": "issues/2027-01.yaml"}
        assert (workspace / "issues/2027-01.yaml").read_text("utf-8").startswith("# Issue of")
        assert state(c)["mode"] == "form"


def test_a_studio_is_only_for_files_in_issues(workspace: Path, cli: Cli) -> None:
    outside = workspace / "elsewhere.yaml"
    outside.write_text((workspace / ISSUE).read_text("utf-8"), "utf-8")
    r = cli("studio", "elsewhere.yaml", "--no-open", "--port", "0")
    assert r.code != 0
    assert "the studio edits issue files in issues/" in r.err
    assert "Traceback" not in r.err


# -- test copies ------------------------------------------------------------------------------


def test_send_me_a_test_sends_what_the_page_shows_through_the_outbox(
    workspace: Path, client: Any
) -> None:
    form = state(client)["form"]
    form["subject"] = "Unsaved subject for the test"
    r = client.post("/api/test", json={"form": form, "addresses": "maria@example.org"})
    assert r.status_code == 200, r.text
    message = r.json()["message"]
    assert message == "Written to the outbox: outbox/2019-09/test-1/ (nothing was emailed)."
    [eml] = list((workspace / "outbox/2019-09/test-1").rglob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=default_policy)
    assert msg["To"] == "maria@example.org"
    assert msg["Subject"] == "[TEST] Unsaved subject for the test"
    bad = client.post("/api/test", json={"form": form, "addresses": "not-an-address"})
    assert bad.status_code == 400 and "not an address" in bad.json()["message"]
    form["articles"][0]["url"] = "nope"
    broken = client.post("/api/test", json={"form": form, "addresses": "maria@example.org"})
    assert broken.status_code == 400
    assert broken.json()["message"].startswith("Fix the issue's errors first: articles[1].url")


# -- the command ------------------------------------------------------------------------------


def test_the_command_prints_one_address_and_serves_only_with_its_token(workspace: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "studio", "--port", "0", "--no-open"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.fullmatch(
            r"Studio for issues/2019-09\.yaml: (http://127\.0\.0\.1:(\d+)/)\?token=(\S+)\n", first
        )
        assert m, first
        base, token = m.group(1), m.group(3)
        assert httpx.get(base + "api/state").status_code == 403
        with httpx.Client(base_url=base, follow_redirects=True) as c:
            assert c.get(f"/?token={token}").status_code == 200  # redirected, cookie kept
            assert c.get("/api/state").json()["file"] == ISSUE
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0


# -- pictures ---------------------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def test_a_picked_picture_is_kept_beside_the_issue_and_shown_in_the_preview(
    workspace: Path, client: Any
) -> None:
    from newsletter.studio_app import picture_key

    r = client.post(
        "/api/picture",
        content=_png(800, 400),
        headers={"x-file-name": "Mercado%20Central.PNG", "content-type": "image/png"},
    )
    assert r.status_code == 200, r.text
    src = r.json()["src"]
    assert src == "2019-09/mercado-central.png"
    assert (workspace / "issues" / src).read_bytes()[:4] == b"\x89PNG"
    form = state(client)["form"]
    form["articles"][1]["image"] = {"src": src, "alt": "The central market"}
    preview = client.post("/api/preview", json={"form": form}).json()["preview"]
    key = picture_key(TOKEN)
    shown = re.findall(rf'src="(/images/{key}/[^"]+)"', preview["html"])
    assert len(shown) == 1, preview["html"][:500]
    # the sandboxed preview frames carry no cookie: the key in the address is enough
    bare = httpx.Client(transport=client._transport, base_url=BASE)
    picture = bare.get(shown[0])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert bare.get(f"/images/{'0' * 32}/{shown[0].rsplit('/', 1)[1]}").status_code == 403


def test_a_picked_file_that_is_not_a_picture_is_refused_and_nothing_is_written(
    workspace: Path, client: Any
) -> None:
    r = client.post(
        "/api/picture",
        content=b"just some text, not a photo",
        headers={"x-file-name": "holiday.jpg", "content-type": "image/jpeg"},
    )
    assert r.status_code == 400
    assert "holiday.jpg" in r.json()["message"]
    assert not (workspace / "issues/2019-09").exists()
    sneaky = client.post(
        "/api/picture",
        content=_png(600, 300),
        headers={"x-file-name": "..%2F..%2Fnewsletter.toml", "content-type": "image/png"},
    )
    assert sneaky.status_code == 400
    assert (workspace / "newsletter.toml").read_text("utf-8").startswith(("[", "#"))
