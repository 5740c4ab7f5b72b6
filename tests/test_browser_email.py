"""The built email and browser version in a real browser (Debian's chromium, headless).

What a reader sees is checked where it is decided, in a rendering engine: no
sideways scrolling on a 375 px phone, a 600 px column on a desktop, pictures and
buttons that render inside the screen, and dark mode that changes the colours
while keeping body text readable (WCAG contrast >= 4.5:1).  Image URLs point at
example.org, which tests never reach, so every image request is answered with a
generated PNG: the pictures really render and take their real size.

Screenshots for review are written to <workspace>/build/2019-09/screenshots/.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser import browser, offline_page
from conftest import SAMPLE_ISSUE, make_workspace, run_cli
from newsletter.issue import read_issue
from test_preview import ISSUE, edit, running_preview

pytestmark = pytest.mark.browser

ISSUE_ID = "2019-09"
COLUMN = 600
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 800, "height": 900}


def png(width: int, height: int, rgb: tuple[int, int, int] = (120, 144, 156)) -> bytes:
    """A solid-colour PNG, made here so no image file has to be checked in."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


IMAGE = png(1104, 552)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def new_page(b: Any, viewport: dict[str, int], *, dark: bool = False) -> Any:
    """An offline page whose image requests get IMAGE (everything else: see offline_page)."""
    page = offline_page(b, viewport=viewport, color_scheme="dark" if dark else "light")

    def images(route: Any) -> None:
        if route.request.resource_type == "image":
            route.fulfill(status=200, content_type="image/png", body=IMAGE)
        else:
            route.fallback()

    page.route("**/*", images)
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace for the module, built once with the real `newsletter build`."""
    ws = make_workspace(tmp_path_factory.mktemp("browser") / "ws")
    r = run_cli("build", SAMPLE_ISSUE, cwd=ws)
    assert r.code == 0, r.err
    (ws / "build" / ISSUE_ID / "screenshots").mkdir()
    return ws


@pytest.fixture(scope="module")
def b() -> Iterator[Any]:
    with browser() as chromium:
        yield chromium


def shots(ws: Path) -> Path:
    return ws / "build" / ISSUE_ID / "screenshots"


def open_built(b: Any, ws: Path, name: str, viewport: dict[str, int], *, dark: bool = False) -> Any:
    page = new_page(b, viewport, dark=dark)
    page.goto((ws / "build" / ISSUE_ID / name).as_uri(), wait_until="load")
    return page


def parse_rgb(css: str) -> tuple[float, float, float, float]:
    m = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", css)
    assert m, css
    return (float(m[1]), float(m[2]), float(m[3]), float(m[4]) if m[4] is not None else 1.0)


def luminance(rgb: tuple[float, ...]) -> float:
    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, bl = (lin(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl


def contrast(fg: str, bg: str) -> float:
    f, k = parse_rgb(fg), parse_rgb(bg)
    assert f[3] == 1.0 and k[3] == 1.0, (fg, bg)
    hi, lo = sorted((luminance(f), luminance(k)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# Colour of each body-text paragraph and of the first opaque background behind it.
TEXT_COLOURS_JS = """(selector) => Array.from(document.querySelectorAll(selector)).map(el => {
  let node = el, bg = null;
  while (node && node.nodeType === 1) {
    const c = getComputedStyle(node).backgroundColor;
    if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') { bg = c; break; }
    node = node.parentElement;
  }
  return {text: el.textContent.trim().slice(0, 50), fg: getComputedStyle(el).color,
          bg: bg || 'rgb(255, 255, 255)'};
})"""

BOXES_JS = """(selector) => Array.from(document.querySelectorAll(selector)).map(el => {
  const r = el.getBoundingClientRect();
  return {left: r.left, right: r.right, width: r.width, height: r.height,
          text: (el.textContent || el.alt || '').trim().slice(0, 40),
          loaded: el.tagName === 'IMG' ? (el.complete && el.naturalWidth > 0) : true};
})"""

BUTTONS = "td[bgcolor][role=presentation] > a"
BODY_TEXT = ".nl-text p, .nl-text li"


# ----------------------------------------------------------------- layout
@pytest.mark.parametrize("name", ["email.html", "web.html"])
def test_phone_has_no_horizontal_scroll(b: Any, site: Path, name: str) -> None:
    page = open_built(b, site, name, PHONE)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    widths = page.evaluate(f"""Array.from(document.querySelectorAll(
        'div[style*="max-width:{COLUMN}px"]')).map(d => d.getBoundingClientRect().width)""")
    assert widths and all(0 < w <= PHONE["width"] for w in widths), widths
    out = shots(site) / ("mobile.png" if name == "email.html" else "web-mobile.png")
    page.screenshot(path=str(out), full_page=True)
    assert png_size(out.read_bytes())[0] == PHONE["width"]
    page.context.close()


@pytest.mark.parametrize("name", ["email.html", "web.html"])
def test_desktop_column_is_600px(b: Any, site: Path, name: str) -> None:
    page = open_built(b, site, name, DESKTOP)
    # MJML makes one centred `max-width:600px` block per section: together, the column.
    boxes = page.evaluate(f"""Array.from(document.querySelectorAll(
        'div[style*="max-width:{COLUMN}px"]')).map(d => {{
          const r = d.getBoundingClientRect(); return [r.left, r.width]; }})""")
    assert len(boxes) >= 5
    assert {round(w) for _, w in boxes} == {COLUMN}
    assert {round(left) for left, _ in boxes} == {(DESKTOP["width"] - COLUMN) // 2}
    assert page.evaluate("document.scrollingElement.scrollWidth") <= DESKTOP["width"]
    out = shots(site) / ("desktop.png" if name == "email.html" else "web-desktop.png")
    page.screenshot(path=str(out), full_page=True)
    assert png_size(out.read_bytes())[0] == DESKTOP["width"]
    page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_images_and_buttons_render_inside_the_screen(
    b: Any, site: Path, viewport: dict[str, int]
) -> None:
    page = open_built(b, site, "email.html", viewport)
    issue = read_issue(site / SAMPLE_ISSUE).issue
    images = page.evaluate(BOXES_JS, "img")
    assert len(images) == 1 + sum(1 for a in issue.articles if a.image)  # the logo + pictures
    buttons = page.evaluate(BOXES_JS, BUTTONS)
    assert len(buttons) == len(issue.articles)
    for box in images + buttons:
        assert box["loaded"], box
        assert box["width"] > 0 and box["height"] > 0, box
        assert box["left"] >= 0 and box["right"] <= viewport["width"], box
    assert all(box["text"] for box in buttons)
    # The article pictures keep their 2:1 shape (height follows the real image).
    article = [box for box in images if box["width"] > 200]
    assert article and all(abs(box["width"] / box["height"] - 2) < 0.05 for box in article)
    page.context.close()


# ----------------------------------------------------------------- dark mode
@pytest.mark.parametrize("name", ["email.html", "web.html"])
def test_dark_mode_changes_colours_and_keeps_contrast(b: Any, site: Path, name: str) -> None:
    light_page = open_built(b, site, name, PHONE)
    light = light_page.evaluate(TEXT_COLOURS_JS, BODY_TEXT)
    light_page.context.close()
    dark_page = open_built(b, site, name, PHONE, dark=True)
    assert dark_page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    dark = dark_page.evaluate(TEXT_COLOURS_JS, BODY_TEXT)
    headings = dark_page.evaluate(TEXT_COLOURS_JS, ".nl-text h2 a")
    out = shots(site) / ("dark.png" if name == "email.html" else "web-dark.png")
    dark_page.screenshot(path=str(out), full_page=True)
    dark_page.context.close()

    assert len(light) == len(dark) >= 8
    # The article background and the text colour both change ...
    assert {p["bg"] for p in dark}.isdisjoint({p["bg"] for p in light})
    assert {p["fg"] for p in dark}.isdisjoint({p["fg"] for p in light})
    assert all(luminance(parse_rgb(p["bg"])) < 0.05 for p in dark), dark[:3]
    # ... and every paragraph stays readable, in both schemes.
    for p in light + dark + headings:
        assert contrast(p["fg"], p["bg"]) >= 4.5, p


# ----------------------------------------------------------------- the web archive
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_archive_index_fits_a_phone_and_is_readable(b: Any, site: Path, dark: bool) -> None:
    if not (site / "archive-site/index.html").is_file():
        r = run_cli("archive", cwd=site)
        assert r.code == 0, r.err
    page = new_page(b, PHONE, dark=dark)
    page.goto((site / "archive-site/index.html").as_uri(), wait_until="load")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    texts = page.evaluate(TEXT_COLOURS_JS, "h1, h2 a, time, li p, .feed a")
    assert len(texts) >= 5
    for t in texts:
        assert contrast(t["fg"], t["bg"]) >= 4.5, t
    page.goto((site / f"archive-site/{ISSUE_ID}/index.html").as_uri(), wait_until="load")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    assert page.title() == "Mesoamerica & Caribbean Digest — September 2019"
    page.context.close()


# ----------------------------------------------------------------- the preview server
def test_preview_page_views_live_reload_and_errors(b: Any, workspace: Path) -> None:
    from playwright.sync_api import expect

    with running_preview(workspace) as server:
        page = new_page(b, {"width": 1920, "height": 1000})
        page.goto(server.url, wait_until="load")
        expect(page.locator("figure.view")).to_have_count(4)
        assert page.title() == "Mesoamerica & Caribbean Digest — September 2019 · preview"

        frames = {
            view: page.locator(f"#view-{view} iframe").element_handle().content_frame()
            for view in ("desktop", "mobile", "dark", "text")
        }
        mobile = frames["mobile"]
        assert mobile.evaluate("innerWidth") == 375
        assert mobile.evaluate("document.scrollingElement.scrollWidth") <= 375
        assert "Hello Ana," in frames["desktop"].inner_text("body")
        assert "Hello Ana," in frames["text"].inner_text("body")
        # The dark view is dark although the page itself is shown in light mode.
        assert not page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        dark_bg = frames["dark"].evaluate(TEXT_COLOURS_JS, BODY_TEXT)[0]["bg"]
        light_bg = frames["mobile"].evaluate(TEXT_COLOURS_JS, BODY_TEXT)[0]["bg"]
        assert luminance(parse_rgb(dark_bg)) < 0.05 < luminance(parse_rgb(light_bg))
        out = workspace / "build" / ISSUE_ID / "screenshots" / "preview.png"
        out.parent.mkdir(parents=True)
        page.screenshot(path=str(out))

        issue = workspace / ISSUE
        edit(
            issue,
            'subject: "Mesoamerica & Caribbean Digest — September 2019"',
            'subject: "Edited in the browser"',
        )
        expect(page).to_have_title("Edited in the browser · preview", timeout=15_000)
        desktop = page.frame_locator("#view-desktop iframe")
        expect(desktop.locator("h1")).to_have_text("Edited in the browser")

        edit(issue, "date: 2019-09-30", "date: 30/09/2019")
        expect(page.locator("#problems")).to_contain_text("YYYY-MM-DD", timeout=15_000)
        expect(page.locator("#status")).to_have_text("1 error")
        expect(page.locator("#problems .where")).to_contain_text("issues/2019-09.yaml:")

        edit(issue, "date: 30/09/2019", "date: 2019-09-30")
        expect(page.locator("#status")).to_have_text("no problems", timeout=15_000)
        expect(page.locator("#problems")).to_have_count(0)
        expect(page.locator("figure.view")).to_have_count(4)
        page.context.close()
