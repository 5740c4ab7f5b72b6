"""Before a real send: is every local picture of the issue at the address the email shows?

An issue's own picture files are published with the archive (`newsletter archive`, then
copied to the web server), and the email points at them there.  Sent before that, every
subscriber would get an email full of broken pictures, and a sent email cannot be
corrected.  So a send that leaves the machine (not the outbox) first asks for each of
them, and refuses, listing the missing ones, until they answer.  ``--skip-image-check``
is for those who publish the pictures some other way.
"""

from __future__ import annotations

from collections.abc import Iterable

from .build import BuiltIssue
from .errors import NewsletterError
from .linkcheck import DEFAULT_TIMEOUT, Target, check_all

# What does not stop a reader's phone from showing the picture.
_HARMLESS = {"moved_permanently", "link_leaves_https"}


def missing_pictures(urls: Iterable[str], *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Those of the published addresses that do not answer (in the order given)."""
    wanted = list(dict.fromkeys(urls))
    results = check_all([Target(url) for url in wanted], timeout=timeout)
    return [
        url for url in wanted if any(f.code not in _HARMLESS for f in results.get(Target(url), []))
    ]


def refuse_unpublished(builds: Iterable[BuiltIssue], *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raise (listing them) when a local picture of the issue (or of a translation sent
    with it) is not at its published address yet."""
    builds = list(builds)
    urls = [url for built in builds for url in built.pictures.urls]
    if not urls:
        return
    missing = missing_pictures(urls, timeout=timeout)
    if not missing:
        return
    listed = "\n".join(f"  {url}" for url in missing)
    raise NewsletterError(
        f"{builds[0].issue_id}: {len(missing)} of the issue's pictures "
        f"{'is' if len(missing) == 1 else 'are'} not on the web yet, so subscribers would "
        f"see broken pictures; nothing was sent:\n{listed}",
        hint="run `newsletter archive` and publish the archive-site folder on the web server "
        "first (the email shows the pictures from there); if you publish them another way, "
        "add --skip-image-check",
    )
