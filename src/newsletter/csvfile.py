"""Reading the CSV files people keep (subscriber lists, the suppression list), row by row.

Lists come from spreadsheets and CRM exports, so the reader accepts what Excel and
friends write (UTF-8 with or without BOM, `,` or `;` or tab, quoted fields, CRLF,
blank lines, stray spaces) and refuses, with the line and byte, what it cannot read
without guessing (another encoding, an unclosed quote that would swallow rows).

Nothing here holds a whole file in memory, and nothing here judges addresses
(:mod:`newsletter.addresses`) or builds subscribers (:mod:`newsletter.rows`).
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .errors import Problem, SubscriberListError
from .words import plural

DELIMITERS = (",", ";", "\t")
RESAVE_HINT = "open it in your spreadsheet and save it again as 'CSV UTF-8 (comma delimited)'"

# Header spellings seen in exports (Mailchimp "Email Address", Excel "E-mail", ...),
# compared after lower-casing and turning spaces and hyphens into underscores.
_ALIASES: dict[str, str] = {
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "e_mail_address": "email",
    "name": "name",
    "full_name": "name",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "language": "language",
    "lang": "language",
    "tags": "tags",
    "tag": "tags",
    "subscribed_at": "subscribed_at",
    "consent": "consent",
    # The region's other languages (accents are dropped before matching).
    "correo": "email",
    "correo_electronico": "email",
    "courriel": "email",
    "adresse_email": "email",
    "adresse_e_mail": "email",
    "nombre": "name",
    "nombre_completo": "name",
    "nom": "name",
    "nom_complet": "name",
    "nome": "name",
    "nome_completo": "name",
    "primer_nombre": "first_name",
    "prenom": "first_name",
    "primeiro_nome": "first_name",
    "idioma": "language",
    "langue": "language",
    "lingua": "language",
    "etiquetas": "tags",
    "etiquettes": "tags",
}
# The columns with a meaning; any other column becomes a Subscriber attribute.
KNOWN_COLUMNS = ("email", "name", "first_name", "language", "tags", "subscribed_at", "consent")


@dataclass(frozen=True)
class CsvLayout:
    """What the header line told us; `import` writes new rows in the same shape."""

    path: Path
    delimiter: str
    header: tuple[str, ...]  # as written (trimmed)
    canonical: tuple[str | None, ...]  # known column name or None (an attribute)
    line_ending: str
    bom: bool

    def index(self, column: str) -> int | None:
        try:
            return self.canonical.index(column)
        except ValueError:
            return None


def list_error(
    path: Path, line: int | None, message: str, hint: str | None = None, field: str | None = None
) -> SubscriberListError:
    """The error about a list (or the suppression file) that the CLI prints as one paragraph."""
    return SubscriberListError(
        Problem(message=message, path=path, line=line, field=field, hint=hint)
    )


def _check_encoding(path: Path) -> None:
    """Refuse anything that is not UTF-8 before a single row is used.

    Done up front (a fast C-level pass) so that a send never starts on the first
    half of a list and then stops on a Latin-1 byte in the second half.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines_before = 0
    with path.open("rb") as handle:
        first = handle.read(4)
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise list_error(
                path, 1, "the file is UTF-16 ('Unicode text'), not UTF-8", hint=RESAVE_HINT
            )
        if first in (b"PK\x03\x04", b"\xd0\xcf\x11\xe0"):  # .xlsx (a zip), or an old .xls
            raise list_error(
                path,
                None,
                "this is a spreadsheet workbook (Excel, LibreOffice), not a CSV file",
                hint="open it and use Save As… 'CSV UTF-8 (comma delimited)', then use that file",
            )
        handle.seek(0)
        while True:
            chunk = handle.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = lines_before + chunk.count(b"\n", 0, exc.start) + 1
                line_start = chunk.rfind(b"\n", 0, exc.start) + 1
                byte = chunk[exc.start]
                column = exc.start - line_start + 1 if line_start or lines_before else None
                where = f"byte {column} of the line" if column else "this line"
                guess = _guess_encoding(byte)
                raise list_error(
                    path,
                    line,
                    f"the file is not UTF-8: {where} is 0x{byte:02X}{guess}",
                    hint=RESAVE_HINT,
                ) from None
            if not chunk:
                return
            lines_before += chunk.count(b"\n")


def _guess_encoding(byte: int) -> str:
    if 0x80 <= byte <= 0x9F:
        return " (probably Windows-1252, e.g. from Excel 'CSV (comma delimited)')"
    if byte >= 0xA0:
        return f" (in Latin-1 that is {bytes([byte]).decode('latin-1')!r})"
    return ""


def _canonical(name: str) -> str | None:
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    key = re.sub(r"[\s\-]+", "_", plain.strip().lower())
    return _ALIASES.get(key)


def _read_header(path: Path, first_line: str, number: int = 1) -> CsvLayout:
    """Pick the delimiter whose split of the header has an `email` column."""
    line_ending = "\r\n" if first_line.endswith("\r\n") else "\n"
    text = first_line.lstrip("\ufeff").rstrip("\r\n")
    best: list[str] = []
    for delimiter in DELIMITERS:
        try:
            names = next(csv.reader([text], delimiter=delimiter, strict=True), [])
        except csv.Error:
            continue
        names = [n.strip() for n in names]
        canonical = [_canonical(n) for n in names]
        if "email" in canonical:
            _check_unique_columns(path, number, names, canonical)
            return CsvLayout(
                path,
                delimiter,
                tuple(names),
                tuple(canonical),
                line_ending,
                first_line.startswith("\ufeff"),
            )
        if len(names) > len(best):
            best = names
    if not text.strip():
        raise list_error(
            path,
            1,
            "the file is empty: the first line must be a header such as 'email,name,language'",
            field="email",
        )
    found = ", ".join(repr(n) for n in best) if best else "none"
    hint = "the first line must name the columns and one of them must be 'email'"
    if "@" in text:
        hint = (
            "the first line looks like an address, not a header: insert a first line "
            "such as 'email,name'"
        )
    elif len(best) <= 1:
        hint += "; columns must be separated by ',' or ';'"
    raise list_error(
        path, number, f"no 'email' column; columns found: {found}", hint=hint, field="email"
    )


def _check_unique_columns(
    path: Path, number: int, names: list[str], canonical: list[str | None]
) -> None:
    seen: dict[str, int] = {}
    for i, (name, known) in enumerate(zip(names, canonical, strict=True)):
        key = known or name
        if not key:
            continue
        if key in seen:
            j = seen[key]
            raise list_error(
                path,
                number,
                f"columns {j + 1} ({names[j]!r}) and {i + 1} ({name!r}) both mean {key!r}",
                hint="rename or delete one of them",
                field=key,
            )
        seen[key] = i


def _header(path: Path, handle: TextIO) -> tuple[int, CsvLayout]:
    """The header is the first non-blank line (some exports start with an empty one)."""
    number = 1
    line = handle.readline()
    while line and not line.lstrip("\ufeff").strip():
        number += 1
        line = handle.readline()
    if number > 1 and line.startswith("\ufeff"):
        line = line[1:]
    return number, _read_header(path, line, number)


def read_layout(path: Path) -> CsvLayout:
    """The header of a list (encoding checked first); raises SubscriberListError."""
    _check_encoding(path)
    with path.open(encoding="utf-8", newline="") as handle:
        return _header(path, handle)[1]


def iter_rows(path: Path) -> Iterator[tuple[CsvLayout, int, list[str]]]:
    """(layout, first line of the row, trimmed fields) for every non-blank data row.

    Raises SubscriberListError for an unreadable file before yielding anything
    (encoding, header), and for an unclosed quote at the row where it opens.
    """
    try:
        _check_encoding(path)
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise list_error(path, None, "file not found") from None
    except IsADirectoryError:
        raise list_error(path, None, "is a folder, not a CSV file") from None
    with handle:
        header_line, layout = _header(path, handle)
        reader = csv.reader(handle, delimiter=layout.delimiter, strict=True)
        last = header_line
        while True:
            start = last + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise list_error(
                    path,
                    start,
                    f"cannot read the row that starts here ({exc})",
                    hint='a double quote (") opened in this row is not closed where it should '
                    'be; quote whole values, and write a quote inside a value as ""',
                ) from None
            last = reader.line_num + header_line
            if last > start:
                _check_runaway_quote(path, start, fields, layout)
            stripped = [f.strip() for f in fields]
            if any(stripped):
                yield layout, start, stripped


_LOOKS_LIKE_ADDRESS = re.compile(r'\s*"?[^\s@"]+@[^\s@"]+\.[^\s@"]+"?\s*')


def _check_runaway_quote(path: Path, line: int, fields: list[str], layout: CsvLayout) -> None:
    """A multi-line value whose lines look like whole rows (an address in the email
    column) is a quote left open: refuse rather than lose those subscribers."""
    email_at = layout.canonical.index("email")
    for value in fields:
        if "\n" in value or "\r" in value:
            rest = value.splitlines()[1:]
            if any(
                len(parts) > email_at and _LOOKS_LIKE_ADDRESS.fullmatch(parts[email_at])
                for parts in (part.split(layout.delimiter) for part in rest)
            ):
                raise list_error(
                    path,
                    line,
                    "a quoted value that starts in this row runs over the next "
                    f"{plural(len(rest), 'line')}, which look like other subscribers",
                    hint='a double quote (") is missing or extra in this row; fix it so no '
                    "subscriber is swallowed",
                )
