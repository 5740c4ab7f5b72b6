"""`check`, `build`, `new --languages` and `translate` on an issue with translations (issue 12).

Every message about a translation names the translation's file and the line to fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli
from languages_fixture import ES_SUBJECT, spanish, translate_sample

ISSUE = "issues/2019-09.yaml"
ES = "issues/2019-09.es.yaml"


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text("utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_a_complete_translation_is_clean_and_checked_with_its_issue(
    workspace: Path, cli: Cli
) -> None:
    translate_sample(workspace)
    r = cli("check", ISSUE, "--strict")
    assert r.code == 0, r.err
    assert "issues/2019-09.yaml and 1 translation: 0 errors, 0 warnings: ok" in r.out


def test_missing_article_untranslated_text_and_unknown_language(workspace: Path, cli: Cli) -> None:
    es = translate_sample(workspace, spanish(workspace, drop=7, todo_title=3))
    text = es.read_text("utf-8").replace(
        'preheader: "Migración',
        'preheader: "Labour migration, cross-border networks, e-learning and information hubs"\n# "',
    )
    es.write_text(text, "utf-8")
    de = translate_sample(workspace, spanish(workspace, language="de"), language="de")
    r = cli("check", ISSUE)  # the base file: it and every translation, in one run
    assert r.code == 1
    err = r.err
    # The last article of the base has no Spanish version: an error at `articles:`.
    assert (
        f"error: {ES}:{line_of(es, 'articles:')}:1: articles: the article “Mexico and Guatemala "
        "exchange best practices regarding labor migration” (articles[8] in 2019-09.yaml) is "
        "missing from this translation" in err
    )
    # Still marked for translation: a warning at the marked line (the title's column of `#`).
    todo = line_of(es, "# todo")
    assert f"warning: {ES}:{todo}:" in err and "articles[4].title: is still marked" in err
    # A text left as in the base: a warning at its line.
    assert (
        f"warning: {ES}:{line_of(es, 'preheader:')}:1: preheader: is the same as in 2019-09.yaml"
        in err
    )
    # A language the theme has no words for: an error naming labels.toml, at `language:`.
    assert (
        "error: issues/2019-09.de.yaml:1:1: language: there are no words for language `de` "
        "in templates/default/labels.toml" in err
    )
    assert de.exists()
    # Warnings alone fail only with --strict; --format json has them with their lines.
    (workspace / "issues" / "2019-09.de.yaml").unlink()
    translate_sample(workspace, spanish(workspace, todo_title=3))
    todo = line_of(es, "# todo")
    assert cli("check", ISSUE).code == 0
    strict = cli("check", ISSUE, "--strict", "--format", "json")
    assert strict.code == 1
    report = json.loads(strict.out)
    [marked] = [p for p in report["problems"] if p["code"] == "translation_todo"]
    assert (marked["file"], marked["line"], marked["field"]) == (ES, todo, "articles[4].title")


def test_extra_article_by_id_and_link_differing_from_base(workspace: Path, cli: Cli) -> None:
    base = workspace / ISSUE
    base.write_text(
        base.read_text("utf-8").replace(
            '  - title: "IOM and its partners', '  - id: labour\n    title: "IOM and its partners'
        ),
        "utf-8",
    )
    es = translate_sample(workspace)
    text = es.read_text("utf-8").replace(
        '  - title: "La OIM y sus socios',
        "  - id: labour\n    url: https://www.example.org/es/noticias/migracion-laboral\n"
        '    title: "La OIM y sus socios',
    )
    text += '  - id: nothing\n    title: "Sobra"\n    summary: "Sobra."\n    url: https://www.example.org/x\n'
    text = text.replace("closing: |\n  Gracias por leernos.\n", "") + "closing: Gracias.\n"
    es.write_text(text, "utf-8")
    r = cli("check", ES)  # a translation's own file works too
    assert (
        f"error: {ES}:{line_of(es, 'id: nothing')}:5: articles[9]: matches no article of "
        "2019-09.yaml (no article of 2019-09.yaml has `id: nothing`)" in r.err
    )
    assert (
        f"info: {ES}:{line_of(es, 'url: https://www.example.org/es/')}:5: articles[1].url: "
        "differs from 2019-09.yaml" in r.err
    )


def test_build_writes_one_set_per_language(workspace: Path, cli: Cli) -> None:
    translate_sample(workspace)
    r = cli("build", ISSUE)
    assert r.code == 0, r.err
    en = workspace / "build" / "2019-09"
    es = en / "es"
    for name in ("email.html", "email.txt", "web.html", "preview.eml"):
        assert (en / name).is_file() and (es / name).is_file()
    html = (es / "email.html").read_text("utf-8")
    assert '<html lang="es"' in html and ES_SUBJECT in html
    # "View in browser" opens the reader's language.
    assert 'href="https://news.example.org/archive/2019-09/es/"' in html
    assert 'href="https://news.example.org/archive/2019-09/"' in (en / "email.html").read_text(
        "utf-8"
    )
    # The shared fields came from the base: the same links and dates.
    assert "https://www.example.org/news/2019-09/labour-migration-management" in html


def test_single_language_issue_keeps_its_layout(workspace: Path, cli: Cli) -> None:
    assert cli("build", ISSUE).code == 0
    folder = workspace / "build" / "2019-09"
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "email.html",
        "email.txt",
        "preview.eml",
        "web.html",
    ]
    assert not any(p.is_dir() and p.name != "images" for p in folder.iterdir())


def test_new_with_languages_and_translate(workspace: Path, cli: Cli) -> None:
    r = cli("new", "--date", "2019-10", "--languages", "en,es")
    assert r.code == 0, r.err
    base = workspace / "issues" / "2019-10.yaml"
    es = workspace / "issues" / "2019-10.es.yaml"
    assert "\nlanguage: en\n" in base.read_text("utf-8")
    text = es.read_text("utf-8")
    assert (
        "language: es" in text and 'title: "Title of the first story"   # todo: translate' in text
    )
    assert "url:" not in text and "date:" not in text  # shared: taken from the base
    fr = cli("translate", "issues/2019-09.yaml", "--to", "fr")
    assert fr.code == 0, fr.err
    marked = (workspace / "issues" / "2019-09.fr.yaml").read_text("utf-8")
    assert marked.count("# todo: translate") >= 10
    check = cli("check", ISSUE)
    assert check.code == 0  # all warnings: still marked
    assert "issues/2019-09.fr.yaml" in check.err and "is still marked for translation" in check.err
    again = cli("translate", "issues/2019-09.yaml", "--to", "fr")
    assert again.code == 1 and "already exists" in again.err


def test_translations_are_not_issues_of_their_own(workspace: Path) -> None:
    from newsletter.issue import iter_issue_files

    translate_sample(workspace)
    (workspace / "issues" / "2019-09.conflict-20191001-1200.yaml").write_text("x", "utf-8")
    assert [p.name for p in iter_issue_files(workspace / "issues")] == ["2019-09.yaml"]
