"""Replacing a file all at once: whoever reads it (or a crash) sees the old bytes or the new.

The new content is written to a temporary file (beside the target, or in a folder
the caller names), fsynced, given its permissions and renamed over the target; the
folder is fsynced too, so the rename survives a power cut.  A write that fails or is
abandoned leaves the target as it was and removes its temporary file.  Every writer
that replaces a whole file (a build's outputs, an import into a list, removing
suppressions, the report chart) goes through here, so each gets all of that.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What open() gives a new file; mkstemp makes 0600, and our outputs are for sharing.
DEFAULT_MODE = 0o666 & ~_current_umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename in (or a new file of) `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicFile:
    """A temporary file that replaces `path` on :meth:`commit`, and is removed otherwise.

    ::

        with AtomicFile(path) as out:
            out.handle.write(data)
            out.commit()

    `mode`: the permissions the file ends with (:data:`DEFAULT_MODE` if None).
    `tmp_dir`: where the temporary file is made (beside `path` if None); if that
    folder is on another file system, the rename fails with EXDEV and the file is
    copied once more beside `path` and renamed from there, which is still atomic.
    `prefix`: the temporary file's name starts with it (``.<name>.`` if None), so that
    a cleaner can recognise the files a killed process left behind.
    """

    def __init__(
        self,
        path: Path,
        *,
        mode: int | None = None,
        tmp_dir: Path | None = None,
        prefix: str | None = None,
        suffix: str = ".tmp",
    ) -> None:
        self.path = path
        self.mode = DEFAULT_MODE if mode is None else mode
        self.tmp_dir = tmp_dir
        self.prefix = prefix
        self.suffix = suffix
        self.tmp: Path | None = None
        self._handle: io.BufferedWriter | None = None
        self._text: io.TextIOWrapper | None = None

    @property
    def handle(self) -> io.BufferedWriter:
        """The temporary file, open for writing bytes."""
        if self._handle is None:
            raise RuntimeError("AtomicFile is used outside its `with` block")
        return self._handle

    def text(self) -> io.TextIOWrapper:
        """The temporary file for writing UTF-8 text as given (no newline translation),
        after whatever was written to :attr:`handle` so far."""
        if self._text is None:
            self._text = io.TextIOWrapper(self.handle, encoding="utf-8", newline="")
        return self._text

    def __enter__(self) -> AtomicFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir is not None:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            dir=self.tmp_dir or self.path.parent,
            prefix=self.prefix or f".{self.path.name}.",
            suffix=self.suffix,
        )
        self.tmp = Path(name)
        self._handle = os.fdopen(fd, "wb")
        os.chmod(self.tmp, self.mode)
        return self

    def commit(self) -> None:
        """Flush, fsync and rename the temporary file over `path`; then fsync the folder."""
        handle, tmp = self.handle, self.tmp
        assert tmp is not None
        if self._text is not None:
            self._text.flush()
        handle.flush()
        os.fsync(handle.fileno())
        self._close()
        try:
            os.replace(tmp, self.path)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._replace_across(tmp)
        fsync_dir(self.path.parent)

    def _close(self) -> None:
        if self._text is not None:
            self._text.close()  # and the file under it
        elif self._handle is not None:
            self._handle.close()

    def _replace_across(self, tmp: Path) -> None:
        """`tmp_dir` is on another file system: copy beside the target, rename that."""
        fd, name = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=self.suffix
        )
        beside = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, tmp.open("rb") as copy:
                shutil.copyfileobj(copy, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            shutil.copymode(tmp, beside)
            os.replace(beside, self.path)
        finally:
            beside.unlink(missing_ok=True)

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        """Abandon the temporary file unless :meth:`commit` renamed it."""
        if self._handle is not None and not self._handle.closed:
            with contextlib.suppress(OSError):  # a full disk: the file goes anyway
                self._close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` all at once (see :class:`AtomicFile`)."""
    with AtomicFile(path, mode=mode) as out:
        out.handle.write(data)
        out.commit()
