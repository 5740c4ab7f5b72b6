"""Values in list rows that are legal CSV but break a send or a spreadsheet (issue 7):
names with line breaks, names too long for SendGrid, and formula cells.

The end-to-end tests send (dry run, outbox backend) and read what was written: the
batch JSON that would be posted and the .eml of each recipient.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from conftest import Result
from newsletter.addresses import normalise_recipient
from newsletter.rows import PERSONAL_VALUES_BYTES, RowProblem, Subscriber, personal_values_problem
from newsletter.subscribers import iter_list

Cli = Callable[..., Result]
SEND = ("send", "issues/2019-09.yaml", "--backend", "outbox", "--dry-run", "--yes")


def write_list(workspace: Path, name: str, text: str) -> Path:
    path = workspace / "subscribers" / f"{name}.csv"
    path.write_text(text, encoding="utf-8", newline="")
    return path


def read(path: Path, warnings: bool = False) -> tuple[list[Subscriber], list[RowProblem]]:
    subs: list[Subscriber] = []
    problems: list[RowProblem] = []
    for item in iter_list(path, path.stem, warnings=warnings):
        if isinstance(item, Subscriber):
            subs.append(item)
        else:
            problems.append(item)
    return subs, problems


def outbox(workspace: Path) -> tuple[list[dict[str, Any]], list[EmailMessage]]:
    """The personalizations of every batch file and every .eml, in order."""
    folder = workspace / "outbox" / "2019-09" / "dry-run"  # a dry run's own folder (issue 9)
    personalizations: list[dict[str, Any]] = []
    for batch in sorted(folder.glob("batch-*.json")):
        personalizations += json.loads(batch.read_bytes())["personalizations"]
    emls = [
        message_from_bytes(p.read_bytes(), EmailMessage, policy=policy.default)
        for p in sorted(folder.glob("batch-*/*.eml"))
    ]
    return personalizations, emls


def greeting(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    text = str(part.get_content())
    return next(line for line in text.splitlines() if line.startswith("Hello"))


# --------------------------------------------------------------------------- line breaks


@pytest.mark.parametrize(
    "written",
    [
        "Ana\nMaría",
        "Ana\r\nMaría",
        "Ana\rMaría",
        "Ana\u2028María",
        "Ana\u2029María",
        "Ana\x85María",
        "Ana\tMaría",
        "Ana\x07María",
        "Ana \n \x0b\u00a0 María",
        "Ana  María",
    ],
)
def test_names_are_cleaned_where_rows_are_built(tmp_path: Path, written: str) -> None:
    path = tmp_path / "list.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(
            [["email", "name", "first_name"], ["ana@example.org", written, written]]
        )
    [ana], problems = read(path)
    assert problems == []
    assert (ana.name, ana.first_name) == ("Ana María", "Ana María")


def test_a_name_with_only_a_line_break_in_the_name_column_gives_the_first_word(
    tmp_path: Path,
) -> None:
    path = tmp_path / "list.csv"
    path.write_text('email,name\nana@example.org,"Ana\nMaría"\n', encoding="utf-8")
    [ana], _ = read(path)
    assert (ana.name, ana.first_name) == ("Ana María", "Ana")


def test_name_with_line_break_is_a_check_warning_and_sends_cleanly(
    cli: Cli, workspace: Path
) -> None:
    write_list(
        workspace,
        "alt",
        "email,name,first_name\n"
        'ana@example.org,"Ana\nMaría López","Ana\nMaría"\n'
        'ben@example.org,"Ben\u2028Carter",Ben\n'
        "chloe@example.org,Chloé Martin,Chloé\n",
    )
    r = cli("subscribers", "check", "alt")
    assert r.code == 0, r.out
    assert (
        "subscribers/alt.csv:2: warning: ana@example.org: the name contains a line break; "
        "it will be sent as 'Ana María López'"
    ) in r.out
    assert (
        "subscribers/alt.csv:2: warning: ana@example.org: the first name contains a line "
        "break; it will be sent as 'Ana María'"
    ) in r.out
    assert "subscribers/alt.csv:5: warning: ben@example.org: the name contains a line break" in (
        r.out
    )
    assert r.out.splitlines()[-1] == (
        "all lists OK; 3 warnings: those rows are used as the warnings say"
    )
    data = json.loads(cli("subscribers", "check", "alt", "--format", "json").out)
    assert data["ok"] is True and data["problems"] == []
    assert [(w["line"], w["column"]) for w in data["warnings"]] == [
        (2, "name"),
        (2, "first_name"),
        (5, "name"),
    ]
    assert data["lists"][0]["warnings"] == 3

    r = cli(*SEND, "--list", "alt")
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    personalizations, emls = outbox(workspace)
    assert [p["to"] for p in personalizations] == [
        [{"email": "ana@example.org", "name": "Ana María López"}],
        [{"email": "ben@example.org", "name": "Ben Carter"}],
        [{"email": "chloe@example.org", "name": "Chloé Martin"}],
    ]
    assert personalizations[0]["substitutions"]["%%first_name%%"] == "Ana María"
    assert [m["To"].addresses[0].display_name for m in emls] == [
        "Ana María López",
        "Ben Carter",
        "Chloé Martin",
    ]
    assert greeting(emls[0]) == "Hello Ana María,"


# --------------------------------------------------------------------------- long names


def test_personal_values_rule() -> None:
    assert personal_values_problem("Ana López", "Ana") is None
    # a one-word name is also the first name: counted three times (name, text, HTML)
    assert personal_values_problem("A" * 2_600, "A" * 2_600) is None  # 7,800 bytes
    reason = personal_values_problem("A" * 12_345, "A" * 12_345)
    assert reason == (
        "the name is 12,345 characters long; SendGrid refuses a recipient whose personal "
        "values exceed 10,000 bytes (shorten it to the person's name)"
    )
    # one Chinese character is 3 bytes, counted three times: 900 of them are too many
    assert personal_values_problem("名" * 900, "名" * 900) is not None
    assert personal_values_problem("名" * 850, "Ana") is None
    assert personal_values_problem("Ana", '"' * 1_200) is not None  # &quot; is 6 bytes
    assert personal_values_problem("x " * 4_100, "Ana") is not None


def test_name_over_sendgrids_limit_is_invalid_in_check_send_and_import(
    cli: Cli, workspace: Path
) -> None:
    long = "Ana" + "a" * 12_342
    write_list(
        workspace,
        "long",
        f"email,name\nana@example.org,{long}\nben@example.org,Ben Carter\nana@example.org,Ana\n",
    )
    reason = (
        "the name is 12,345 characters long; SendGrid refuses a recipient whose personal "
        "values exceed 10,000 bytes (shorten it to the person's name)"
    )
    r = cli("subscribers", "check", "long")
    assert r.code == 1
    assert f"subscribers/long.csv:2: invalid: ana@example.org: {reason}" in r.out
    # the too-long row is not used, so the later row for the same address is
    assert [ln.split() for ln in r.out.splitlines() if ln.startswith("long ")] == [
        ["long", "3", "2", "1", "0", "0"]
    ]

    r = cli(*SEND, "--list", "long")
    assert r.code == 0, r.err
    assert f"long.csv:2: invalid: ana@example.org: {reason}" in r.err
    personalizations, _ = outbox(workspace)
    assert [p["to"] for p in personalizations] == [
        [{"email": "ben@example.org", "name": "Ben Carter"}],
        [{"email": "ana@example.org", "name": "Ana"}],
    ]

    (workspace / "crm.csv").write_text(
        f"email,name\nzoe@example.org,{long}\nyan@example.org,Yan\n", encoding="utf-8"
    )
    r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert r.code == 0, r.err
    assert f"skipped crm.csv:2: invalid: zoe@example.org: {reason}" in r.out
    assert "zoe@" not in (workspace / "subscribers" / "sample.csv").read_text(encoding="utf-8")


def test_the_longest_allowed_name_fits_in_a_sendgrid_personalization(
    cli: Cli, workspace: Path
) -> None:
    name = "Ä" * (PERSONAL_VALUES_BYTES // 6)  # one word, 2 bytes a character, counted thrice
    local = "a" * 64
    address = f"{local}@{'d' * 50}.{'e' * 50}.{'f' * 50}.example"  # 225 characters
    write_list(workspace, "max", f"email,name\n{address},{name}\n")
    r = cli("subscribers", "check", "max")
    assert r.code == 0, r.out
    r = cli(*SEND, "--list", "max")
    assert r.code == 0, r.err
    [personalization], _ = outbox(workspace)
    # what SendGrid counts against its 10,000 bytes (substitutions, custom args, headers),
    # and the display name, which the rule counts too
    size = len(name.encode()) + sum(
        len(str(k).encode()) + len(str(v).encode())
        for key in ("substitutions", "custom_args", "headers")
        for k, v in personalization[key].items()
    )
    assert 8_000 < size <= 10_000


# --------------------------------------------------------------------------- formula cells


FORMULAS = (
    "email,name,first_name,tags,company,phone,balance\n"
    'ana@example.org,"=HYPERLINK(""http://evil.example/"",""Ana"")",Ana,press,ACME,'
    "+33 1 23 45 67 89,-5\n"
    "ben@example.org,Ben,+Ben,@press;donors,-2+3+cmd|' /C calc'!A0,,\n"
    "chloe@example.org,Chloé,Chloé,,=1+1,-,+\n"
)


def test_formula_cells_are_check_warnings(cli: Cli, workspace: Path) -> None:
    write_list(workspace, "formulas", FORMULAS)
    r = cli("subscribers", "check", "formulas")
    assert r.code == 0, r.out
    warnings = [ln for ln in r.out.splitlines() if ": warning: " in ln]
    assert warnings == [
        "subscribers/formulas.csv:2: warning: ana@example.org: column 'name' starts with '=', "
        "which a spreadsheet runs as a formula",
        "subscribers/formulas.csv:3: warning: ben@example.org: column 'first_name' starts with "
        "'+', which a spreadsheet runs as a formula",
        "subscribers/formulas.csv:3: warning: ben@example.org: column 'tags' starts with '@', "
        "which a spreadsheet runs as a formula",
        "subscribers/formulas.csv:3: warning: ben@example.org: column 'company' starts with "
        "'-', which a spreadsheet runs as a formula",
        "subscribers/formulas.csv:4: warning: chloe@example.org: column 'company' starts with "
        "'=', which a spreadsheet runs as a formula",
    ]  # phone numbers and plain numbers (+33 1 23..., -5, -, +) are not flagged


@pytest.mark.parametrize("address", ["=cmd@example.org", "+x@example.org", "-x@example.org"])
def test_an_address_starting_like_a_formula_is_invalid(address: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"starts with '{address[0]}', which a")):
        normalise_recipient(address)


def test_formula_address_is_an_invalid_row(cli: Cli, workspace: Path) -> None:
    write_list(workspace, "bad", "email\n=1+1@example.org\n@x@example.org\nok@example.org\n")
    r = cli("subscribers", "check", "bad")
    assert r.code == 1
    assert (
        "subscribers/bad.csv:2: invalid: =1+1@example.org: the address starts with '=', which "
        "a spreadsheet runs as a formula; lists refuse such addresses"
    ) in r.out
    assert "subscribers/bad.csv:3: invalid: @x@example.org" in r.out


def test_import_writes_formulas_neutralised_and_says_so(cli: Cli, workspace: Path) -> None:
    target = write_list(workspace, "members", "email,name,first_name,tags,company,phone,balance\n")
    (workspace / "crm.csv").write_text(FORMULAS, encoding="utf-8")
    r = cli("subscribers", "import", "crm.csv", "--list", "members")
    assert r.code == 0, r.err
    assert (
        "crm.csv:2: warning: ana@example.org: column 'name' starts with '=', which a "
        "spreadsheet runs as a formula; written as "
        '\'\'=HYPERLINK("http://evil.example/","Ana")\' so it stays text'
    ) in r.out
    assert (
        "5 values that a spreadsheet would run as a formula were written with a leading ' "
        "so they stay text (newsletter reads them without it)"
    ) in r.out
    with target.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["name"], r["first_name"], r["tags"], r["company"]) for r in rows] == [
        ('\'=HYPERLINK("http://evil.example/","Ana")', "Ana", "press", "ACME"),
        ("Ben", "'+Ben", "'@press;donors", "'-2+3+cmd|' /C calc'!A0"),
        ("Chloé", "Chloé", "", "'=1+1"),
    ]
    assert (rows[0]["phone"], rows[0]["balance"], rows[2]["phone"]) == (
        "+33 1 23 45 67 89",
        "-5",
        "-",
    )
    # the list now reads back as the people's real values, and checks clean
    subs, problems = read(target, warnings=True)
    assert problems == []
    assert [(s.name, s.first_name, sorted(s.tags)) for s in subs] == [
        ('=HYPERLINK("http://evil.example/","Ana")', "Ana", ["press"]),
        ("Ben", "+Ben", ["@press", "donors"]),
        ("Chloé", "Chloé", []),
    ]
    assert cli("subscribers", "check", "members").out.splitlines()[-1] == "all lists OK"
    data = json.loads(
        cli("subscribers", "import", "crm.csv", "--list", "new", "--create", "--format", "json").out
    )
    assert data["neutralised"] == 5 and len(data["warnings"]) == 5


def test_import_dry_run_warns_without_claiming_a_write(cli: Cli, workspace: Path) -> None:
    (workspace / "crm.csv").write_text("email,name\nnew@example.org,=2+2\n", encoding="utf-8")
    r = cli("subscribers", "import", "crm.csv", "--list", "sample", "--dry-run")
    assert r.code == 0, r.err
    assert (
        "crm.csv:2: warning: new@example.org: column 'name' starts with '=', which a "
        "spreadsheet runs as a formula"
    ) in r.out
    assert "written" not in r.out.replace("nothing written", "")
