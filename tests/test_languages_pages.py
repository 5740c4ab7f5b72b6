"""The unsubscribe pages in French and Portuguese (issue 12): a reader of a translated issue
whose list says fr or pt-BR lands on a page in their language."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx

from test_server import base_url, keys, token  # noqa: F401  (fixtures)


def _words(workspace: Path, lang: str) -> dict[str, str]:
    labels = tomllib.loads((workspace / "templates" / "pages" / "labels.toml").read_text("utf-8"))
    return {k: str(v) for k, v in labels[lang].items()}


def test_unsubscribe_pages_speak_french_and_portuguese(
    base_url: str,  # noqa: F811
    workspace: Path,
) -> None:
    url = f"{base_url}/u/{token('ana.lopez@example.org')}"
    for typed, lang in (("fr", "fr"), ("pt-BR", "pt"), ("pt", "pt")):
        words = _words(workspace, lang)
        page = httpx.get(f"{url}?lang={typed}", headers={"Accept-Language": "en"})
        assert page.status_code == 200
        assert f'<html lang="{lang}">' in page.text, typed
        assert words["confirm_button"] in page.text
    by_browser = httpx.get(url, headers={"Accept-Language": "fr-CA,fr;q=0.9"})
    assert '<html lang="fr">' in by_browser.text
    done = httpx.post(f"{url}?lang=fr", data={"List-Unsubscribe": "One-Click", "lang": "fr"})
    assert done.status_code == 200
    assert _words(workspace, "fr")["done_heading"] in done.text
