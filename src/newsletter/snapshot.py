"""Frozen copies of subscriber lists: what a send reads instead of the live files.

A spreadsheet that saves `subscribers/<list>.csv` in place while a send streams it
makes the reader see torn rows: people still on the list are skipped and
fragments of two rows become addresses nobody wrote.  So a send reads each list
once, when it is planned, into a private copy whose bytes did not change while
they were read (two reads that agree, with the file's inode, size and modification
time unchanged around them, and no write in the last half second), and plans,
counts and sends from that copy.  The
copy's SHA-256 goes into the ledger with the audience it produced.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Problem, SubscriberListError

if TYPE_CHECKING:
    from .ledger import RecipientRow
    from .rows import RowProblem

ATTEMPTS = 40
PAUSE = 0.25  # seconds between attempts: a spreadsheet's save takes a moment
# A file written less than this long ago may be half-way through a save (truncated, not
# yet rewritten) even if two reads agree: wait until it has been quiet that long.
SETTLE = 0.5


@dataclass(frozen=True)
class ListCopy:
    """One list as it was read: the live file, its frozen copy, the copy's SHA-256."""

    name: str
    source: Path
    copy: Path
    sha256: str
    size: int


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_into(source: Path, dest: Path) -> tuple[str, tuple[int, int, int], tuple[int, int, int]]:
    digest = hashlib.sha256()
    with source.open("rb") as f, dest.open("wb") as out:
        opened = _stamp(os.fstat(f.fileno()))
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
        closed = _stamp(os.fstat(f.fileno()))
    return digest.hexdigest(), opened, closed


class Snapshots:
    """The frozen copies of one send's lists, in a private folder removed by :meth:`close`."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self.copies: dict[str, ListCopy] = {}

    def take(self, name: str, source: Path) -> ListCopy:
        """A stable copy of ``source`` (once per list name; later calls return it)."""
        if name in self.copies:
            return self.copies[name]
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="newsletter-lists-"))
        dest = self._dir / f"{len(self.copies):03d}.csv"
        for attempt in range(ATTEMPTS):
            try:
                before = _stamp(os.stat(source))
                first, opened, closed = _read_into(source, dest)
                again, _, _ = _read_into(source, dest)
                after = _stamp(os.stat(source))
            except FileNotFoundError:  # replaced by a rename this instant: read the new one
                if attempt >= 3:
                    raise SubscriberListError(
                        Problem(message="the list file is missing", path=source)
                    ) from None
                time.sleep(PAUSE)
                continue
            settled = time.time() - after[2] / 1e9 >= SETTLE
            if before == opened == closed == after and first == again and settled:
                copy = ListCopy(name, source, dest, first, after[1])
                self.copies[name] = copy
                return copy
            time.sleep(PAUSE)
        raise SubscriberListError(
            Problem(
                message=f"{source.name} kept changing while it was read "
                f"({ATTEMPTS} tries over {ATTEMPTS * PAUSE:.0f} seconds)",
                path=source,
                hint="finish editing it (save and close the spreadsheet), then send again",
            )
        )

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self.copies.clear()


class FrozenAudience:
    """A send's audience as frozen in the ledger, minus whoever is suppressed by the time
    their batch is formed (the rows are pulled lazily, after each refresh).

    Counts like :class:`newsletter.subscribers.Audience` so the plan and the report
    read both the same way; only ``suppressed`` can be non-zero: the rows were valid,
    unique and selected when the audience was frozen.
    """

    def __init__(
        self, rows: Callable[[], Iterable[RecipientRow]], suppressed: Callable[[str], bool]
    ):
        self._rows = rows
        self._suppressed = suppressed
        self.rows = self.valid = self.suppressed = 0
        self.invalid = self.duplicates = self.overlap = self.filtered_out = 0
        self.problems: list[RowProblem] = []

    def __iter__(self) -> Iterator[RecipientRow]:
        self.rows = self.valid = self.suppressed = 0
        suppressed = self._suppressed
        for r in self._rows():
            self.rows += 1
            if suppressed(r.email):
                self.suppressed += 1
                continue
            self.valid += 1
            yield r

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "valid": self.valid,
            "invalid": 0,
            "duplicates": 0,
            "overlap": 0,
            "filtered_out": 0,
            "suppressed": self.suppressed,
        }
