"""`subscribers import`: merge a CRM export into a list, never losing a row of either.

The list's existing bytes are kept as they are, new rows are appended in its shape,
and the result replaces the list all at once (:mod:`newsletter.atomic`) while the
list's lock (:mod:`newsletter.list_locks`) keeps other imports and sends out.
"""

from __future__ import annotations

import contextlib
import csv
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .addresses import email_key, normalise_recipient
from .atomic import AtomicFile
from .config import Workspace
from .csvfile import CsvLayout, iter_rows, list_error, read_layout
from .errors import SubscriberListError
from .list_locks import list_is_idle, list_lock
from .rows import FORMULA_NEUTRALISER, RowBuilder, RowProblem, Subscriber, formula_start, same_as
from .subscribers import iter_list

if TYPE_CHECKING:
    from .suppressions import SuppressionList

_CsvWriter = Any  # csv.writer's type is private (_csv._writer)
_IMPORT_TMP_PREFIX = "import-"  # .newsletter/tmp/import-<list>.<random>.tmp
_TMP_IN_TMP_DIR = re.compile(r"import-(?P<list>.+)\.[a-z0-9_]{8}\.tmp")
_TMP_BESIDE_LIST = re.compile(r"\.(?P<list>.+)\.csv\.[a-z0-9_]{8}\.tmp")  # fallback, older versions


def clean_stale_imports(ws: Workspace, holding: str) -> list[Path]:
    """Delete the temporary copies that killed imports left behind; returns them.

    Called by an import while it holds `holding`'s lock exclusively.  Only files
    this module creates (recognised by their names) are touched, and another
    list's only when nothing holds that list's lock, so a running import never
    loses its file.  A large list makes a large copy, and a killed import (SIGKILL,
    power cut) has no chance to remove its own.
    """
    removed: list[Path] = []
    candidates: list[tuple[Path, str]] = []
    for folder, pattern in ((ws.tmp_dir, _TMP_IN_TMP_DIR), (ws.subscribers_dir, _TMP_BESIDE_LIST)):
        if folder.is_dir():
            for path in folder.iterdir():
                match = pattern.fullmatch(path.name)
                if match and path.is_file():
                    candidates.append((path, match["list"]))
    idle: dict[str, bool] = {}
    for path, owner in candidates:
        if owner != holding:
            if owner not in idle:
                try:
                    idle[owner] = list_is_idle(ws, owner)
                except SubscriberListError:  # not a list name: not ours after all
                    idle[owner] = False
            if not idle[owner]:
                continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What `subscribers import` did: counts by outcome and why each row was skipped.

    Rows already on the list are only counted (re-importing a whole CRM export is
    normal and would drown the rest); every other skipped row is kept with its line,
    and every warning about a row that was added (a value written neutralised, a
    name with a line break).  A million problems fit (RowProblem has slots); the CLI
    prints the first few of each kind and counts the rest.
    """

    source: Path
    target: Path
    created: bool = False
    written: bool = False
    added: int = 0
    already_listed: int = 0
    skipped: list[RowProblem] = field(default_factory=list)
    dropped_columns: list[tuple[str, int]] = field(default_factory=list)  # name, values lost
    warnings: list[RowProblem] = field(default_factory=list)
    neutralised: int = 0  # values written with a leading apostrophe
    stale_removed: int = 0  # temporary files of earlier, killed imports deleted

    def count(self, kind: str) -> int:
        return sum(1 for p in self.skipped if p.kind == kind)

    def head(self) -> dict[str, object]:
        """Everything but the per-row lists (which :meth:`as_dict` adds)."""
        return {
            "source": str(self.source),
            "target": str(self.target),
            "created": self.created,
            "written": self.written,
            "added": self.added,
            "already_listed": self.already_listed,
            "neutralised": self.neutralised,
            "dropped_columns": [{"column": c, "values": n} for c, n in self.dropped_columns],
        }

    def as_dict(self) -> dict[str, object]:
        return {
            **self.head(),
            "skipped": [p.as_dict() for p in self.skipped],
            "warnings": [p.as_dict() for p in self.warnings],
        }


def _column_map(source: CsvLayout, target: CsvLayout) -> list[int | None]:
    """For each target column, the source column feeding it (known names by meaning)."""
    by_meaning: dict[str, int] = {}
    for i, (name, known) in enumerate(zip(source.header, source.canonical, strict=True)):
        by_meaning.setdefault(known or name.strip().lower(), i)
    return [
        by_meaning.get(known or name.strip().lower())
        for name, known in zip(target.header, target.canonical, strict=True)
    ]


def import_list(
    source: Path,
    target: Path,
    *,
    suppressions: SuppressionList | None = None,
    create: bool = False,
    dry_run: bool = False,
    workspace: Workspace | None = None,
    on_wait: Callable[[], None] | None = None,
) -> ImportReport:
    """Merge a CRM export into a list: new, valid, unsuppressed addresses are appended.

    The target's existing bytes are kept as they are (BOM, quoting, invalid rows a
    person still has to fix) and new rows are written in its delimiter, line ending
    and column order.  Source columns the target has no column for are reported in
    ``dropped_columns``, never dropped silently.  The write is atomic (temporary
    file, fsync, rename), so an interrupted import leaves the list as it was.
    Suppressed addresses are skipped: importing must not re-subscribe anyone who
    asked to leave.  A value a spreadsheet would run as a formula is written with
    a leading apostrophe (OWASP's advice against CSV injection) and reported.

    With `workspace` (the CLI always passes it), the whole read-merge-rename holds
    the list's lock (:func:`~newsletter.list_locks.list_lock`, shared for a dry run),
    so concurrent imports into one list add up; the temporary copy is made in
    ``.newsletter/tmp/``, never in ``subscribers/``, and the copies of earlier
    killed imports are removed first.
    """
    if workspace is None:
        return _import(source, target, suppressions, create, dry_run, None)
    with list_lock(workspace, target.stem, shared=dry_run, on_wait=on_wait):
        stale = [] if dry_run else clean_stale_imports(workspace, target.stem)
        report = _import(source, target, suppressions, create, dry_run, workspace.tmp_dir)
        report.stale_removed = len(stale)
        return report


def _import(
    source: Path,
    target: Path,
    suppressions: SuppressionList | None,
    create: bool,
    dry_run: bool,
    tmp_dir: Path | None,
) -> ImportReport:
    report = ImportReport(source=source, target=target)
    source_layout = read_layout(source)
    if target.exists():
        target_layout = read_layout(target)
        existing: dict[str, int] = {}
        for item in iter_list(target, target.stem):
            if isinstance(item, Subscriber):
                existing[item.key] = item.line
    elif create:
        report.created = True
        target_layout = CsvLayout(
            target, ",", source_layout.header, source_layout.canonical, "\n", False
        )
        existing = {}
    else:
        raise list_error(
            target,
            None,
            "the list does not exist",
            hint="check the name, or add --create to start a new list",
        )
    columns = _column_map(source_layout, target_layout)
    used = {i for i in columns if i is not None}
    dropped = [i for i, name in enumerate(source_layout.header) if i not in used and name]
    dropped_values = dict.fromkeys(dropped, 0)
    rows = RowBuilder(target_layout, target.stem)  # judges rows as the list will read them

    with _AtomicAppend(target, target_layout, enabled=not dry_run, tmp_dir=tmp_dir) as out:
        width = len(source_layout.header)
        email_in = source_layout.canonical.index("email")
        email_out = target_layout.index("email")
        for _, line, fields in iter_rows(source):
            raw = fields[email_in] if email_in < len(fields) else ""
            if any(fields[width:]):
                report.skipped.append(
                    RowProblem(
                        source,
                        line,
                        "invalid",
                        raw,
                        f"the row has more values than the header has columns ({width}); a value "
                        f"containing {source_layout.delimiter!r} must be in double quotes",
                    )
                )
                continue
            try:
                email = normalise_recipient(raw)
            except ValueError as exc:
                reason = str(exc) if raw else "the email column is empty"
                report.skipped.append(RowProblem(source, line, "invalid", raw, reason))
                continue
            key = email_key(email)
            known = existing.get(key)
            if known is not None and known > 0:
                report.already_listed += 1
                continue
            if known is not None:
                report.skipped.append(
                    RowProblem(source, line, "duplicate", raw, same_as(-known), -known)
                )
                continue
            row = [fields[i] if i is not None and i < len(fields) else "" for i in columns]
            too_long = rows.too_long(row)
            if too_long is not None:
                report.skipped.append(
                    RowProblem(source, line, "invalid", raw, too_long[1], column=too_long[0])
                )
                continue
            existing[key] = -line  # one dict for both files: lines of the import are negative
            if suppressions is not None and suppressions.contains_key(key):
                report.skipped.append(
                    RowProblem(
                        source,
                        line,
                        "suppressed",
                        raw,
                        "on the suppression list (unsubscribed, bounced or blocked)",
                    )
                )
                continue
            for i in dropped:
                if i < len(fields) and fields[i]:
                    dropped_values[i] += 1
            if email_out is not None:
                row[email_out] = email
            for column, note in rows.notes(row, written=not dry_run):
                report.warnings.append(
                    RowProblem(source, line, "warning", raw, note, column=column)
                )
            for i, _column in rows.text_columns:
                if formula_start(row[i]):
                    row[i] = FORMULA_NEUTRALISER + row[i]
                    report.neutralised += 1
            out.write(row)
            report.added += 1
        out.commit = report.added > 0
    report.written = not dry_run and report.added > 0
    report.dropped_columns = [(source_layout.header[i], n) for i, n in dropped_values.items()]
    return report


class _AtomicAppend:
    """The target's bytes, then the new rows; replaces the target at the end if `commit`.

    The copy goes to `tmp_dir` (``.newsletter/tmp/``) when given, so that a killed
    import leaves no hidden multi-megabyte file among the lists.  The list keeps its
    permissions; a new list is made readable by all (0644).
    """

    def __init__(
        self, target: Path, layout: CsvLayout, *, enabled: bool, tmp_dir: Path | None = None
    ) -> None:
        self.target = target
        self.layout = layout
        self.enabled = enabled
        self.tmp_dir = tmp_dir
        self.commit = False
        self._file: AtomicFile | None = None
        self._writer: _CsvWriter | None = None

    def __enter__(self) -> _AtomicAppend:
        if not self.enabled:
            return self
        exists = self.target.exists()
        out = AtomicFile(
            self.target,
            mode=stat.S_IMODE(self.target.stat().st_mode) if exists else 0o644,
            tmp_dir=self.tmp_dir,
            prefix=f"{_IMPORT_TMP_PREFIX}{self.target.stem}." if self.tmp_dir else None,
        )
        with contextlib.ExitStack() as undo:  # a failed copy removes the temporary file
            undo.enter_context(out)
            if exists:
                with self.target.open("rb") as original:
                    data_end = b""
                    while chunk := original.read(1 << 20):
                        out.handle.write(chunk)
                        data_end = chunk[-1:]
                if data_end not in (b"", b"\n", b"\r"):
                    out.handle.write(self.layout.line_ending.encode())
            self._writer = csv.writer(
                out.text(), delimiter=self.layout.delimiter, lineterminator=self.layout.line_ending
            )
            if not exists:
                self._writer.writerow(self.layout.header)
            undo.pop_all()
        self._file = out
        return self

    def write(self, row: list[str]) -> None:
        if self._writer is not None:
            self._writer.writerow(row)

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if self._file is None:
            return
        try:
            if kind is None and self.commit:
                self._file.commit()
        finally:
            self._file.__exit__(kind, value, traceback)
