"""Reading, validating and merging subscriber lists (subscribers.py).

Each CSV oddity real exports have gets a file written byte for byte, and the test
asserts the exact rows, counts, line numbers or error message that come out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from newsletter.addresses import NON_ASCII_LOCAL, normalise_email, normalise_recipient
from newsletter.config import Workspace
from newsletter.errors import SubscriberListError
from newsletter.importing import import_list
from newsletter.rows import RowProblem, Subscriber
from newsletter.subscribers import Audience, iter_list, list_names, list_path
from newsletter.suppressions import SuppressionList


def write(tmp_path: Path, data: bytes | str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(path: Path) -> tuple[list[Subscriber], list[RowProblem]]:
    subs: list[Subscriber] = []
    problems: list[RowProblem] = []
    for item in iter_list(path, path.stem):
        (subs if isinstance(item, Subscriber) else problems).append(item)  # type: ignore[arg-type]
    return subs, problems


def error_of(path: Path) -> SubscriberListError:
    with pytest.raises(SubscriberListError) as info:
        read(path)
    return info.value


# --------------------------------------------------------------------------- the sample list


def test_sample_list_reads_every_field(workspace: Path) -> None:
    subs, problems = read(workspace / "subscribers" / "sample.csv")
    assert problems == []
    assert [s.email for s in subs] == [
        "ana.lopez@example.org",
        "ben.carter@example.com",
        "chloe.martin@example.net",
        "diego.ramirez@example.org",
        "esther.moyo@example.com",
    ]
    ana = subs[0]
    assert (ana.name, ana.first_name, ana.language) == ("Ana López", "Ana", "es")
    assert ana.tags == frozenset({"partners", "costa-rica"})
    assert (ana.subscribed_at, ana.consent) == ("2019-01-14", "signup form at www.example.org")
    assert (ana.list_name, ana.line) == ("sample", 2)
    assert dict(ana.attributes) == {}
    diego = subs[3]
    assert (diego.name, diego.first_name, diego.tags) == (None, None, frozenset({"partners"}))


# --------------------------------------------------------------------------- CSV oddities


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfemail,name\r\nana@example.org,Ana L\xc3\xb3pez\r\n")
    subs, problems = read(path)
    assert [(s.email, s.name, s.line) for s in subs] == [("ana@example.org", "Ana López", 2)]
    assert problems == []


def test_semicolon_delimiter_from_excel(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'E-mail;Name;Tags\r\nana@example.org;"López; Ana";press;partners\r\n'
        "ben@example.org;Ben;press,board\r\n",
    )
    subs, problems = read(path)
    # the unquoted ';' in row 2 splits into an extra value: reported, not guessed
    assert [(p.line, p.kind) for p in problems] == [(2, "invalid")]
    assert "1 more value than the header has columns (3)" in problems[0].reason
    assert [(s.email, s.name, s.tags) for s in subs] == [
        ("ben@example.org", "Ben", frozenset({"press", "board"}))
    ]


def test_tab_delimited(tmp_path: Path) -> None:
    path = write(tmp_path, "email\tname\nana@example.org\tAna\n")
    assert [(s.email, s.name) for s in read(path)[0]] == [("ana@example.org", "Ana")]


def test_quoted_fields_with_commas_and_newlines_keep_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        (
            "email,name,consent\n"
            'ana@example.org,"López, Ana","signup form,\nconfirmed by phone"\n'
            'ben@example.org,"Ben ""the press"" Carter",\n'
            "not-an-address,X,\n"
        ),
    )
    subs, problems = read(path)
    assert [(s.email, s.name, s.consent, s.line) for s in subs] == [
        ("ana@example.org", "López, Ana", "signup form,\nconfirmed by phone", 2),
        ("ben@example.org", 'Ben "the press" Carter', None, 4),
    ]
    assert [(p.line, p.email) for p in problems] == [(5, "not-an-address")]


def test_crlf_and_blank_lines_and_trailing_spaces(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        (
            " email , name ,language \r\n"
            "\r\n"
            "  ana@example.org  , Ana ,  ES \r\n"
            "   \r\n"
            ",,\r\n"
            "ben@example.org,Ben,en\r\n"
            "\r\n"
        ),
    )
    subs, problems = read(path)
    assert [(s.email, s.name, s.language, s.line) for s in subs] == [
        ("ana@example.org", "Ana", "es", 3),
        ("ben@example.org", "Ben", "en", 6),
    ]
    assert problems == []


def test_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\nemail\nana@example.org\n")
    assert [(s.email, s.line) for s in read(path)[0]] == [("ana@example.org", 4)]


def test_latin1_file_is_an_error_with_line_and_byte(tmp_path: Path) -> None:
    path = write(
        tmp_path, "email,name\nana@example.org,Ana\nben@example.org,Andr\xe9\n".encode("latin-1")
    )
    err = error_of(path)
    assert (err.line, err.path) == (3, path)
    assert err.problems[0].message == (
        "the file is not UTF-8: byte 21 of the line is 0xE9 (in Latin-1 that is 'é')"
    )
    assert "CSV UTF-8" in (err.problems[0].hint or "")


def test_windows_1252_quote_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\nana@example.org,O\x92Brien\n")
    err = error_of(path)
    assert err.line == 2
    assert "0x92 (probably Windows-1252" in err.message


def test_non_utf8_late_in_a_big_file_fails_before_any_row(tmp_path: Path) -> None:
    rows = "".join(f"user{i}@example.org,U\n" for i in range(60_000))  # > one 1 MB chunk
    path = write(tmp_path, ("email,name\n" + rows).encode() + b"late@example.org,\xe9\n")
    it = iter_list(path, "list")
    with pytest.raises(SubscriberListError) as info:
        next(it)
    assert info.value.line == 60_002


def test_utf16_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "email\nana@example.org\n".encode("utf-16"))
    err = error_of(path)
    assert (err.line, err.problems[0].message) == (
        1,
        "the file is UTF-16 ('Unicode text'), not UTF-8",
    )


def test_missing_email_column_names_the_columns_found(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "mail,name,language\nana@example.org,Ana,es\n"))
    assert (err.line, err.field) == (1, "email")
    assert err.problems[0].message == "no 'email' column; columns found: 'mail', 'name', 'language'"


def test_file_without_header_gets_a_specific_hint(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "ana@example.org\nben@example.org\n"))
    assert "looks like an address, not a header" in (err.problems[0].hint or "")


def test_empty_file(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, ""))
    assert err.problems[0].message.startswith("the file is empty")


def test_two_columns_meaning_email(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "Email,name,E-mail address\n"))
    assert err.problems[0].message == (
        "columns 1 ('Email') and 3 ('E-mail address') both mean 'email'"
    )


def test_unclosed_quote_is_an_error_at_its_row(tmp_path: Path) -> None:
    path = write(tmp_path, 'email,name\nana@example.org,"Ana\nben@example.org,Ben\n')
    err = error_of(path)
    assert err.line == 2
    assert "cannot read the row that starts here" in err.message


def test_quote_swallowing_later_rows_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, 'email,name\nana@example.org,"Ana\nben@example.org,Ben"\n')
    err = error_of(path)
    assert err.line == 2
    assert "look like other subscribers" in err.message


def test_duplicates_are_case_insensitive_and_name_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name\nAna@Example.org,A1\nben@example.org,B\n"
        " ana@EXAMPLE.ORG ,A2\nana@example.org,A3\n",
    )
    subs, problems = read(path)
    assert [(s.email, s.name) for s in subs] == [
        ("Ana@example.org", "A1"),
        ("ben@example.org", "B"),
    ]
    assert [(p.kind, p.line, p.first_line, p.email, p.reason) for p in problems] == [
        ("duplicate", 4, 2, "ana@EXAMPLE.ORG", "same address as line 2"),
        ("duplicate", 5, 2, "ana@example.org", "same address as line 2"),
    ]


def test_idn_domain_is_normalised_and_punycode_is_the_same_address(tmp_path: Path) -> None:
    path = write(tmp_path, "email\nana@Bücher.DE\nana@xn--bcher-kva.de\n")
    subs, problems = read(path)
    assert [s.email for s in subs] == ["ana@bücher.de"]
    assert [(p.kind, p.line, p.first_line) for p in problems] == [("duplicate", 3, 2)]


def test_uppercase_domain_lowered_local_part_kept() -> None:
    assert normalise_email("  John.Smith@EXAMPLE.Org\t") == "John.Smith@example.org"
    assert normalise_email("Postmaster@Example.org") == "postmaster@example.org"


def test_nfc_normalisation_of_the_local_part() -> None:
    assert normalise_email("jose\u0301@example.org") == "jos\u00e9@example.org"


def test_invalid_addresses_are_reported_with_email_validator_reasons(tmp_path: Path) -> None:
    path = write(
        tmp_path, "email,name\nana@example,A\n,Nobody\nben..c@example.org,B\nok@example.org,C\n"
    )
    subs, problems = read(path)
    assert [s.email for s in subs] == ["ok@example.org"]
    assert [(p.line, p.kind, p.reason) for p in problems] == [
        (2, "invalid", "The part after the @-sign is not valid. It should have a period."),
        (3, "invalid", "the email column is empty"),
        (4, "invalid", "An email address cannot have two periods in a row."),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "ana@example.org",
        "Ana.Lopez+news@Example.ORG",
        "o'brien@example.ie",
        "a@b.co",
        "x@localhost",
        "x@example.invalid",
        "x@[127.0.0.1]",
        '"quoted"@example.org',
        "Ana <ana@example.org>",
        "a b@example.org",
        "a@exam ple.org",
        ".a@example.org",
        "a.@example.org",
        "a@-example.org",
        "a@example.org.",
        "a@@example.org",
        "a@",
        "@example.org",
        "x" * 64 + "@" + "y" * 185 + ".org",
        "x" * 65 + "@" + "y" * 185 + ".org",
        "ab@" + ".".join(["a" * 63] * 4),
        "jörg@bücher.de",
        "ünïcödé@example.org",
        "a@xn--bcher-kva.de",
        "a@xn--zz.de",
        "user@exa_mple.org",
        "info@EXAMPLE.org",
        "a@example.c",
        "a@123.123",
        "a\u200b@example.org",
        "a@ex\u00e4mple.org",
        "a@ＥＸＡＭＰＬＥ.org",
        "ab＠example.org",
        "a@example.com\u3002",
    ],
)
def test_fast_path_agrees_with_email_validator(raw: str) -> None:
    """The per-domain cache is an optimisation: verdicts and messages must not change."""
    try:
        expected: str | None = validate_email(raw, check_deliverability=False).normalized
        expected_error = None
    except EmailNotValidError as exc:
        expected, expected_error = None, str(exc)
    for _ in range(2):  # second time from the domain cache
        try:
            got: str | None = normalise_email(raw)
            got_error = None
        except ValueError as exc:
            got, got_error = None, str(exc)
        assert (got, got_error) == (expected, expected_error)


def test_name_first_name_aliases_and_attributes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        (
            "Email Address,First Name,Full Name,lang,Company,Region,\n"
            "ana@example.org,Anita,Ana López,ES,ACME,,\n"
            "ben@example.org,,Ben Carter,,,North,\n"
        ),
    )
    subs, _ = read(path)
    assert [(s.first_name, s.name, s.language, dict(s.attributes)) for s in subs] == [
        ("Anita", "Ana López", "es", {"Company": "ACME"}),
        ("Ben", "Ben Carter", None, {"Region": "North"}),
    ]


def test_short_rows_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name,language,tags\nana@example.org\n")
    subs, problems = read(path)
    assert [(s.email, s.name, s.tags) for s in subs] == [("ana@example.org", None, frozenset())]
    assert problems == []


# --------------------------------------------------------------------------- lists and Audience


def make_ws(tmp_path: Path, lists: dict[str, str], suppressions: str | None = None) -> Workspace:
    root = tmp_path / "ws"
    (root / "subscribers").mkdir(parents=True)
    for name, text in lists.items():
        (root / "subscribers" / f"{name}.csv").write_text(text, encoding="utf-8")
    if suppressions is not None:
        (root / "subscribers" / "suppressions.csv").write_text(suppressions, encoding="utf-8")
    return Workspace(root)


def test_list_names_and_missing_list_hint(tmp_path: Path) -> None:
    ws = make_ws(tmp_path, {"members": "email\n", "press": "email\n"}, "email,reason\n")
    assert list_names(ws) == ["members", "press"]
    assert list_path(ws, "press") == ws.subscribers_dir / "press.csv"
    with pytest.raises(SubscriberListError) as info:
        list_path(ws, "donors")
    assert info.value.problems[0].message == "no subscriber list named 'donors'"
    assert info.value.problems[0].hint == f"lists in {ws.subscribers_dir}: members, press"
    with pytest.raises(SubscriberListError, match="not a subscriber list"):
        list_path(ws, "suppressions")
    with pytest.raises(SubscriberListError, match="is not a list name"):
        list_path(ws, "../newsletter")


def test_audience_across_lists_with_suppressions_and_counts(tmp_path: Path) -> None:
    ws = make_ws(
        tmp_path,
        {
            "members": "email,name\nana@example.org,Ana M\nben@example.org,Ben\nbad@,X\n"
            "ANA@example.org,dup\ncarl@example.org,Carl\n",
            "press": "email,name\nana@example.org,Ana P\ndora@example.org,Dora\n"
            "erin@example.org,Erin\n",
        },
        "email,reason,source,at\nCARL@example.org,unsubscribed,one-click,2019-08-30\n"
        "erin@example.org,bounced,webhook,2019-08-30\n",
    )
    audience = Audience(ws, ["members", "press"])
    got = [(s.email, s.name, s.list_name) for s in audience]
    assert got == [
        ("ana@example.org", "Ana M", "members"),
        ("ben@example.org", "Ben", "members"),
        ("dora@example.org", "Dora", "press"),
    ]
    assert audience.counts() == {
        "rows": 8,
        "valid": 3,
        "invalid": 1,
        "duplicates": 1,
        "overlap": 1,
        "filtered_out": 0,
        "suppressed": 2,
    }
    assert [(p.path.name, p.line, p.kind) for p in audience.problems] == [
        ("members.csv", 4, "invalid"),
        ("members.csv", 5, "duplicate"),
    ]


def test_audience_tags_and_overlap_with_a_filtered_row(tmp_path: Path) -> None:
    ws = make_ws(
        tmp_path,
        {
            "a": "email,tags\nana@example.org,press\nben@example.org,donors\n",
            "b": "email,tags\nben@example.org,Partners\nana@example.org,partners\n",
        },
    )
    audience = Audience(ws, ["a", "b"], tags=["partners", "PRESS"])
    assert [(s.email, s.list_name) for s in audience] == [
        ("ana@example.org", "a"),
        ("ben@example.org", "b"),
    ]
    assert audience.counts() == {
        "rows": 4,
        "valid": 2,
        "invalid": 0,
        "duplicates": 0,
        "overlap": 1,
        "filtered_out": 1,
        "suppressed": 0,
    }


def test_audience_second_iteration_rereads_files_and_suppressions(tmp_path: Path) -> None:
    ws = make_ws(tmp_path, {"m": "email\nana@example.org\nben@example.org\n"})
    audience = Audience(ws, ["m"])
    assert len(list(audience)) == 2
    with (ws.subscribers_dir / "m.csv").open("a", encoding="utf-8") as f:
        f.write("carl@example.org\n")
    ws.suppressions_path.write_text("email,reason\nben@example.org,spam\n", encoding="utf-8")
    assert [s.email for s in audience] == ["ana@example.org", "carl@example.org"]
    assert (audience.valid, audience.suppressed) == (2, 1)


def test_audience_refuses_a_missing_list_before_reading(tmp_path: Path) -> None:
    ws = make_ws(tmp_path, {"m": "email\n"})
    with pytest.raises(SubscriberListError, match="no subscriber list named 'x'"):
        Audience(ws, ["m", "x"])


# --------------------------------------------------------------------------- import


def test_import_appends_keeping_the_target_bytes(tmp_path: Path) -> None:
    original = b"\xef\xbb\xbfemail;name;language\r\nana@example.org;Ana;es\r\nbroken;row;\r\n"
    target = write(tmp_path, original, "members.csv")
    source = write(
        tmp_path,
        (
            "Email,Name,Company,Notes\n"
            "ANA@example.org,Ana again,ACME,\n"
            "new@EXAMPLE.org,New Person,ACME,vip\n"
            "nope@,Bad,X,\n"
            "New@example.org,Dup,Y,\n"
            "gone@example.org,Gone,Z,\n"
            'other@example.org,"Other, Person",,\n'
        ),
        "crm.csv",
    )
    sup = tmp_path / "suppressions.csv"
    sup.write_text("email,reason\ngone@example.org,unsubscribed\n", encoding="utf-8")
    report = import_list(source, target, suppressions=SuppressionList(sup))
    assert (report.added, report.already_listed, report.written) == (2, 1, True)
    assert [(p.line, p.kind) for p in report.skipped] == [
        (4, "invalid"),
        (5, "duplicate"),
        (6, "suppressed"),
    ]
    assert report.dropped_columns == [("Company", 1), ("Notes", 1)]  # values of added rows
    assert target.read_bytes() == original + (
        b"new@example.org;New Person;\r\nother@example.org;Other, Person;\r\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crm.csv",
        "members.csv",
        "suppressions.csv",
    ]  # no temporary file left


def test_import_dry_run_writes_nothing_and_create_starts_a_list(tmp_path: Path) -> None:
    target = write(tmp_path, "email\nana@example.org", "members.csv")  # no final newline
    source = write(tmp_path, "email,name\nben@example.org,Ben\n", "crm.csv")
    report = import_list(source, target, dry_run=True)
    assert (report.added, report.written) == (1, False)
    assert target.read_text() == "email\nana@example.org"
    import_list(source, target)
    assert target.read_text() == "email\nana@example.org\nben@example.org\n"
    new = tmp_path / "new.csv"
    with pytest.raises(SubscriberListError, match="the list does not exist"):
        import_list(source, new)
    report = import_list(source, new, create=True)
    assert (report.created, report.added, report.dropped_columns) == (True, 1, [])
    assert new.read_text() == "email,name\nben@example.org,Ben\n"


def test_multiline_note_mentioning_an_address_is_not_a_runaway_quote(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'email,name,consent\nana@example.org,Ana,"at the fair,\nconfirmed by ana@example.org, '
        'phone"\nben@example.org,Ben,\n',
    )
    subs, problems = read(path)
    assert [(s.email, s.line) for s in subs] == [("ana@example.org", 2), ("ben@example.org", 4)]
    assert subs[0].consent == "at the fair,\nconfirmed by ana@example.org, phone"


# --------------------------------------------------------------------------- what SendGrid takes


def test_non_ascii_local_part_is_invalid_on_a_list_but_idn_domains_are_fine(
    tmp_path: Path,
) -> None:
    """SMTPUTF8 addresses are valid mail, but SendGrid refuses them (and the whole batch)."""
    path = write(
        tmp_path,
        "email,name\nana@example.org,A\njosé@example.org,J\njose\u0301@example.org,J2\n"
        "ana@bücher.de,B\nÜNÏ@Bücher.de,U\n",
    )
    subs, problems = read(path)
    assert [s.email for s in subs] == ["ana@example.org", "ana@bücher.de"]
    assert [(p.line, p.kind, p.email, p.reason) for p in problems] == [
        (3, "invalid", "josé@example.org", NON_ASCII_LOCAL),
        (4, "invalid", "jose\u0301@example.org", NON_ASCII_LOCAL),
        (6, "invalid", "ÜNÏ@Bücher.de", NON_ASCII_LOCAL),
    ]
    assert "SendGrid does not accept" in NON_ASCII_LOCAL and "before the @" in NON_ASCII_LOCAL
    # the general normalisation (suppressions, the web server) still accepts them
    assert normalise_email("josé@example.org") == "josé@example.org"
    with pytest.raises(ValueError, match="non-ASCII"):
        normalise_recipient("josé@example.org")
    assert normalise_recipient("ana@Bücher.DE") == "ana@bücher.de"


def test_non_ascii_local_part_in_audience_import_and_suppressions_agree(tmp_path: Path) -> None:
    ws_root = tmp_path
    (ws_root / "subscribers").mkdir()
    (ws_root / "subscribers" / "main.csv").write_text(
        "email\nana@example.org\njosé@example.org\n", "utf-8"
    )
    # a suppression entry with such an address is readable (and matches that spelling)
    (ws_root / "subscribers" / "suppressions.csv").write_text(
        "email,reason\nJosé@Example.org,unsubscribed\n", "utf-8"
    )
    suppressions = SuppressionList(ws_root / "subscribers" / "suppressions.csv")
    assert len(suppressions) == 1 and "José@example.org" in suppressions
    audience = Audience(Workspace(ws_root), ["main"], suppressions=suppressions)
    assert [s.email for s in audience] == ["ana@example.org"]
    assert (audience.invalid, audience.suppressed) == (1, 0)
    source = write(tmp_path, "email\nbob@example.org\nzoë@example.org\n", "crm.csv")
    report = import_list(source, ws_root / "subscribers" / "main.csv")
    assert report.added == 1
    assert [(p.kind, p.reason) for p in report.skipped] == [("invalid", NON_ASCII_LOCAL)]
