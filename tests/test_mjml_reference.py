"""Our email against the official MJML compiler's: the same theme, compiled by both.

We compile with mjml-python (MRML); the reference is the official compiler, MJML 5
(tests/npm, installed by scripts/setup-test).  The theme's MJML for the sample issue and
for a harder one (long titles and an unbreakable word, no pictures and no logo, Spanish,
lists, a closing note, quotes and ampersands in titles; and the same right to left) is
compiled by both, and what matters is compared after normalising whitespace and
attribute order:

- the Outlook-only (``<!--[if mso | IE]>``) tables and cells: their widths, which are all
  Outlook for Windows has to lay the email out;
- every link's ``href`` and ``title``; every image's ``src``, ``alt`` and ``width``;
- the text a reader sees;
- screenshots of both in Chromium at 375 and 600 px, light and dark: the share of
  pixels that differ must stay under MAX_DIFFERENT_PIXELS.

A divergence fails with the element and the attribute named.  Where mjml-python differed
(divider widths in Outlook, button titles, a stray attribute) src/newsletter/mjml_fixes.py
corrects it; the differences we accept are listed in ACCEPTED, with why.  Screenshots of
a failing comparison are kept under the test's temporary folder (the message names it).
"""

from __future__ import annotations

import base64
import difflib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from lxml import etree

from browser import browser, offline_page
from conftest import SAMPLE_ISSUE, make_workspace
from newsletter.config import Workspace
from newsletter.inline import inline_css
from newsletter.issue import read_issue
from newsletter.render import Renderer, compile_mjml
from test_browser_email import new_page

MJML_BIN = Path(__file__).resolve().parent / "npm" / "node_modules" / ".bin" / "mjml"

# Differences between the two compilers' output that we accept, and why.  None of them is
# in what the tests below compare; they are written down so that nobody "fixes" them.
ACCEPTED = {
    "body class": "MJML 5 puts mj-body's css-class (nl-bg) on <body>, mjml-python on the "
    "wrapper <div>. The theme's CSS no longer depends on where it lands: its dark-mode "
    'rule also names the wrapper as div[role="article"], which both compilers write.',
    "the phone rule .nl-bg > div": "with MJML 5 it reaches the preheader and the wrapper "
    "instead of the sections; none of them has a padding to remove, so phones look the same "
    "(the 375 px screenshots compare it).",
    "whitespace and attribute order": "MJML 5 indents its output and orders attributes "
    "differently; HTML parsers and mail clients read both the same.",
    "Outlook comments split": "mjml-python closes and reopens <!--[if mso | IE]> between "
    "adjacent Outlook-only tags where MJML 5 writes one comment; Outlook reads the same "
    "tags in the same order (what outlook_boxes compares).",
    "class order": 'mjml-python writes class="mj-outlook-group-fix mj-column-per-100", '
    "MJML 5 the other way round; the order of classes means nothing.",
    'class=""': "MJML 5 writes empty class attributes on Outlook-only cells; they do nothing.",
    "button text padding": "MJML 5 writes ' Read more ' (spaces inside the button link); "
    "browsers drop spaces at the edges of an inline block, so it looks the same.",
    "word-spacing on the wrapper": "MJML 5 also writes word-spacing:normal on the wrapper "
    "<div>; it is the browsers' default.",
    "padding 0px": "mjml_fixes writes a unitless 0 in a padding as 0px before mjml-python "
    "reads it (the cells' styles say padding:0px 24px where MJML 5 keeps 0 24px); same layout.",
}

# Share of pixels allowed to differ in a screenshot (anti-aliasing at most), and by how
# much a colour channel may differ before a pixel counts as different.
MAX_DIFFERENT_PIXELS = 0.001
CHANNEL_TOLERANCE = 8
DARK_PAGE = (0x11, 0x18, 0x27)  # the theme's dark page background (#111827)
WIDTHS = [375, 600]

HARD_ISSUE = "issues/2019-10.yaml"
RTL_ISSUE = "issues/2019-11.yaml"
HARD_YAML = """\
subject: "Un asunto muy largo: “comillas”, ampersands & <ángulos> y Donaudampfschifffahrtsgesellschaftskapitänswitwe"
preheader: "Sin imágenes, con listas, títulos largos y una nota final"
date: 2019-10-31
number: 43
language: es
greeting: false
intro: |
  Este número **no tiene imágenes** y prueba lo que suele romperse:

  - títulos muy largos y una palabra sin cortes;
  - listas, [un enlace](https://www.example.org/es/lista?a=1&b=2) y *cursiva*;
  - categorías, lugares y fechas.
articles:
  - title: "La OIM y sus socios apoyan los esfuerzos para mejorar la gestión de la migración laboral en Mesoamérica y el Caribe, con “comillas” & ampersands, y una palabra larguísima: Donaudampfschifffahrtsgesellschaftskapitänswitwe"
    summary: |
      Primer párrafo con un [enlace largo](https://www.example.org/es/noticias/2019-10/un-enlace-muy-largo-que-no-cabe-en-una-linea-de-un-telefono?utm_source=newsletter&utm_medium=email).

      1. Punto uno
      2. Punto dos, con **negrita**
    url: https://www.example.org/es/noticias/2019-10/gestion-migracion-laboral
    category: Movilidad laboral
    location: Ciudad de Guatemala (Guatemala)
    date: 2019-10-03
    button: "Leer la noticia completa"
  - title: "Corto"
    summary: "Un resumen de una línea."
    url: https://www.example.org/es/noticias/2019-10/corto
  - title: "Centroamérica fortalece los protocolos de asistencia a personas migrantes en situaciones de crisis 'entre comillas simples'"
    summary: |
      Un resumen con una lista:

      - uno
      - dos
    url: https://www.example.org/es/noticias/2019-10/protocolos?x=1&y=2
    category: Migrantes en situaciones de crisis
closing: |
  Gracias por leer. Escríbanos a
  [comunicaciones@example.org](mailto:comunicaciones@example.org).
"""


@dataclass(frozen=True)
class Case:
    """One issue's email (or browser version) as compiled by both compilers."""

    name: str
    ours: str  # mjml-python, with newsletter.mjml_fixes, as the build makes it
    official: str  # MJML 5, then the same CSS inlining


def official_mjml(source: str) -> str:
    """Compile with the official MJML compiler (Node.js); its validator must find nothing."""
    if not MJML_BIN.exists():
        pytest.fail(f"{MJML_BIN} is missing: run scripts/setup-test (npm ci in tests/npm)")
    proc = subprocess.run(
        [str(MJML_BIN), "-i", "-s", "--noStdoutFileComment"],
        input=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"official MJML failed: {proc.stderr}"
    assert not proc.stderr.strip(), f"MJML's validator warns about the theme: {proc.stderr}"
    return proc.stdout


def compile_both(ws: Path, issue: str, *, web: bool) -> Case:
    """The theme's MJML for one issue, compiled as the build does and by official MJML."""
    located = read_issue(ws / issue)
    source = Renderer(Workspace(ws)).mjml(located, web=web)
    ours, official = compile_mjml(source), official_mjml(source)
    if not web:  # the build inlines the email's CSS (not the browser version's)
        ours, official = inline_css(ours), inline_css(official)
    name = f"{Path(issue).stem}-{'web' if web else 'email'}"
    return Case(name=name, ours=ours, official=official)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    sample = make_workspace(tmp_path_factory.mktemp("reference") / "sample")
    hard = make_workspace(tmp_path_factory.mktemp("reference") / "hard")
    (hard / HARD_ISSUE).write_text(HARD_YAML, "utf-8")
    toml = hard / "newsletter.toml"  # no logo: the header starts with the title
    toml.write_text(re.sub(r"(?m)^logo_url = .*\n", "", toml.read_text("utf-8")), "utf-8")
    # The same harder issue in Arabic: right-to-left (the theme's labels stay English).
    (hard / RTL_ISSUE).write_text(HARD_YAML.replace("language: es", "language: ar"), "utf-8")
    built = [
        compile_both(sample, SAMPLE_ISSUE, web=False),
        compile_both(sample, SAMPLE_ISSUE, web=True),
        compile_both(hard, HARD_ISSUE, web=False),
        compile_both(hard, RTL_ISSUE, web=False),
    ]
    return {case.name: case for case in built}


CASES = ["2019-09-email", "2019-09-web", "2019-10-email", "2019-11-email"]


# ----------------------------------------------------------------- what is compared
_MSO = re.compile(r"<!--\[if (?!!)[^\]]*\bmso\b[^\]]*\]>(.*?)<!\[endif\]-->", re.S)
_MSO_TAG = re.compile(r"<(table|td)\b([^>]*)>", re.I)
_ATTR = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')


def _style(value: str) -> dict[str, str]:
    pairs = (d.partition(":") for d in value.split(";"))
    return {k.strip().lower(): " ".join(v.split()) for k, _, v in pairs if k.strip()}


def outlook_boxes(html: str) -> list[dict[str, str | None]]:
    """Every Outlook-only <table>/<td> that has a width, in order: its widths and what it is."""
    boxes: list[dict[str, str | None]] = []
    for m in _MSO_TAG.finditer("".join(_MSO.findall(html))):
        attrs = {k.lower(): v for k, v in _ATTR.findall(m[2])}
        style = _style(attrs.get("style", ""))
        if "width" not in attrs and "width" not in style:
            continue
        what = "; ".join(f"{k}:{v}" for k, v in sorted(style.items()) if k != "width")
        boxes.append(
            {
                "element": f"Outlook-only <{m[1].lower()}{' style=' + repr(what) if what else ''}>",
                "width attribute": attrs.get("width"),
                "style width": style.get("width"),
            }
        )
    return boxes


def _document(html: str) -> Any:
    doc = lxml.html.document_fromstring(html)
    etree.strip_elements(doc, etree.Comment, "style", "script", with_tail=False)
    return doc


def _words(el: Any) -> str:
    return " ".join(" ".join(el.itertext()).split())


def links(html: str) -> list[dict[str, str | None]]:
    return [
        {"element": f"<a> {_words(a)!r}", "href": a.get("href"), "title": a.get("title")}
        for a in _document(html).iter("a")
    ]


def images(html: str) -> list[dict[str, str | None]]:
    return [
        {"element": f"<img> {i.get('alt')!r}", **{k: i.get(k) for k in ("src", "alt", "width")}}
        for i in _document(html).iter("img")
    ]


def divergences(
    kind: str, ours: list[dict[str, str | None]], ref: list[dict[str, str | None]]
) -> list[str]:
    """Each difference as 'the element: attribute: mjml-python X, MJML Y'."""
    out = []
    if len(ours) != len(ref):
        out.append(f"{kind}: mjml-python writes {len(ours)}, official MJML {len(ref)}")
    for n, (a, b) in enumerate(zip(ours, ref, strict=False), 1):
        for key in a.keys() - {"element"}:
            if a[key] != b.get(key):
                out.append(
                    f"{kind} #{n}, {b['element']}: {key}: mjml-python {a[key]!r}, "
                    f"official MJML {b.get(key)!r}"
                )
    return out


# ----------------------------------------------------------------- markup
@pytest.mark.parametrize("name", CASES)
def test_outlook_tables_have_the_official_widths(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ours, ref = outlook_boxes(case.ours), outlook_boxes(case.official)
    assert len(ref) > 5, "no Outlook-only tables found in official MJML's output"
    problems = divergences("Outlook-only table", ours, ref)
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", CASES)
def test_links_have_the_official_href_and_title(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ours, ref = links(case.ours), links(case.official)
    assert any(link["title"] for link in ref), "no titled button: the theme sets title"
    problems = divergences("link", ours, ref)
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", CASES)
def test_images_have_the_official_src_alt_and_width(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    problems = divergences("image", images(case.ours), images(case.official))
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", CASES)
def test_text_is_the_same(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ours_doc, ref_doc = _document(case.ours), _document(case.official)
    assert ours_doc.findtext(".//title") == ref_doc.findtext(".//title"), "<title> differs"
    ours, ref = _words(ours_doc.find("body")).split(), _words(ref_doc.find("body")).split()
    assert len(ref) > 50
    if ours != ref:
        diff = difflib.unified_diff(ref, ours, "official MJML", "mjml-python", n=5, lineterm="")
        pytest.fail(f"{name}: the text differs (a word a line):\n" + "\n".join(list(diff)[:60]))


def test_no_stray_attributes_left_by_mjml_python(cases: dict[str, Case]) -> None:
    """`vertical-align` is no HTML attribute, and our marker classes never reach readers."""
    for case in cases.values():
        assert 'vertical-align="' not in case.ours, case.name
        assert "mjfix-" not in case.ours, case.name


# ----------------------------------------------------------------- screenshots
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


# Decodes two PNG screenshots in a canvas and counts the pixels that differ.
COMPARE_JS = """async ([a, b, tolerance]) => {
  const load = src => new Promise((ok, fail) => {
    const img = new Image(); img.onload = () => ok(img); img.onerror = fail; img.src = src; });
  const pixels = img => {
    const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    return g.getImageData(0, 0, img.width, img.height).data;
  };
  const [x, y] = await Promise.all([load(a), load(b)]);
  const w = Math.min(x.width, y.width), h = Math.min(x.height, y.height);
  const p = pixels(x), q = pixels(y);
  let different = 0, first = null;
  for (let row = 0; row < h; row++) {
    for (let col = 0; col < w; col++) {
      const i = (row * x.width + col) * 4, j = (row * y.width + col) * 4;
      if (Math.abs(p[i] - q[j]) > tolerance || Math.abs(p[i + 1] - q[j + 1]) > tolerance
          || Math.abs(p[i + 2] - q[j + 2]) > tolerance) {
        different++;
        if (!first) first = {at: [col, row], ours: Array.from(p.slice(i, i + 3)),
                             official: Array.from(q.slice(j, j + 3))};
      }
    }
  }
  return {ours: [x.width, x.height], official: [y.width, y.height], different, first,
          total: w * h, corner: Array.from(q.slice(0, 3)), ourCorner: Array.from(p.slice(0, 3))};
}"""

# The smallest element drawn at a point of the page (page coordinates), for the message.
ELEMENT_AT_JS = """([x, y]) => {
  let best = null, area = Infinity;
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    const left = r.left + scrollX, top = r.top + scrollY;
    if (x >= left && x < left + r.width && y >= top && y < top + r.height
        && r.width * r.height < area) { best = el; area = r.width * r.height; }
  }
  if (!best) return 'the page background';
  const cls = best.getAttribute('class');
  return '<' + best.tagName.toLowerCase() + (cls ? ' class="' + cls + '"' : '') + '> '
    + JSON.stringify((best.textContent || best.getAttribute('alt') || '').trim().slice(0, 60));
}"""


def hex_colour(rgb: list[int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def screenshot(b: Any, html_file: Path, width: int, *, dark: bool) -> tuple[bytes, Any]:
    page = new_page(b, {"width": width, "height": 900}, dark=dark)
    page.goto(html_file.as_uri(), wait_until="load")
    return page.screenshot(full_page=True), page


SHOTS = [
    (name, width, scheme)
    for name in ("2019-09-email", "2019-10-email")
    for width in WIDTHS
    for scheme in ("light", "dark")
] + [("2019-11-email", width, "light") for width in WIDTHS]  # right-to-left: the layout


@pytest.mark.browser
@pytest.mark.parametrize(("name", "width", "scheme"), SHOTS)
def test_screenshots_match_official_mjml(
    chromium: Any,
    cases: dict[str, Case],
    tmp_path: Path,
    name: str,
    width: int,
    scheme: str,
) -> None:
    case = cases[name]
    dark = scheme == "dark"
    (tmp_path / "ours.html").write_text(case.ours, "utf-8")
    (tmp_path / "official.html").write_text(case.official, "utf-8")
    ours_png, ours_page = screenshot(chromium, tmp_path / "ours.html", width, dark=dark)
    ref_png, ref_page = screenshot(chromium, tmp_path / "official.html", width, dark=dark)
    (tmp_path / "ours.png").write_bytes(ours_png)
    (tmp_path / "official.png").write_bytes(ref_png)

    canvas = offline_page(chromium)
    result = canvas.evaluate(COMPARE_JS, [data_url(ours_png), data_url(ref_png), CHANNEL_TOLERANCE])
    canvas.context.close()
    where = ""
    if result["first"]:
        first = result["first"]
        where = (
            f" First difference at x={first['at'][0]}, y={first['at'][1]}: mjml-python draws "
            f"{ours_page.evaluate(ELEMENT_AT_JS, first['at'])} in {hex_colour(first['ours'])}, "
            f"official MJML {ref_page.evaluate(ELEMENT_AT_JS, first['at'])} in "
            f"{hex_colour(first['official'])}."
        )
    ours_page.context.close()
    ref_page.context.close()
    label = f"{name} at {width}px, {scheme}"
    assert result["ours"] == result["official"], (
        f"{label}: page sizes differ (mjml-python {result['ours']}, official MJML "
        f"{result['official']}).{where} Screenshots: {tmp_path}"
    )
    share = result["different"] / result["total"]

    assert share <= MAX_DIFFERENT_PIXELS, (
        f"{label}: {share:.2%} of the pixels differ (at most {MAX_DIFFERENT_PIXELS:.2%} "
        f"allowed).{where} Screenshots: {tmp_path}"
    )
    if dark:  # both really are dark: the page background, not only the articles
        assert tuple(result["corner"]) == DARK_PAGE, f"{label}: official MJML's page is not dark"
        assert tuple(result["ourCorner"]) == DARK_PAGE, f"{label}: our page is not dark"
