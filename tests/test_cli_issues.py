"""The issue commands as a user runs them: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import run_cli


def test_check_clean_sample_exits_0(cli: Any) -> None:
    r = cli("check", "issues/2019-09.yaml")
    assert r.code == 0, r.err
    assert "0 errors, 0 warnings: ok" in r.out


def test_check_with_problems_exits_1_and_names_line_and_field(cli: Any, workspace: Path) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text(
        path.read_text("utf-8").replace(
            "    url: https://www.example.org/news/2019-09/cross-border-network",
            "    ulr: https://x",
        ),
        "utf-8",
    )
    r = cli("check", "issues/2019-09.yaml")
    assert r.code == 1
    assert "Traceback" not in r.err
    assert "issues/2019-09.yaml:35:5: articles[2].ulr: unknown field (did you mean `url`?)" in r.err
    assert "articles[2].url: required field is missing" in r.err


def test_check_json_and_strict(cli: Any, workspace: Path) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text(
        path.read_text("utf-8").replace(
            'preheader: "Labour migration, cross-border networks, e-learning and information hubs"',
            'preheader: "short"',
        ),
        "utf-8",
    )
    r = cli("check", "issues/2019-09.yaml", "--format", "json")
    assert r.code == 0
    report = json.loads(r.out)
    assert report["ok"] is True and report["warnings"] == 1
    assert report["problems"][0]["field"] == "preheader" and report["problems"][0]["line"] == 5
    assert cli("check", "issues/2019-09.yaml", "--strict").code == 1


def test_usage_error_exits_2(cli: Any) -> None:
    r = cli("check")
    assert r.code == 2 and "Missing argument" in r.err
    assert cli("check", "issues/2019-09.yaml", "--format", "xml").code == 2


def test_build_prints_report_and_paths(cli: Any, workspace: Path) -> None:
    r = cli("build", "issues/2019-09.yaml")
    assert r.code == 0, r.err
    assert "built 2019-09: 8 articles" in r.out
    for name in ("email.html", "email.txt", "web.html", "preview.eml"):
        assert f"build/2019-09/{name}" in r.out
        assert (workspace / "build" / "2019-09" / name).stat().st_size > 0


def test_build_refuses_broken_yaml_without_traceback(cli: Any, workspace: Path) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text(path.read_text("utf-8") + "subject: again\n", "utf-8")
    r = cli("build", "issues/2019-09.yaml")
    assert r.code == 1
    assert r.err.startswith("error: ") and "Traceback" not in r.err
    assert 'the key "subject" appears twice' in r.err
    assert not (workspace / "build").exists()
    debug = cli("--debug", "build", "issues/2019-09.yaml")
    assert debug.code == 1 and "Traceback" in debug.err


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    r = run_cli("check", "x.yaml", cwd=tmp_path)
    assert r.code == 2
    assert "no newsletter.toml" in r.err and "Traceback" not in r.err


def test_bad_config_names_the_key(cli: Any, workspace: Path) -> None:
    cfg = workspace / "newsletter.toml"
    cfg.write_text(
        cfg.read_text("utf-8").replace('primary = "#0b5394"', 'primary = "blue"'), "utf-8"
    )
    r = cli("build", "issues/2019-09.yaml")
    assert r.code == 2
    assert "brand.primary must be a colour like #0b5394" in r.err and "Value error" not in r.err


def test_new_writes_a_draft_skeleton_whose_example_texts_check_refuses(
    cli: Any, workspace: Path
) -> None:
    """Issue 9 point 4: an untouched placeholder is an error, not only "a draft"."""
    r = cli("new", "--date", "2019-10")
    assert r.code == 0, r.err
    path = workspace / "issues" / "2019-10.yaml"
    untouched = cli("check", "issues/2019-10.yaml")
    assert untouched.code == 1
    example = "is still the example text from `newsletter new`"
    for field in ("subject", "preheader", "intro", "articles[1].title", "articles[1].summary"):
        assert f": {field}: {example}" in untouched.err, field
    assert (
        "error: issues/2019-10.yaml:24:5: articles[1].url: is still the example link from "
        '`newsletter new`: "https://www.example.org/news/first-story" (link to the real page)'
    ) in untouched.err
    assert "6 errors, 1 warning: problems found" in untouched.out
    text = path.read_text("utf-8")
    for old, new in [
        ("Our newsletter — October 2019", "Regional Digest — October 2019"),
        ("Write one sentence here that invites", "Migration news, new partners and events to"),
        ("A short welcome: what this issue is about.", "Welcome to the October digest."),
        ("Title of the first story", "Regional data portal goes live"),
        ("What happened, who was there, why it matters.", "The portal opened on 1 October."),
        ("https://www.example.org/news/first-story", "https://www.example.org/news/portal"),
    ]:
        text = text.replace(old, new)
    path.write_text(text, "utf-8")
    check = cli("check", "2019-10")
    assert check.code == 0, check.err + check.out
    assert "the issue is marked as a draft" in check.err  # a warning: not ready to publish
    assert cli("check", "issues/2019-10.yaml", "--strict").code == 1
    archive = cli("archive")
    assert archive.code == 0, archive.err
    assert not (workspace / "archive-site" / "2019-10").exists()
    assert (workspace / "archive-site" / "2019-09" / "index.html").exists()
    again = cli("new", "--date", "2019-10")
    assert again.code == 1 and "already exists" in again.err
    assert cli("new", "--date", "October").code == 2


def test_schema_is_json(cli: Any) -> None:
    r = cli("schema")
    assert r.code == 0
    assert json.loads(r.out)["title"] == "newsletter issue"


def test_command_table_names_every_registered_command() -> None:
    """cli.COMMANDS decides which module to import per command; it must not miss one."""
    import typer

    from newsletter.cli import COMMANDS, app, load_commands

    load_commands([])
    registered = {
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    }
    registered |= {g.name for g in app.registered_groups if g.name}
    assert registered == set(COMMANDS)
    assert typer.main.get_command(app).name == "newsletter"


def test_help_lists_every_command(cli: Any) -> None:
    r = cli("--help")
    assert r.code == 0
    for name in ("check", "build", "send", "serve", "subscribers", "suppressions", "archive"):
        assert name in r.out


def test_unsubscribe_settings_are_checked(cli: Any, workspace: Path) -> None:
    cfg = workspace / "newsletter.toml"
    text = cfg.read_text("utf-8")
    cfg.write_text(
        text.replace('unsubscribe_url = "https://', 'unsubscribe_url = "http://'), "utf-8"
    )
    r = cli("check", "issues/2019-09.yaml")
    assert r.code == 2
    assert "send.unsubscribe_url must be an https:// address" in r.err
    cfg.write_text(text.replace('unsubscribe_mailto = "', 'unsubscribe_mailto = "mailto:'), "utf-8")
    assert cli("check", "issues/2019-09.yaml").code == 0  # the mailto: prefix is dropped
    cfg.write_text(
        text.replace('unsubscribe_mailto = "', 'unsubscribe_mailto = "not an address '), "utf-8"
    )
    r = cli("check", "issues/2019-09.yaml")
    assert r.code == 2 and "send.unsubscribe_mailto" in r.err


def test_file_system_errors_are_one_line(cli: Any, workspace: Path) -> None:
    (workspace / "afile").write_text("x")
    r = cli("build", "issues/2019-09.yaml", "-o", "afile")
    assert r.code == 1 and "Traceback" not in r.err
    assert r.err.startswith("error: ") and "afile" in r.err and "Not a directory" in r.err
    r = cli("schema", "-o", "no/such/folder/schema.json")
    assert r.code == 1 and "No such file or directory" in r.err and "Traceback" not in r.err


def test_build_outputs_are_readable_by_others(cli: Any, workspace: Path) -> None:
    assert cli("build", "issues/2019-09.yaml").code == 0
    mode = (workspace / "build" / "2019-09" / "email.html").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044  # group and others may read (with the usual umask 022)


def test_check_json_reports_a_config_error_as_json(cli: Any, workspace: Path) -> None:
    cfg = workspace / "newsletter.toml"
    cfg.write_text(cfg.read_text("utf-8").replace('primary = "#0b5394"', 'primary = "blue"'))
    r = cli("check", "issues/2019-09.yaml", "--format", "json")
    assert r.code == 2
    report = json.loads(r.out)
    assert report["ok"] is False
    assert report["problems"][0]["field"] == "brand.primary"


def test_invisible_line_separator_in_subject_stops_check_build_and_send(
    cli: Any, workspace: Path
) -> None:
    """Once it passed check and crashed the build (and went as is into SendGrid's Subject)."""
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text(
        path.read_text("utf-8")
        .replace("Caribbean Digest — September", "Caribbean Digest\\u2028— September")
        .replace('preheader: "Labour migration', 'preheader: "Labour\u2028migration'),
        "utf-8",
    )
    subject = (
        "issues/2019-09.yaml:4:41: subject: contains an invisible line-separator character "
        "(U+2028) (delete `\\u2028` at column 41: it stands for that character)"
    )
    preheader = (
        "issues/2019-09.yaml:5:19: preheader: contains an invisible line-separator character "
        "(U+2028) (retype the text or delete the character at column 19; it often comes from "
        "text pasted from Word or a web page)"
    )
    check = cli("check", "issues/2019-09.yaml")
    assert check.code == 1 and "Traceback" not in check.err
    assert subject in check.err and preheader in check.err
    assert "templates" not in check.err
    build = cli("build", "issues/2019-09.yaml")
    assert build.code == 1 and "Traceback" not in build.err
    assert subject in build.err and preheader in build.err
    send = cli(
        "send",
        "issues/2019-09.yaml",
        *("--list", "sample", "--backend", "outbox", "--dry-run", "--yes"),
    )
    assert send.code == 1 and "Traceback" not in send.err
    assert subject.split(":", 1)[1] in send.err
    assert not (workspace / "build").exists() and not (workspace / "outbox").exists()
    report = json.loads(cli("check", "issues/2019-09.yaml", "--format", "json").out)
    assert [(p["field"], p["line"], p["column"]) for p in report["problems"]] == [
        ("subject", 4, 41),
        ("preheader", 5, 19),
    ]


def test_word_line_break_in_a_title_is_named_not_blamed_on_the_theme(
    cli: Any, workspace: Path
) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    text = path.read_text("utf-8")
    path.write_text(text.replace('  - title: "IOM and its', '  - title: "IOM\\vand its', 1))
    r = cli("build", "issues/2019-09.yaml")
    assert r.code == 1 and "Traceback" not in r.err and "mjml" not in r.err.lower()
    assert "issues/2019-09.yaml:15:16: articles[1].title: contains an invisible line break" in r.err


def test_protocol_relative_link_stops_the_build(cli: Any, workspace: Path) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text(
        path.read_text("utf-8").replace(
            "      benefit of all sectors.", "      benefit of [all sectors](//evil.example/x)."
        ),
        "utf-8",
    )
    r = cli("build", "issues/2019-09.yaml")
    assert r.code == 1 and "Traceback" not in r.err
    assert (
        "issues/2019-09.yaml:16:5: articles[1].summary: the link `//evil.example/x` starts with "
        "// and has no https: in front, so it is shown as plain text (write the full address: "
        "https://evil.example/x)"
    ) in r.err
    assert not (workspace / "build").exists()
