"""render.py: Jinja2 + MJML on the real theme; autoescape, StrictUndefined, placeholders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter.build import compose
from newsletter.config import Workspace
from newsletter.errors import TemplateError
from newsletter.issue import read_issue
from newsletter.message import FIRST_NAME_HTML, FIRST_NAME_TEXT, UNSUBSCRIBE_URL
from newsletter.render import Renderer


def sample(workspace: Path) -> tuple[Workspace, Path]:
    return Workspace(workspace), workspace / "issues" / "2019-09.yaml"


def test_html_has_lang_headings_alt_and_placeholders(workspace: Path) -> None:
    ws, path = sample(workspace)
    built = compose(ws, path)
    html = built.html
    assert '<html lang="en" dir="ltr"' in html
    assert html.count("<h1") == 1 and html.count("<h2") == 8
    assert 'name="color-scheme" content="light dark"' in html
    assert "prefers-color-scheme: dark" in html
    assert f"Hello {FIRST_NAME_HTML}," in html
    assert f'href="{UNSUBSCRIBE_URL}"' in html
    assert "Regional Office for Mesoamerica and the Caribbean, Avenida Ejemplo 123" in html
    assert "fonts.googleapis.com" not in html  # no web font fetched by clients
    assert 'alt="Representatives of IOM and FECAGRO around a meeting table"' in html
    # preheader is present and hidden
    assert "display:none" in html and "Labour migration, cross-border networks" in html


def test_text_part_has_placeholders_and_no_html(workspace: Path) -> None:
    ws, path = sample(workspace)
    text = compose(ws, path).text
    assert f"Hello {FIRST_NAME_TEXT}," in text
    assert UNSUBSCRIBE_URL in text.splitlines()
    assert "<" not in text.replace("<", "", 0) or "<p>" not in text
    assert "Labour migration, cross-border networks" not in text  # no hidden preheader
    assert "https://www.example.org/news/2019-09/labour-migration-management" in text.splitlines()


def test_web_version_has_no_placeholders_or_unsubscribe(workspace: Path) -> None:
    ws, path = sample(workspace)
    web = compose(ws, path).web_html
    assert "%%" not in web
    assert "Unsubscribe" not in web
    assert "All issues" in web


def test_spanish_issue_uses_spanish_labels(workspace: Path) -> None:
    ws, path = sample(workspace)
    path.write_text(path.read_text("utf-8").replace("language: en", "language: es"), "utf-8")
    built = compose(ws, path)
    assert '<html lang="es"' in built.html
    assert "Leer más" in built.html and "Darse de baja" in built.html
    assert "septiembre de 2019" in built.html
    assert f"Hola {FIRST_NAME_TEXT}," in built.text


def test_injection_in_titles_renders_as_text(workspace: Path) -> None:
    ws, path = sample(workspace)
    text = path.read_text("utf-8").replace(
        'title: "Why choose E-learning?"',
        "title: \"<script>alert('x')</script> {{ config }} {% if 1 %}x{% endif %}\"",
    )
    path.write_text(text, "utf-8")
    built = compose(ws, path)
    assert "<script>alert" not in built.html
    assert (
        "&lt;script&gt;alert('x')&lt;/script&gt; {{ config }} {% if 1 %}x{% endif %}" in built.html
    )
    assert built.errors == []
    assert "<script>alert('x')</script> {{ config }} {% if 1 %}x{% endif %}" in built.text


def test_undefined_variable_in_template_is_an_error_naming_it(workspace: Path) -> None:
    ws, path = sample(workspace)
    footer = workspace / "templates" / "default" / "_footer.mjml.j2"
    footer.write_text(
        footer.read_text("utf-8").replace("{{ org.name }}", "{{ org.nmae }}"), "utf-8"
    )
    with pytest.raises(TemplateError) as info:
        compose(ws, path)
    assert "undefined value" in str(info.value) and "nmae" in str(info.value)


def test_template_syntax_error_names_file_and_line(workspace: Path) -> None:
    ws, path = sample(workspace)
    article = workspace / "templates" / "default" / "_article.mjml.j2"
    lines = article.read_text("utf-8").splitlines()
    lines[3] = lines[3] + " {% if %}"
    article.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(TemplateError) as info:
        compose(ws, path)
    assert info.value.problems[0].line == 4
    assert str(info.value).startswith(f"{article}:4: template syntax error")


def test_missing_theme_is_an_error(workspace: Path) -> None:
    shutil.rmtree(workspace / "templates" / "default")
    with pytest.raises(TemplateError) as info:
        Renderer(Workspace(workspace))
    assert "has no email.mjml.j2" in str(info.value)


def test_rendering_twice_is_byte_identical(workspace: Path) -> None:
    ws, path = sample(workspace)
    r = Renderer(ws)
    located = read_issue(path)
    assert r.mjml(located) == Renderer(ws).mjml(located)
    a, b = compose(ws, path, r), compose(ws, path)
    assert (a.html, a.text, a.web_html) == (b.html, b.text, b.web_html)


def test_undefined_value_in_a_partial_names_the_partial_and_line(workspace: Path) -> None:
    ws, path = sample(workspace)
    header = workspace / "templates" / "default" / "_header.mjml.j2"
    lines = header.read_text("utf-8").splitlines()
    lines[9] = lines[9] + " {{ nosuch.thing }}"
    header.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(TemplateError) as info:
        compose(ws, path)
    problem = info.value.problems[0]
    assert (problem.path, problem.line) == (header, 10)


def test_runtime_error_in_a_template_is_located(workspace: Path) -> None:
    ws, path = sample(workspace)
    article = workspace / "templates" / "default" / "_article.mjml.j2"
    text = article.read_text("utf-8").replace(
        "{{ article.title }}</a>", '{{ "%d" | format(article.title) }}</a>'
    )
    article.write_text(text, "utf-8")
    with pytest.raises(TemplateError) as info:
        compose(ws, path)
    assert info.value.problems[0].path == article
    assert "template error: TypeError" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('month_year = "{month} de {year}"', 'month_year = "{mes} de {year}"', "es.month_year"),
        ('"noviembre", "diciembre"]', '"noviembre"]', "es.months"),
    ],
)
def test_label_mistakes_name_the_key(workspace: Path, old: str, new: str, field: str) -> None:
    ws, path = sample(workspace)
    labels = workspace / "templates" / "default" / "labels.toml"
    labels.write_text(labels.read_text("utf-8").replace(old, new), "utf-8")
    path.write_text(path.read_text("utf-8").replace("language: en", "language: es"), "utf-8")
    with pytest.raises(TemplateError) as info:
        compose(ws, path)
    assert info.value.problems[0].field == field
    assert info.value.problems[0].path == labels


def test_right_to_left_languages_set_dir_and_alignment(workspace: Path) -> None:
    ws, path = sample(workspace)
    path.write_text(path.read_text("utf-8").replace("language: en", "language: ar"), "utf-8")
    html = compose(ws, path).html
    assert '<html lang="ar" dir="rtl"' in html
    assert "text-align:right" in html
