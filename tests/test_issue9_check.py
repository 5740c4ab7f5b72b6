"""Issue 9, points 1, 3, 4, 5, 6 and 14: what `newsletter check` tells a first-time user.

Each test edits the sample issue as a user would and runs the real command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ISSUE = "issues/2019-09.yaml"
TITLE = '  - title: "Why choose E-learning?"'


def edit(workspace: Path, *changes: tuple[str, str], name: str = ISSUE) -> Path:
    path = workspace / name
    text = path.read_text("utf-8")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, "utf-8")
    return path


# ---------------------------------------------------------------- 1. hashtags
def test_a_hashtag_after_an_unquoted_title_is_a_warning_at_its_line(
    cli: Any, workspace: Path
) -> None:
    edit(workspace, (TITLE, "  - title: Regional data portal goes live #data4all"))
    r = cli("check", ISSUE)
    assert r.code == 0, r.err  # a warning: the text is valid, only shorter than written
    assert r.err == (
        "warning: issues/2019-09.yaml:59:43: articles[5].title: `#data4all` is read as a "
        "comment and left out of the email (quote the text to keep `#data4all`: "
        'title: "Regional data portal goes live #data4all")\n'
    )
    assert cli("check", ISSUE, "--strict").code == 1
    edit(
        workspace,
        (
            "  - title: Regional data portal goes live #data4all",
            '  - title: "Regional data portal goes live #data4all"',
        ),
    )
    assert cli("check", ISSUE, "--strict").code == 0
    assert cli("build", ISSUE).code == 0
    assert "Regional data portal goes live #data4all" in (
        workspace / "build" / "2019-09" / "email.html"
    ).read_text("utf-8")


def test_hashtags_in_every_text_field_but_not_comments_after_links_and_dates(
    cli: Any, workspace: Path
) -> None:
    edit(
        workspace,
        ('subject: "Mesoamerica & Caribbean Digest — September 2019"', "subject: Digest #42"),
        ("date: 2019-09-30", "date: 2019-09-30          # publication date"),
        ("    category: Labour mobility\n", "    category: #migration\n"),
        (
            "    url: https://www.example.org/news/2019-09/labour-migration-management",
            "    url: https://www.example.org/news/2019-09/labour-migration-management  # story",
        ),
        ("    location: Guatemala City\n", "    location: Guatemala\n      City #GT\n"),
        ("closing: |", "closing: |  # Markdown"),
    )
    report = json.loads(cli("check", ISSUE, "--format", "json").out)
    found = [(p["field"], p["line"], p["severity"]) for p in report["problems"]]
    assert found == [
        ("subject", 4, "warning"),
        ("articles[1].category", 29, "warning"),
        ("articles[3].location", 47, "warning"),
    ]
    assert report["problems"][1]["message"] == (
        "`#migration` is read as a comment and left out of the email, so `category` is empty"
    )
    assert report["problems"][2]["hint"] == (
        'quote the text to keep `#GT`: location: "Guatemala City #GT"'
    )


def test_the_skeleton_quotes_its_text_fields_so_a_hashtag_stays(cli: Any, workspace: Path) -> None:
    assert cli("new", "--date", "2019-10").code == 0
    path = workspace / "issues" / "2019-10.yaml"
    text = path.read_text("utf-8")
    for key in ("subject", "preheader", "title", "alt", "category", "location", "button"):
        lines = [ln.lstrip("#- ") for ln in text.splitlines()]
        values = [ln for ln in lines if ln.startswith(f"{key}: ")]
        assert values and all(ln.startswith(f'{key}: "') for ln in values), key
    # Uncommenting the optional fields and adding a hashtag inside the quotes keeps it.
    text = text.replace("Title of the first story", "Regional portal #data4all")
    text = "\n".join(
        ln.replace("# ", "", 1) if ln.lstrip().startswith(("# category:", "# button:")) else ln
        for ln in text.splitlines()
    )
    path.write_text(text + "\n", "utf-8")
    r = cli("check", "issues/2019-10.yaml", "--format", "json")
    codes = {p["code"] for p in json.loads(r.out)["problems"]}
    assert "comment_in_text" not in codes and "example_text" in codes


# ---------------------------------------------------------------- 3. errors do not hide warnings
def test_errors_and_warnings_are_reported_in_one_run_each_with_its_level(
    cli: Any, workspace: Path
) -> None:
    edit(
        workspace,
        (
            'subject: "Mesoamerica & Caribbean Digest — September 2019"',
            'subject: "Mesoamerica & Caribbean Digest — September 2019 — labour migration, '
            'networks and e-learning"\ndraft: true',
        ),
        ("number: 42", "number: many"),
        ("language: en", "language: en\ngreting: true"),
        ("    url: https://www.example.org/news/2019-09/cross-border-network", "    url: x"),
        (
            "    url: https://www.example.org/news/2019-09/migrants-in-crisis-protocols",
            "    url: http://www.example.org/news/2019-09/migrants-in-crisis-protocols",
        ),
        (
            "    summary: |\n      Technological",
            "    summary: |\n      See ![](x.png). Technological",
        ),
    )
    r = cli("check", ISSUE)
    assert r.code == 1
    assert r.out == "issues/2019-09.yaml: 4 errors, 3 warnings: problems found\n"
    lines = r.err.splitlines()
    assert len(lines) == 7 and all(ln.startswith(("error: ", "warning: ")) for ln in lines)
    assert sorted(lines[:3]) == [
        "error: issues/2019-09.yaml:10:1: greting: unknown field (did you mean `greeting`?)",
        "error: issues/2019-09.yaml:37:5: articles[2].url: is not a web address (it must start "
        "with https://) (write the full address, e.g. https://www.example.org/page)",
        "error: issues/2019-09.yaml:8:1: number: must be a whole number",
    ]
    shown = "\n".join(lines[3:])
    assert "warning: issues/2019-09.yaml:5:1: draft: the issue is marked as a draft" in shown
    assert "warning: issues/2019-09.yaml:4:1: subject: is 91 characters" in shown
    assert "warning: issues/2019-09.yaml:46:5: articles[3].url: link is not https" in shown
    assert "error: issues/2019-09.yaml:62:5: articles[5].summary: pictures inside Markdown" in shown
    report = json.loads(cli("check", ISSUE, "--format", "json").out)
    assert (report["errors"], report["warnings"], report["ok"]) == (4, 3, False)
    build = cli("build", "2019-09")  # the same list, each line with its level
    assert build.code == 1 and not (workspace / "build").exists()
    assert build.err.splitlines() == [
        *lines,
        "issues/2019-09.yaml: 4 errors, 3 warnings: nothing was written (fix them and run "
        "`newsletter check` again)",
    ]


# ---------------------------------------------------------------- 4. placeholders
def test_the_skeletons_example_picture_is_an_error_once_uncommented(
    cli: Any, workspace: Path
) -> None:
    assert cli("new", "--date", "2019-10").code == 0
    path = workspace / "issues" / "2019-10.yaml"
    text = path.read_text("utf-8").replace("    # image:", "    image:")
    text = text.replace("    #   src:", "      src:").replace("    #   alt:", "      alt:")
    path.write_text(text, "utf-8")
    report = json.loads(cli("check", "2019-10", "--format", "json").out)
    examples = [p["field"] for p in report["problems"] if p["code"] == "example_text"]
    assert examples == [
        "subject",
        "preheader",
        "intro",
        "articles[1].title",
        "articles[1].summary",
        "articles[1].url",
        "articles[1].image.src",
        "articles[1].image.alt",
    ]
    assert all(p["severity"] == "error" for p in report["problems"] if p["code"] == "example_text")


# ---------------------------------------------------------------- 5. languages
def test_french_and_portuguese_issues_use_their_own_words(cli: Any, workspace: Path) -> None:
    for language, words in [
        ("fr", ("Bonjour", "Lire la suite", "septembre 2019", "Se désabonner")),
        ("pt", ("Olá", "Leia mais", "setembro de 2019", "Cancelar inscrição")),
    ]:
        edit(
            workspace,
            ("language: en" if language == "fr" else "language: fr", f"language: {language}"),
        )
        r = cli("build", ISSUE)
        assert r.code == 0, r.err
        html = (workspace / "build" / "2019-09" / "email.html").read_text("utf-8")
        assert f'lang="{language}"' in html
        for word in words:
            assert word in html, (language, word)
        assert "Read more" not in html and "Hello" not in html


def test_a_language_without_labels_is_an_error_naming_the_labels_file(
    cli: Any, workspace: Path
) -> None:
    edit(workspace, ("language: en", "language: de"))
    r = cli("check", ISSUE)
    assert r.code == 1
    assert r.err == (
        "error: issues/2019-09.yaml:8:1: language: there are no words for language `de` in "
        'templates/default/labels.toml, so the email would say "Hello" and "Read more" in '
        "English (use a language the theme has (en, es, fr, pt), or add a [de] table to "
        "templates/default/labels.toml: copy the [en] table and translate each text)\n"
    )
    assert cli("build", ISSUE).code == 1
    assert not (workspace / "build").exists()
    # A regional variant uses its language's words; the workspace's default is checked too.
    edit(workspace, ("language: de", "language: pt-BR"))
    assert cli("check", ISSUE).code == 0
    edit(workspace, ("language: pt-BR\n", ""))
    edit(workspace, ('language = "en"', 'language = "de"'), name="newsletter.toml")
    r = cli("check", ISSUE)
    assert (
        r.code == 1 and "newsletter.toml: language: there are no words for language `de`" in r.err
    )


# ---------------------------------------------------------------- 6. dates
def test_a_date_outside_the_files_month_is_a_warning(cli: Any, workspace: Path) -> None:
    edit(workspace, ("date: 2019-09-30", "date: 2019-11-28"))
    r = cli("check", ISSUE)
    assert r.code == 0
    assert r.err == (
        "warning: issues/2019-09.yaml:6:1: date: is 2019-11-28, but the file 2019-09.yaml is "
        "the issue of September 2019 (correct the date, or rename the file to 2019-11.yaml "
        "(the file name is the issue's id in the archive and in sends))\n"
    )
    edit(workspace, ("date: 2019-11-28", "date: 2019-09-32"))
    r = cli("check", ISSUE)
    assert r.code == 1
    assert "issues/2019-09.yaml:6:1: date: is not a real date (September has 30 days)" in r.err


# ---------------------------------------------------------------- 14. an issue id
def test_check_and_build_take_an_issue_id_like_status_and_report(cli: Any, workspace: Path) -> None:
    by_path, by_id = cli("check", ISSUE), cli("check", "2019-09")
    assert (by_id.code, by_id.out, by_id.err) == (by_path.code, by_path.out, by_path.err)
    edit(workspace, ("number: 42", "number: many"))
    r = cli("check", "2019-09")
    assert r.code == 1 and "error: issues/2019-09.yaml:7:1: number: must be a whole number" in r.err
    assert cli("check", "2019-09", "--format", "json").out.count('"file": "issues/2019-09.yaml"')
    edit(workspace, ("number: many", "number: 42"))
    r = cli("build", "2019-09")
    assert r.code == 0 and "built 2019-09: 8 articles" in r.out
    missing = cli("check", "2019-99")
    assert missing.code == 1 and "issues/2019-99.yaml: file not found" in missing.err
