"""`newsletter subscribers check|import` and `suppressions add|list`, run as a user would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Result

Cli = Callable[..., Result]


def test_check_all_lists_ok(cli: Cli) -> None:
    r = cli("subscribers", "check")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["list", "rows", "valid", "invalid", "duplicates", "suppressed"]
    assert lines[2].split() == ["sample", "5", "5", "0", "0", "1"]
    assert lines[-1] == "all lists OK"
    assert "Traceback" not in r.err


def test_check_reports_rows_with_lines_and_exits_1(cli: Cli, workspace: Path) -> None:
    (workspace / "subscribers" / "members.csv").write_text(
        "email;name\r\nana@example.org;Ana\r\nana@EXAMPLE.org;Again\r\nbroken@;X\r\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "check")
    assert r.code == 1
    assert [ln.split() for ln in r.out.splitlines() if ln.startswith("members")] == [
        ["members", "3", "1", "1", "1", "0"]
    ]
    assert "subscribers/members.csv:3: duplicate: ana@EXAMPLE.org: same address as line 2" in r.out
    assert (
        "subscribers/members.csv:4: invalid: broken@: There must be something after the @-sign."
    ) in r.out
    assert "problems: 2 rows to fix" in r.out


def test_check_json_and_single_list_and_a_path(cli: Cli, workspace: Path) -> None:
    (workspace / "export.csv").write_text("email\nx@example\n", encoding="utf-8")
    r = cli("subscribers", "check", "sample", "export.csv", "--format", "json")
    assert r.code == 1
    data = json.loads(r.out)
    assert data["ok"] is False
    assert [
        (x["list"], x["rows"], x["valid"], x["invalid"], x["suppressed"]) for x in data["lists"]
    ] == [("sample", 5, 5, 0, 1), ("export", 1, 0, 1, 0)]
    assert [(p["file"], p["line"], p["kind"]) for p in data["problems"]] == [
        ("export.csv", 2, "invalid")
    ]


def test_check_unreadable_file_names_line_and_continues(cli: Cli, workspace: Path) -> None:
    (workspace / "subscribers" / "legacy.csv").write_bytes(
        "email,name\nana@example.org,Jos\xe9\n".encode("latin-1")
    )
    r = cli("subscribers", "check")
    assert r.code == 1
    assert (
        "subscribers/legacy.csv:2: the file is not UTF-8: byte 20 of the line is 0xE9 "
        "(in Latin-1 that is 'é')"
    ) in r.out
    assert [ln.split()[:2] for ln in r.out.splitlines() if ln.startswith(("legacy", "sample"))] == [
        ["legacy", "unreadable"],
        ["sample", "5"],
    ]
    assert "Traceback" not in r.out + r.err


def test_check_unknown_list(cli: Cli) -> None:
    r = cli("subscribers", "check", "donors")
    assert r.code == 1
    assert "no subscriber list named 'donors'" in r.err
    assert "sample" in r.err and "Traceback" not in r.err


def test_import_merges_and_reports(cli: Cli, workspace: Path) -> None:
    (workspace / "crm.csv").write_text(
        "Email;Name;Company\r\nNEW@Example.org;New Person;ACME\r\n"
        "ANA.LOPEZ@example.org;Ana;X\r\nbad@;Bad;Y\r\nnew@example.org;Dup;Z\r\n"
        "chloe.martin@example.net;Chloe;Q\r\n",
        encoding="utf-8",
    )
    before = (workspace / "subscribers" / "sample.csv").read_text(encoding="utf-8")
    r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert r.code == 0, r.err
    after = (workspace / "subscribers" / "sample.csv").read_text(encoding="utf-8")
    assert after == before + "NEW@example.org,New Person,,,,\n"
    assert "skipped crm.csv:4: invalid: bad@: There must be something after the @-sign." in r.out
    assert "skipped crm.csv:5: duplicate: new@example.org: same address as line 2" in r.out
    assert "column 'Company' not imported" in r.out
    rows = {" ".join(ln.split()[:-1]): ln.split()[-1] for ln in r.out.splitlines()[1:8]}
    assert rows["added"] == "1" and rows["skipped: already on the list"] == "2"
    again = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert "nothing new" in again.out
    assert (workspace / "subscribers" / "sample.csv").read_text(encoding="utf-8") == after


def test_import_into_a_missing_list_needs_create(cli: Cli, workspace: Path) -> None:
    (workspace / "crm.csv").write_text("email,name\nzoe@example.org,Zoë\n", encoding="utf-8")
    r = cli("subscribers", "import", "crm.csv", "--list", "donors")
    assert r.code == 1
    assert "no subscriber list named 'donors'" in r.err and "--create" in r.err
    assert not (workspace / "subscribers" / "donors.csv").exists()
    r = cli("subscribers", "import", "crm.csv", "--list", "donors", "--create")
    assert r.code == 0, r.err
    assert (workspace / "subscribers" / "donors.csv").read_text(encoding="utf-8") == (
        "email,name\nzoe@example.org,Zoë\n"
    )


def test_suppressions_add_and_list(cli: Cli, workspace: Path) -> None:
    path = workspace / "subscribers" / "suppressions.csv"
    r = cli(
        "suppressions",
        "add",
        "Ben.Carter@EXAMPLE.com",
        "chloe.martin@example.net",
        "--reason",
        "spam",
    )
    assert r.code == 0, r.err
    assert "suppressed Ben.Carter@example.com (spam)" in r.out
    assert "already suppressed: chloe.martin@example.net" in r.out
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and lines[2].startswith("Ben.Carter@example.com,spam,cli,20")
    r = cli("suppressions", "add", "not-an-address", "diego.ramirez@example.org")
    assert r.code == 1
    assert "error: not an email address: 'not-an-address'" in r.err
    assert (
        path.read_text(encoding="utf-8")
        .splitlines()[3]
        .startswith("diego.ramirez@example.org,manual,cli,")
    )  # the valid one is not lost
    listed = json.loads(cli("suppressions", "list", "--format", "json").out)
    assert [(x["email"], x["reason"]) for x in listed] == [
        ("chloe.martin@example.net", "unsubscribed"),
        ("Ben.Carter@example.com", "spam"),
        ("diego.ramirez@example.org", "manual"),
    ]
    text = cli("suppressions", "list", "--reason", "spam").out
    assert "Ben.Carter@example.com" in text and "chloe" not in text
    assert text.splitlines()[-1] == "1 suppressed (1 spam)"
    check = cli("subscribers", "check")
    assert [ln.split() for ln in check.out.splitlines() if ln.startswith("sample")] == [
        ["sample", "5", "5", "0", "0", "3"]
    ]


def test_suppressions_add_rejects_unknown_reason(cli: Cli) -> None:
    r = cli("suppressions", "add", "a@example.org", "--reason", "gone")
    assert r.code == 2
    assert "gone" in r.err
