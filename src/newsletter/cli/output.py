"""The CLI's two consoles (stdout, stderr): rich, made on first use, with a plain fast path.

Importing rich and making its Console costs 25-40 ms, a tenth of a `newsletter check`,
and what `check` and `build` print is plain text in the case that matters for speed: an
editor integration or CI reading the output through a pipe, where rich writes no colour.
So :class:`LazyConsole` writes such text itself when rich would write exactly the same
bytes, and hands everything else to a real rich Console, imported then:

* the stream is not a terminal and neither FORCE_COLOR nor TTY_COMPATIBLE is set (rich
  would colour and style), and not on Windows (rich's legacy console there);
* one str, with only the options ``markup``, ``soft_wrap`` and ``end``; markup either off,
  or absent from the text, or the one form ``[red]error[/red]: `` that colours a level;
* no control character but line breaks (rich drops some and expands tabs), and, unless
  ``soft_wrap``, every line printable ASCII and no wider than rich's width (COLUMNS, else
  the terminal on stdin/stdout/stderr, else 80), so that rich would not wrap it;
* ``print_json`` of a JSON text: rich indents it by 2 and writes no colour off a terminal.

Emoji codes are off (``emoji=False``): with them, rich printed `file.yaml:100:3` as
`file.yaml💯3`.  tests/test_cli_output.py compares both paths byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_LEVEL_MARKUP = re.compile(r"\[(red|yellow|green|bold)\]([^\[\]]*)\[/\1\]([^\[\]]*)")
_UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_WIDE_OR_UNSAFE = re.compile(r"[^\x20-\x7e\n]")


def _width() -> int | None:
    """rich's width for a console that is not a terminal (None: let rich decide)."""
    columns = os.environ.get("COLUMNS")
    if columns is not None:
        return int(columns) if columns.isdigit() and int(columns) > 0 else None
    for fd in (0, 1, 2):
        try:
            width = os.get_terminal_size(fd).columns
        except (AttributeError, ValueError, OSError):
            continue
        return width or 80
    return 80


class LazyConsole:
    """Stands for a rich ``Console(stderr=..., highlight=False, emoji=False)``."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._rich: Console | None = None

    @property
    def rich(self) -> Console:
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(stderr=self._stderr, highlight=False, emoji=False)
        return self._rich

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.rich, name, value)

    # rich's Live (a progress bar, a spinner) enters the console it is given.
    def __enter__(self) -> Console:
        return self.rich.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.rich.__exit__(*exc)

    def _plain_stream(self) -> IO[str] | None:
        """The stream, when rich would write to it without colour or style."""
        rich = self._rich
        if rich is not None and (
            getattr(rich, "_file", None) is not None  # redirected by someone
            or getattr(rich, "_live_stack", None)  # a spinner or progress bar owns the screen
            or getattr(rich, "_live", None)  # (the same, in rich before 14)
            or getattr(rich, "_buffer_index", 0)  # inside `with console:`, rich writes at the end
        ):
            return None
        if sys.platform == "win32" or "FORCE_COLOR" in os.environ:
            return None
        if "TTY_COMPATIBLE" in os.environ or "TTY_INTERACTIVE" in os.environ:
            return None
        stream = sys.stderr if self._stderr else sys.stdout
        try:
            if stream.isatty():
                return None
        except (AttributeError, ValueError):
            return None
        return stream

    def print(self, *objects: Any, **options: Any) -> None:
        text = self._plain_text(objects, options)
        stream = self._plain_stream() if text is not None else None
        if text is None or stream is None:
            self.rich.print(*objects, **options)
            return
        stream.write(text + options.get("end", "\n"))
        stream.flush()

    def _plain_text(self, objects: tuple[Any, ...], options: dict[str, Any]) -> str | None:
        """What rich would write for this print off a terminal, or None when unsure."""
        if len(objects) != 1 or type(objects[0]) is not str:
            return None
        if set(options) - {"markup", "soft_wrap", "end"} or type(options.get("end", "")) is not str:
            return None
        text: str = objects[0]
        if options.get("markup", True) and "[" in text:
            found = _LEVEL_MARKUP.fullmatch(text)
            if found is None:
                return None
            text = found.group(2) + found.group(3)
        if _UNSAFE.search(text):
            return None
        if not options.get("soft_wrap", False):
            width = _width()
            if width is None or _WIDE_OR_UNSAFE.search(text):
                return None
            if any(len(line) > width for line in text.split("\n")):
                return None
        return text

    def print_json(self, json_text: str | None = None, **options: Any) -> None:
        stream = self._plain_stream()
        if json_text is None or options or stream is None:
            self.rich.print_json(json_text, **options)
            return
        stream.write(json.dumps(json.loads(json_text), indent=2, ensure_ascii=False) + "\n")
        stream.flush()
