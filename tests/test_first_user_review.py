"""What a first-time user tripped on in a review run after issue 9: each a real command."""

from __future__ import annotations

from pathlib import Path

from conftest import Cli


def test_french_and_spanish_column_names_are_understood(cli: Cli, workspace: Path) -> None:
    export = workspace / "export.csv"
    export.write_text("Courriel;Prénom;Nom;Langue\nmarie@example.org;Marie;Dupont;fr\n", "utf-8")
    r = cli("subscribers", "import", "export.csv", "--list", "membres", "--create")
    assert r.code == 0, r.err
    r = cli("send", "2019-09", "--list", "membres", "--backend", "outbox", "--dry-run", "--yes")
    assert r.code == 0, r.err
    [eml] = (workspace / "outbox" / "2019-09" / "dry-run").rglob("*.eml")
    assert "Marie" in eml.read_text("utf-8")  # greeted by her first name, not "reader"
    (workspace / "subscribers" / "lista.csv").write_text(
        "Correo electrónico,Nombre,Idioma\nana@example.org,Ana López,es\n", "utf-8"
    )
    r = cli("subscribers", "check", "lista")
    assert r.code == 0, r.out + r.err


def test_a_workbook_is_named_as_such(cli: Cli, workspace: Path) -> None:
    (workspace / "export.xlsx").write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    r = cli("subscribers", "import", "export.xlsx", "--list", "sample")
    assert r.code != 0 and "Traceback" not in r.err
    assert "spreadsheet workbook" in r.err and "CSV UTF-8" in r.err


def test_send_and_preview_take_the_issue_id(cli: Cli) -> None:
    r = cli("send", "2019-09", "--list", "sample", "--backend", "outbox", "--dry-run", "--yes")
    assert r.code == 0, r.err
    r = cli("preview", "2019-99", "--port", "0")
    assert r.code != 0 and "2019-99" in r.err and "Traceback" not in r.err


def test_an_unquoted_colour_says_to_quote_it(cli: Cli, workspace: Path) -> None:
    toml = workspace / "newsletter.toml"
    text = toml.read_text("utf-8")
    assert 'primary = "#0b5394"' in text
    toml.write_text(text.replace('primary = "#0b5394"', "primary = #0b5394"), "utf-8")
    r = cli("check", "2019-09")
    assert r.code == 2
    assert 'put the text in double quotes: primary = "#0b5394"' in r.err


def test_low_contrast_buttons_say_which_colour_to_change(cli: Cli, workspace: Path) -> None:
    toml = workspace / "newsletter.toml"
    text = toml.read_text("utf-8")
    toml.write_text(text.replace('primary = "#0b5394"', 'primary = "#ffff00"'), "utf-8")
    r = cli("check", "2019-09")
    assert "choose a darker brand.primary" in r.out + r.err
    assert "lighter background" not in r.out + r.err
