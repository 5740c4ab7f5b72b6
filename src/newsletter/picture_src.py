"""Where a picture comes from: an https address, or a file kept in git beside the issue.

Staff have photos on their computer, not at a web address, so an article's ``image.src``
(and ``organisation.logo_url`` in newsletter.toml) may name a file: ``2019-10/market.jpg``,
relative to the issue file's folder (the logo: to newsletter.toml's folder).  `build`
prepares such a file for email (pictures.py) and the email points at its published copy
in the archive.  This module only tells the two kinds apart and validates how they are
written; it imports no image library, so reading an issue stays fast.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated

from pydantic import BeforeValidator, HttpUrl, TypeAdapter, ValidationError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_URL = TypeAdapter(HttpUrl)


def is_remote(src: str) -> bool:
    """An address (https://…) rather than a file of the workspace."""
    return bool(_SCHEME.match(src)) and not _WINDOWS_DRIVE.match(src)


def picture_src(value: object) -> object:
    """A web address is validated as one; anything else must be a relative file path."""
    if not isinstance(value, str):
        return value  # the str validator says "must be text"
    text = value.strip()
    if not text:
        return text  # min_length says "is empty"
    if text.startswith("//") or text.lower().startswith(("http//", "https//", "www.")):
        raise ValueError("is not a web address (it must start with https://)")
    if _WINDOWS_DRIVE.match(text) or text.startswith(("/", "\\", "~")):
        raise ValueError(
            "is a place on one computer, which the email cannot reach; copy the picture "
            "into the issue's folder (issues/<issue>/) and write its path from there, "
            "e.g. 2019-10/market.jpg"
        )
    if is_remote(text):
        if not text.lower().startswith(("http://", "https://")):
            raise ValueError("must be a web address starting with https:// or a picture file")
        try:
            return str(_URL.validate_python(text))
        except ValidationError:
            raise ValueError("is not a web address (it must start with https://)") from None
    if ":" in text or any(ord(c) < 32 or ord(c) == 127 for c in text) or "%" in text:
        raise ValueError("is neither a web address (https://...) nor a picture file's path")
    if "\\" in text:
        text = text.replace("\\", "/")  # written on Windows; git and the web use /
    return str(PurePosixPath(text))


PictureSrc = Annotated[str, BeforeValidator(picture_src)]
"""An https address, or a picture file's path relative to the file that names it."""


def local_file(base_dir: Path, src: str) -> Path:
    """The file a local ``src`` names, relative to the folder of the file that names it."""
    return base_dir / Path(*PurePosixPath(src).parts)
