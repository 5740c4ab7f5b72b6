"""The suppression list (suppressions.py): reading, adding, refreshing, concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import get_args

import pytest

from newsletter.cli.audience import Reason
from newsletter.errors import SubscriberListError
from newsletter.events import EventStore
from newsletter.suppression_file import HEADER, REASONS, Suppression, read_suppressions
from newsletter.suppression_writes import add_suppressions, merge_pending, pending_entry
from newsletter.suppressions import SuppressionList

AT = "2019-09-01T08:00:00+00:00"


def entry(email: str, reason: str = "manual", source: str = "test") -> Suppression:
    return Suppression(email=email, reason=reason, source=source, at=AT)


def test_cli_reason_choices_match() -> None:
    assert get_args(Reason) == REASONS


def test_read_the_sample_file(workspace: Path) -> None:
    rows = list(read_suppressions(workspace / "subscribers" / "suppressions.csv"))
    assert rows == [
        Suppression(
            "chloe.martin@example.net", "unsubscribed", "one-click", "2019-08-30T10:12:00+00:00"
        )
    ]


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert list(read_suppressions(tmp_path / "none.csv")) == []
    (tmp_path / "empty.csv").touch()
    assert list(read_suppressions(tmp_path / "empty.csv")) == []
    assert len(SuppressionList(tmp_path / "none.csv")) == 0


def test_unknown_reason_names_line_and_value(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(
        "email,reason,source,at\na@example.org,bounced,,\nb@example.org,unsubcribed,form,\n",
        encoding="utf-8",
    )
    with pytest.raises(SubscriberListError) as info:
        list(read_suppressions(path))
    problem = info.value.problems[0]
    assert (problem.line, problem.field, problem.message) == (
        3,
        "reason",
        "unknown reason 'unsubcribed'",
    )
    assert problem.hint == "use one of: unsubscribed, bounced, spam, manual"


def test_invalid_address_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("email,reason\nnot-an-address,manual\n", encoding="utf-8")
    with pytest.raises(SubscriberListError) as info:
        list(read_suppressions(path))
    assert (info.value.line, info.value.field) == (2, "email")


def test_empty_reason_reads_as_manual_and_case_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Email;Reason\n Ana@EXAMPLE.org ;\nben@example.org;SPAM\n", encoding="utf-8")
    assert [(s.email, s.reason) for s in read_suppressions(path)] == [
        ("Ana@example.org", "manual"),
        ("ben@example.org", "spam"),
    ]


def test_add_creates_file_with_header_and_dedupes(tmp_path: Path) -> None:
    path = tmp_path / "subscribers" / "suppressions.csv"
    added = add_suppressions(
        path,
        [entry(" Ana@Example.ORG "), entry("ben@example.org", "spam"), entry("ana@example.org")],
    )
    assert [(s.email, s.reason) for s in added] == [
        ("Ana@example.org", "manual"),
        ("ben@example.org", "spam"),
    ]
    assert path.read_text() == (
        "email,reason,source,at\n"
        f"Ana@example.org,manual,test,{AT}\nben@example.org,spam,test,{AT}\n"
    )
    again = add_suppressions(path, [entry("ANA@example.org"), entry("carl@example.org")])
    assert [s.email for s in again] == ["carl@example.org"]
    assert path.read_text().count("\n") == 4
    assert add_suppressions(path, [entry("ben@EXAMPLE.org")]) == []


def test_add_keeps_an_existing_files_shape(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    path.write_bytes(b"at;email;reason\r\n2019-01-01;old@example.org;manual")  # no final newline
    add_suppressions(path, [entry("new@example.org", "bounced")])
    assert path.read_bytes() == (
        b"at;email;reason\r\n2019-01-01;old@example.org;manual\r\n"
        + f"{AT};new@example.org;bounced\r\n".encode()
    )


def test_add_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    with pytest.raises(ValueError, match="unknown reason 'gone'"):
        add_suppressions(path, [entry("a@example.org"), entry("b@example.org", "gone")])
    with pytest.raises(ValueError, match="must have an @-sign"):
        add_suppressions(path, [entry("a@example.org"), entry("nobody")])
    assert not path.exists()


def test_add_stamps_at_when_missing(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    (added,) = add_suppressions(path, [Suppression("a@example.org", "manual", "", "")])
    assert added.at.endswith("+00:00") and added.at[:2] == "20"


def test_contains_and_refresh(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    sl = SuppressionList(path)
    assert (len(sl), sl.contains("a@example.org"), sl.refresh()) == (0, False, False)
    add_suppressions(path, [entry("A@Bücher.DE")])
    assert sl.contains("a@bücher.de") is False  # not re-read yet
    assert sl.refresh() is True
    assert sl.refresh() is False  # unchanged: no re-read
    assert sl.contains("  a@xn--bcher-kva.de ") and sl.contains("A@BÜCHER.de")
    assert "a@bücher.de" in sl and len(sl) == 1
    assert not sl.contains("b@bücher.de")
    path.unlink()
    assert sl.refresh() is True and len(sl) == 0


def test_refresh_sees_a_file_replaced_by_an_editor(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    add_suppressions(path, [entry("a@example.org")])
    sl = SuppressionList(path)
    replacement = tmp_path / "tmp.csv"
    replacement.write_text("email,reason\nb@example.org,manual\n", encoding="utf-8")
    os.replace(replacement, path)
    assert sl.refresh() is True
    assert (sl.contains("a@example.org"), sl.contains("b@example.org")) == (False, True)


def _writer(path: str, worker: int, count: int, barrier: object) -> None:
    for i in range(count):
        barrier.wait()  # type: ignore[attr-defined]  # both writers race on every call
        # the shared address comes from both workers at once: it must be written once
        add_suppressions(
            Path(path),
            [entry(f"w{worker}-{i}@example.org"), entry(f"shared-{i}@example.org", "bounced")],
        )


def _reader(path: str, rounds: int, errors: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    sl = SuppressionList(Path(path))
    try:
        for _ in range(rounds):
            sl.refresh()
    except Exception as exc:  # reported to the test, which fails on it
        errors.put(repr(exc))


def test_concurrent_adds_from_two_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    count = 60
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(path), w, count, barrier)) for w in (1, 2)]
    procs.append(ctx.Process(target=_reader, args=(str(path), 300, errors)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert errors.empty()
    rows = list(read_suppressions(path))
    emails = [s.email for s in rows]
    expected = {f"w{w}-{i}@example.org" for w in (1, 2) for i in range(count)}
    expected |= {f"shared-{i}@example.org" for i in range(count)}
    assert len(emails) == len(expected) == 3 * count  # nothing lost, nothing twice
    assert set(emails) == expected
    assert path.read_text().count(",".join(HEADER)) == 1


def test_a_bad_row_written_by_hand_never_blocks_an_append(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    path.write_text(
        "email,reason,source,at\n"
        "old@example.org,bounced,,\n"
        "not-an-address,manual,phone,\n"
        "typo@example.org,unsubcribed,phone,\n",
        encoding="utf-8",
    )
    before = path.read_bytes()
    added = add_suppressions(
        path, [entry("new@example.org"), entry("OLD@example.org"), entry("typo@example.org")]
    )
    # Deduped against the readable rows; the typo'd row is no suppression, so it is added.
    assert [s.email for s in added] == ["new@example.org", "typo@example.org"]
    assert path.read_bytes() == before + (
        f"new@example.org,manual,test,{AT}\ntypo@example.org,manual,test,{AT}\n".encode()
    )
    # Readers that decide who gets mail still stop at the first bad row, naming it.
    with pytest.raises(SubscriberListError) as info:
        list(read_suppressions(path))
    assert (info.value.line, info.value.field) == (3, "email")
    with pytest.raises(SubscriberListError):
        SuppressionList(path)
    lenient = SuppressionList(path, strict=False)
    assert [(p.line, p.field) for p in lenient.skipped] == [(3, "email"), (4, "reason")]
    assert lenient.contains("new@example.org") and not lenient.contains("not-an-address")


@pytest.mark.parametrize(
    "content",
    [
        b'email,reason\na@example.org,"manual\n',  # an open quote would swallow our row
        b"email,reason\n\xe9@example.org,manual\n",  # Latin-1: appending UTF-8 would mix
        b"address;why\na@example.org;manual\n",  # no email column: where would it go?
    ],
)
def test_a_file_that_cannot_safely_take_a_row_is_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "suppressions.csv"
    path.write_bytes(content)
    with pytest.raises(SubscriberListError):
        add_suppressions(path, [entry("new@example.org")])
    assert path.read_bytes() == content


def test_a_workspace_list_counts_what_waits_in_the_state_database(workspace: Path) -> None:
    path = workspace / "subscribers" / "suppressions.csv"
    store = EventStore(workspace / ".newsletter" / "state.db")
    sl = SuppressionList(path)
    assert not sl.contains("ana.lopez@example.org") and sl.contains("chloe.martin@example.net")
    store.add([], [pending_entry(entry("Ana.Lopez@Example.org", "unsubscribed"))])
    assert sl.refresh() is True  # the CSV did not change; the waiting entry did
    assert sl.contains("ana.lopez@example.org") and len(sl) == 2
    assert not SuppressionList(path, pending_db=None).contains("ana.lopez@example.org")
    assert SuppressionList(workspace / "elsewhere.csv").pending_db is None

    added = merge_pending(store, path)
    assert [(s.email, s.reason) for s in added] == [("Ana.Lopez@example.org", "unsubscribed")]
    assert store.pending() == [] and merge_pending(store, path) == []
    assert sl.refresh() is True and sl.contains("ana.lopez@example.org") and len(sl) == 2
    # Merging again after a crash between append and forget adds nothing twice.
    store.add([], [pending_entry(entry("ana.lopez@example.org", "spam"))])
    assert merge_pending(store, path) == [] and store.pending() == []
    assert path.read_text(encoding="utf-8").lower().count("ana.lopez@example.org") == 1
    store.close()


def test_the_lenient_list_survives_a_file_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.csv"
    add_suppressions(path, [entry("a@example.org")])
    sl = SuppressionList(path, strict=False)
    assert sl.contains("a@example.org") and sl.problem is None
    path.unlink()
    path.mkdir()
    sl.refresh()  # no exception: the server keeps serving
    assert not sl.contains("a@example.org") and sl.problem and "Is a directory" in sl.problem


def test_a_writer_hands_what_it_read_to_the_servers_cache(tmp_path: Path) -> None:
    """The server's cache must not read a large file again right after its own append."""
    path = tmp_path / "suppressions.csv"
    add_suppressions(path, [entry("a@example.org")])
    cache = SuppressionList(path, strict=False)
    add_suppressions(path, [entry("b@example.org")])  # someone else: the cache is behind
    add_suppressions(path, [entry("c@example.org")], cache=cache)
    assert cache.contains("b@example.org") and cache.contains("c@example.org")
    assert cache.refresh() is False  # already exactly what the file holds: no re-read
    strict = SuppressionList(path)
    add_suppressions(path, [entry("d@example.org")], cache=strict)  # strict lists re-read
    assert not strict.contains("d@example.org") and strict.refresh() is True
