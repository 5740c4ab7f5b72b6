"""A two-language issue and a list whose `language` column is typed every which way.

Used by tests/test_languages_*.py: the sample issue (issues/2019-09.yaml, English) gets a
Spanish translation (issues/2019-09.es.yaml) that leaves out what is shared (dates, links,
pictures), and subscribers/members.csv has readers whose column says en, es, ES-mx,
es_419, fr, pt-BR or nothing.
"""

from __future__ import annotations

from pathlib import Path

ES_SUBJECT = "Boletín Mesoamérica y el Caribe — septiembre de 2019"
EN_SUBJECT = "Mesoamerica & Caribbean Digest — September 2019"
ES_TITLES = [
    "La OIM y sus socios apoyan la gestión de la migración laboral",
    "Quinto intercambio de la red transfronteriza entre Guatemala y Honduras",
    "Centroamérica refuerza los protocolos de asistencia a migrantes en crisis",
    "La OIM y la OIT organizan un taller sobre contratación equitativa",
    "Nuevo curso en línea sobre migración y desarrollo",
    "Centros de información para personas migrantes",
    "Día Internacional de la Paz en la región",
    "Datos sobre migración: nuevo portal regional",
]

# (address, language column) -> the version they must get
MEMBERS: list[tuple[str, str, str]] = [
    ("ana@example.org", "es", "es"),
    ("ben@example.org", "en", "en"),
    ("carla@example.org", "ES-mx", "es"),
    ("dora@example.org", "es_419", "es"),
    ("eric@example.org", "fr", "en"),
    ("fabio@example.org", "pt-BR", "en"),
    ("gina@example.org", "", "en"),
    ("hugo@example.org", "EN", "en"),
]


def spanish(
    ws: Path, *, drop: int | None = None, todo_title: int | None = None, language: str = "es"
) -> str:
    """The Spanish translation's YAML: every text of the base translated, the shared fields
    (dates, links, picture files) left out.  ``drop``: leave out that article (0-based);
    ``todo_title``: keep that article's title in English, marked for translation."""
    from newsletter.issue import load_issue

    base, _ = load_issue(ws / "issues" / "2019-09.yaml")
    assert base is not None
    lines = [
        f"language: {language}",
        f'subject: "{ES_SUBJECT}"',
        'preheader: "Migración laboral, redes transfronterizas, aprendizaje en línea y más"',
        "intro: |",
        "  Este mes el boletín sigue el trabajo de la OIM y sus socios en la región.",
        "articles:",
    ]
    for i, art in enumerate(base.values["articles"]):
        if i == drop:
            continue
        if i == todo_title:
            lines.append(f'  - title: "{art["title"]}"   # todo: translate')
        else:
            lines.append(f'  - title: "{ES_TITLES[i]}"')
        lines += ["    summary: |", f"      Resumen en español del artículo {i + 1}."]
        if art.get("category"):
            lines.append(f'    category: "Categoría {i + 1}"')
        if art.get("location"):
            lines.append(f'    location: "Lugar {i + 1}"')
        if art.get("image"):
            lines += ["    image:", f'      alt: "Foto del artículo {i + 1}"']
    lines += ["closing: |", "  Gracias por leernos."]
    return "\n".join(lines) + "\n"


def translate_sample(ws: Path, text: str | None = None, language: str = "es") -> Path:
    """Write issues/2019-09.<language>.yaml (by default the complete Spanish translation)."""
    path = ws / "issues" / f"2019-09.{language}.yaml"
    path.write_text(text if text is not None else spanish(ws, language=language), "utf-8")
    return path


def write_members(ws: Path, name: str = "members") -> list[tuple[str, str, str]]:
    rows = ["email,name,language"]
    rows += [f"{email},{email.split('@')[0].title()},{lang}" for email, lang, _ in MEMBERS]
    (ws / "subscribers" / f"{name}.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return MEMBERS
