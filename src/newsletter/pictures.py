"""A photo from someone's computer, made fit for an email: small, upright, and saying nothing
about where it was taken.

A camera photo is 6 MB, 4000 px wide, often stored sideways with an EXIF "rotate me" tag,
and carries the camera's name and the GPS position where it was taken (a photo of a
shelter must not reveal where the shelter is).  :func:`prepare` turns it, with Pillow, into
what every subscriber's phone downloads: turned upright, every metadata block left out,
at most 1,104 px wide (twice the 552 px column, sharp on phones), saved as a progressive
JPEG (photos) or an optimised PNG (transparency, few colours).  The same photo gives the
same bytes on every machine (no clock, no random names; the encoders come pinned with
Pillow), and the file is named by their hash, ``market-3f9a1c2e.jpg``, so a changed photo
never hits a stale cache.

:func:`examine` reads only a picture's header, so a decompression bomb (a small file that
claims 100,000 x 100,000 pixels) is refused before anything is decoded.  Preparing a
camera photo takes a few tenths of a second, so results are kept under
``.newsletter/pictures/`` by the hash of the original: `check`, `build` and `preview`
prepare each photo once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import time
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import write_atomic
from .errors import NewsletterError

if TYPE_CHECKING:
    from PIL import Image as PILImage

EMAIL_WIDTH = 552  # the theme's column, in CSS px
MAX_WIDTH = 2 * EMAIL_WIDTH  # sharp on phones' 2x screens, no heavier than that
MAX_FILE_BYTES = 25_000_000
MAX_PIXELS = 40_000_000
BIG_GIF_BYTES = 1_000_000
JPEG_QUALITY = 82
# Bumped when preparation changes, so that cached results of the old way are not reused.
PREPARATION = "1"
CACHE_DAYS = 60  # a prepared photo not used for this long leaves .newsletter/pictures/

# What Pillow reads that is a picture people make (MPO: the JPEG of many cameras and phones).
ACCEPTED = {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"}
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
_EXTENSIONS.update(BMP="bmp", TIFF="tif")
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}


@dataclass(frozen=True)
class Facts:
    """What a picture's header says, read without decoding it."""

    format: str  # Pillow's name: JPEG, PNG, GIF ...
    width: int  # as shown, after its EXIF rotation
    height: int
    frames: int
    size: int  # bytes of the file

    @property
    def animated(self) -> bool:
        return self.frames > 1


@dataclass(frozen=True)
class Refusal:
    """Why a file cannot go into an email, in words staff can act on."""

    message: str
    hint: str
    code: str


@dataclass(frozen=True)
class Prepared:
    """A picture ready for email: its bytes, its hashed file name and its size."""

    name: str
    data: bytes
    width: int
    height: int


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def examine(data: bytes) -> Facts | Refusal:
    """The picture's format and size from its header, or why it is refused (never decodes)."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_FILE_BYTES:
        return Refusal(
            f"is {megabytes(len(data))}; pictures over {megabytes(MAX_FILE_BYTES)} are refused",
            "save a smaller copy (a photo of 1 to 5 MB is plenty)",
            "picture_too_large",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        return _too_many_pixels(None)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
            return Refusal(
                "is a HEIC photo (an iPhone's own format), which email programs do not show",
                "export it as JPEG: on the phone, share it by mail or save it to Files as "
                "JPEG; on a Mac, open it in Preview and choose File > Export > JPEG",
                "picture_format",
            )
        return Refusal(
            "is not a picture (its content is not JPEG, PNG, GIF or WebP, whatever its name)",
            "export the photo again as JPEG or PNG",
            "not_a_picture",
        )
    with im:
        if im.format not in ACCEPTED:
            return Refusal(
                f"is in {im.format} format, which email programs do not show",
                "save it as JPEG (photos) or PNG (logos, drawings)",
                "picture_format",
            )
        width, height = im.size
        if width * height > MAX_PIXELS:
            return _too_many_pixels((width, height))
        if _orientation(im) in (5, 6, 7, 8):
            width, height = height, width
        return Facts(im.format, width, height, getattr(im, "n_frames", 1), len(data))


def _too_many_pixels(size: tuple[int, int] | None) -> Refusal:
    what = f"{size[0]:,} x {size[1]:,} pixels" if size else "far too many pixels"
    return Refusal(
        f"has {what}; pictures over {MAX_PIXELS // 1_000_000} megapixels are refused "
        "(they can exhaust the computer's memory)",
        f"save a copy about {MAX_WIDTH * 2:,} px wide",
        "picture_too_many_pixels",
    )


def _orientation(im: PILImage.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block: show the picture as stored
        return 1
    return value if isinstance(value, int) else 1


def prepare(data: bytes, stem: str, *, max_width: int = MAX_WIDTH) -> Prepared:
    """The email's copy of a picture (see the module docstring); ValueError if it is damaged.

    Call :func:`examine` first: this decodes the picture.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "GIF" and getattr(im, "n_frames", 1) > 1:
                out, ext = _animated_gif(im, max_width), "gif"
            else:
                out, ext = _still(im, max_width)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot be read to the end ({exc})") from None
    with Image.open(io.BytesIO(out)) as done:
        width, height = done.size
    digest = hashlib.sha256(out).hexdigest()[:8]
    return Prepared(f"{slug(stem)}-{digest}.{ext}", out, width, height)


def _still(im: PILImage.Image, max_width: int) -> tuple[bytes, str]:
    from PIL import Image, ImageOps

    turned = _orientation(im) in (5, 6, 7, 8)
    shown_width = im.height if turned else im.width
    if shown_width > max_width and im.format in ("JPEG", "MPO"):
        # Decode at a reduced scale (a JPEG can): four times less work for a camera photo.
        scale = max_width / shown_width
        im.draft("RGB", (int(im.width * scale) + 1, int(im.height * scale) + 1))
    icc = im.info.get("icc_profile")
    upright = ImageOps.exif_transpose(im) or im
    upright = _to_srgb(upright, icc)
    graphic = im.format not in ("JPEG", "MPO") and (
        _has_transparency(upright) or upright.getcolors(256) is not None
    )
    upright = upright.convert("RGBA" if graphic and _has_transparency(upright) else "RGB")
    if upright.width > max_width:
        height = max(1, round(upright.height * max_width / upright.width))
        upright = upright.resize((max_width, height), Image.Resampling.LANCZOS)
    clean = Image.frombytes(upright.mode, upright.size, upright.tobytes())  # no info, no EXIF
    buf = io.BytesIO()
    if graphic:
        clean.save(buf, "PNG", optimize=True)
        return buf.getvalue(), "png"
    clean.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    return buf.getvalue(), "jpg"


def _has_transparency(im: PILImage.Image) -> bool:
    if im.mode == "P":
        return "transparency" in im.info
    if im.mode in ("RGBA", "LA", "PA"):
        low, _high = im.getchannel("A").getextrema()
        return isinstance(low, int | float) and low < 255
    return "transparency" in im.info


def _to_srgb(im: PILImage.Image, icc: object) -> PILImage.Image:
    """Colours as the photo's profile meant them (a phone's Display P3), in sRGB, the web's
    colours: the profile itself is left out with the rest of the metadata."""
    if not isinstance(icc, bytes) or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        mode = "RGBA" if im.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(im, source, target, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return im  # a broken profile: the colours as stored
    return converted if converted is not None else im


def _animated_gif(im: PILImage.Image, max_width: int) -> bytes:
    from PIL import Image, ImageSequence

    frames: list[PILImage.Image] = []
    durations: list[int] = []
    for frame in ImageSequence.Iterator(im):
        durations.append(int(frame.info.get("duration", 100)))
        still = frame.convert("RGBA")
        if still.width > max_width:
            height = max(1, round(still.height * max_width / still.width))
            still = still.resize((max_width, height), Image.Resampling.LANCZOS)
        frames.append(Image.frombytes("RGBA", still.size, still.tobytes()))
    buf = io.BytesIO()
    frames[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=int(im.info.get("loop", 0)),
        disposal=2,
        optimize=True,
    )
    return buf.getvalue()


def slug(stem: str) -> str:
    """A file name's stem in plain letters: "Mercado Central (2)" -> "mercado-central-2"."""
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return cleaned[:40].rstrip("-") or "picture"


def prepare_cached(
    data: bytes, stem: str, *, max_width: int = MAX_WIDTH, cache_dir: Path | None = None
) -> Prepared:
    """:func:`prepare`, kept under cache_dir by the hash of the original and the settings.

    A cached file unused for :data:`CACHE_DAYS` days is removed when a new one is written
    (a hit marks it used), so the folder holds the photos of recent issues only.
    """
    if cache_dir is None:
        return prepare(data, stem, max_width=max_width)
    from PIL import __version__ as pillow_version

    key = hashlib.sha256(data)
    key.update(f"\0{max_width}\0{PREPARATION}\0{pillow_version}".encode())
    digest = key.hexdigest()[:32]
    for ext in ("jpg", "png", "gif"):
        cached = cache_dir / f"{digest}.{ext}"
        try:
            found = _named(cached.read_bytes(), stem, ext)
            os.utime(cached)
        except FileNotFoundError:
            continue
        except Exception:  # damaged (a disk fault): prepared again below
            with contextlib.suppress(OSError):
                cached.unlink()
            break
        return found
    made = prepare(data, stem, max_width=max_width)
    with contextlib.suppress(OSError):  # a read-only workspace: prepared again next time
        write_atomic(cache_dir / f"{digest}.{made.name.rsplit('.', 1)[1]}", made.data)
        _forget_old(cache_dir)
    return made


def _forget_old(cache_dir: Path) -> None:
    cutoff = time.time() - CACHE_DAYS * 86_400
    for entry in cache_dir.iterdir():
        with contextlib.suppress(OSError):
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()


def _named(out: bytes, stem: str, ext: str) -> Prepared:
    from PIL import Image

    with Image.open(io.BytesIO(out)) as im:
        width, height = im.size
    return Prepared(f"{slug(stem)}-{hashlib.sha256(out).hexdigest()[:8]}.{ext}", out, width, height)


def store_upload(issue_path: Path, filename: str, data: bytes) -> str:
    """Keep a picture picked in the Studio beside the issue; return the ``src`` to write.

    The file goes to ``issues/<issue-id>/`` (kept in git with the issue), named after the
    picked file in plain letters with the extension of what it really is
    (``Mercado Central.JPEG`` -> ``2019-10/mercado-central.jpg``).  It is checked by content
    and size first, written atomically, and never replaces a different picture of the same
    name (``-2`` is added).  A name with a folder in it is refused: nothing is written
    outside the issue's folder.
    """
    name = filename.strip()
    if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise NewsletterError(
            f"{filename!r} is not a plain file name",
            hint="pick a picture file; it is stored in the issue's own folder",
        )
    facts = examine(data)
    if isinstance(facts, Refusal):
        raise NewsletterError(f"{name} {facts.message}", hint=facts.hint)
    issue_id = issue_path.stem
    folder = issue_path.parent / issue_id
    root = issue_path.parent.resolve()
    if not folder.resolve().is_relative_to(root) or folder.resolve() == root:
        raise NewsletterError(
            f"{folder} leads outside {issue_path.parent}; nothing was written",
            hint=f"make {folder} an ordinary folder",
        )
    stem = slug(name.rsplit(".", 1)[0] if "." in name else name)
    ext = _EXTENSIONS.get(facts.format, "img")
    for n in range(1, 1000):
        candidate = folder / (f"{stem}.{ext}" if n == 1 else f"{stem}-{n}.{ext}")
        if candidate.is_symlink():
            continue
        if candidate.is_file() and candidate.read_bytes() == data:
            return f"{issue_id}/{candidate.name}"
        if not candidate.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(candidate, data)
            return f"{issue_id}/{candidate.name}"
    raise NewsletterError(f"too many pictures named {stem} in {folder}", hint="rename some")
