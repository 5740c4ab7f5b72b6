"""An issue's own picture files: checked at the line of their ``src``, prepared, published.

An article's ``image.src`` (or ``organisation.logo_url``) may name a file instead of an
address.  Here each such file is read, refused with a reason at the line that names it
(missing, not a picture, too large: pictures.py), warned about (narrower than the column:
blurry; an animated GIF over 1 MB), and prepared for email.  The prepared copies are
written by `build` to ``build/<issue>/images/`` and published by `archive` under
``<archive.base_url><issue>/images/``; the email points at that address, so the archive
must be published before the send (sent_pictures.py checks it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Workspace
from .errors import Problem, format_path
from .issue import Parsed
from .picture_src import is_remote, local_file, picture_src
from .pictures import (
    BIG_GIF_BYTES,
    EMAIL_WIDTH,
    MAX_WIDTH,
    Prepared,
    Refusal,
    examine,
    megabytes,
    prepare_cached,
)

IMAGES_FOLDER = "images"
LOGO_FIELD = "organisation.logo_url"


@dataclass(frozen=True)
class Published:
    """A local picture as the email shows it: its prepared copy and the address it will have."""

    src: str  # as written in the issue (or newsletter.toml)
    prepared: Prepared
    url: str  # <archive.base_url><issue>/images/<name>


@dataclass
class IssuePictures:
    """The local pictures of one issue (by ``src`` as written), and what is wrong with them."""

    articles: dict[str, Published] = field(default_factory=dict)
    logo: Published | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def files(self) -> dict[str, bytes]:
        """File name -> bytes, for build/<issue>/images/ and the archive."""
        found = [*self.articles.values(), *([self.logo] if self.logo else [])]
        return {p.prepared.name: p.prepared.data for p in sorted(found, key=_name)}

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.articles.values()] + ([self.logo.url] if self.logo else [])


def _name(p: Published) -> str:
    return p.prepared.name


def images_url(ws: Workspace, issue_id: str) -> str:
    """Where `archive` publishes an issue's pictures (ends with /)."""
    base = str(ws.config.archive.base_url).rstrip("/")
    return f"{base}/{issue_id}/{IMAGES_FOLDER}/"


def media_type(name: str) -> str:
    """The Content-Type of a prepared picture, by the extension `pictures` gave it."""
    kind = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}
    return kind.get(name.rsplit(".", 1)[-1], "application/octet-stream")


def shown_here(html: str, ws: Workspace, issue_id: str, prefix: str = "/images/") -> str:
    """The HTML with the issue's pictures taken from `prefix` (the preview's own server)
    instead of their published address, where they are not yet before `archive`."""
    return html.replace(images_url(ws, issue_id), prefix)


def gather(ws: Workspace, parsed: Parsed, *, prepare: bool = True) -> IssuePictures:
    """Check every local picture of the issue and its logo; prepare those that pass.

    ``prepare=False`` only examines (for an issue file with errors, which is not built).
    """
    out = IssuePictures()
    run = _Gathering(ws.root, images_url(ws, parsed.issue_id), ws.state_dir / "pictures", prepare)
    articles = parsed.values.get("articles")
    for i, art in enumerate(articles if isinstance(articles, list) else []):
        image = art.get("image") if isinstance(art, dict) else None
        src = image.get("src") if isinstance(image, dict) else None
        if not isinstance(src, str) or not src.strip() or is_remote(src.strip()):
            continue
        try:
            src = str(picture_src(src))
        except ValueError:
            continue  # the issue's model says what is wrong with it
        width = image.get("width") if isinstance(image, dict) else None
        shown = width if isinstance(width, int) and 16 <= width <= EMAIL_WIDTH else EMAIL_WIDTH
        field_path = format_path(("articles", i, "image", "src"))

        def problem(message: str, field_path: str = field_path, **kw: Any) -> Problem:
            return parsed.problem(field_path, message, **kw)

        done = run.one(parsed.path.parent, src, shown, problem)
        if done is not None:
            out.articles[src] = done
    logo = ws.config.organisation.logo_url
    if logo and not is_remote(logo):

        def logo_problem(message: str, **kw: Any) -> Problem:
            return Problem(message=message, path=ws.config_path, field=LOGO_FIELD, **kw)

        out.logo = run.one(ws.root, logo, ws.config.organisation.logo_width, logo_problem)
    out.problems = run.problems
    return out


@dataclass
class _Gathering:
    root: Path  # the workspace: a picture outside it is in nobody else's checkout
    base: str  # the published images/ address
    cache: Path
    prepare: bool
    problems: list[Problem] = field(default_factory=list)

    def one(self, folder: Path, src: str, shown: int, problem: Any) -> Published | None:
        """One local picture: its problems noted; its published copy if it can be made."""
        problems = self.problems
        path = local_file(folder, src)
        if not path.resolve().is_relative_to(self.root.resolve()):
            problems.append(
                problem(
                    f"{src} is outside the newsletter's folder, so it is not kept in git with "
                    "the issue (and nobody else's build would find it)",
                    hint="copy the picture into the issue's folder (issues/<issue>/)",
                    code="picture_outside",
                )
            )
            return None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(
                problem(
                    f"the picture file {src} is not there (looked for {path})",
                    hint="check the spelling, or put the file there; a path is relative to "
                    "the folder of the file that names it",
                    code="picture_missing",
                )
            )
            return None
        except IsADirectoryError:
            problems.append(problem(f"{src} is a folder, not a picture", code="picture_missing"))
            return None
        except OSError as exc:
            problems.append(
                problem(f"{src} cannot be read: {exc.strerror}", code="picture_missing")
            )
            return None
        return self._checked(src, path, data, shown, problem)

    def _checked(
        self, src: str, path: Path, data: bytes, shown: int, problem: Any
    ) -> Published | None:
        problems = self.problems
        facts = examine(data)
        if isinstance(facts, Refusal):
            problems.append(problem(f"{src} {facts.message}", hint=facts.hint, code=facts.code))
            return None
        if facts.width < shown:
            problems.append(
                problem(
                    f"{src} is {facts.width} px wide; the email shows it {shown} px wide, "
                    "so it will look blurry",
                    hint=f"use a picture at least {shown} px wide ({2 * shown} px is sharp on phones)",
                    severity="warning",
                    code="picture_narrow",
                )
            )
        if facts.animated and facts.format == "GIF" and facts.size > BIG_GIF_BYTES:
            problems.append(
                problem(
                    f"{src} is an animated GIF of {megabytes(facts.size)}; every subscriber "
                    "downloads all of it, slowly on a phone",
                    hint="use a still picture, or a shorter or smaller animation (under 1 MB)",
                    severity="warning",
                    code="picture_heavy_gif",
                )
            )
        if not self.prepare:
            return None
        try:
            made = prepare_cached(
                data, path.stem, max_width=min(MAX_WIDTH, 2 * shown), cache_dir=self.cache
            )
        except ValueError as exc:
            problems.append(
                problem(f"{src} {exc}", hint="export the picture again", code="picture_damaged")
            )
            return None
        return Published(src, made, self.base + made.name)


def picture_view(image: Any, pictures: IssuePictures | None) -> dict[str, Any] | None:
    """What the theme's ``article.image`` holds: src (an address), alt and width in px.

    A local picture is shown by its published address, as wide as the column (or the
    ``width`` given), or its own width when it is narrower.
    """
    if image is None:
        return None
    published = pictures.articles.get(image.src) if pictures else None
    if published is None:
        return {"src": image.src, "alt": image.alt, "width": image.width}
    width = min(image.width or EMAIL_WIDTH, published.prepared.width)
    return {"src": published.url, "alt": image.alt, "width": width}


def logo_view(logo_url: str | None, pictures: IssuePictures | None) -> str | None:
    if not logo_url:
        return None
    if pictures is not None and pictures.logo is not None:
        return pictures.logo.url
    return logo_url
