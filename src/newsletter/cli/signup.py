"""`newsletter signup-form`: the sign-up form as an HTML snippet for the organisation's website.

The snippet posts to `newsletter serve`'s ``/subscribe`` (at ``send.unsubscribe_url``),
which answers with its own "check your inbox" page; it carries the same fields as the
page the server shows (``GET /subscribe``), marked ``form=embedded`` so that the consent
record says where the reader agreed.
"""

from __future__ import annotations

import html
from typing import Annotated

import typer

from ..errors import ConfigError
from . import app, console, state
from .plain_help import PlainHelp


def snippet(
    action: str,
    list_name: str,
    lang: str,
    words: dict[str, str],
    consent: str,
    topics: list[tuple[str, str]],
    languages: list[tuple[str, str]],
) -> str:
    """The form's HTML: labelled fields, an unticked consent box, a hidden honeypot."""
    e = html.escape
    n = f"nl-{e(list_name)}"
    out = [
        f'<form method="post" action="{e(action)}" class="newsletter-signup" lang="{e(lang)}">',
        f'  <input type="hidden" name="list" value="{e(list_name)}">',
        f'  <input type="hidden" name="lang" value="{e(lang)}">',
        '  <input type="hidden" name="form" value="embedded">',
        f'  <p><label for="{n}-email">{e(words["subscribe_email"])}</label><br>',
        f'  <input type="email" id="{n}-email" name="email" required autocomplete="email"'
        ' maxlength="254"></p>',
        f'  <p><label for="{n}-name">{e(words["subscribe_name"])} '
        f"{e(words['subscribe_optional'])}</label><br>",
        f'  <input type="text" id="{n}-name" name="name" autocomplete="name" maxlength="100"></p>',
        f'  <p><label for="{n}-language">{e(words["subscribe_language"])}</label><br>',
        f'  <select id="{n}-language" name="language">',
        *(
            f'    <option value="{e(code)}" lang="{e(code)}"'
            f"{' selected' if code == lang else ''}>{e(label)}</option>"
            for code, label in languages
        ),
        "  </select></p>",
    ]
    if topics:
        out.append(f"  <fieldset><legend>{e(words['subscribe_topics'])}</legend>")
        for i, (tag, label) in enumerate(topics, 1):
            out.append(
                f'    <input type="checkbox" id="{n}-topic-{i}" name="topic" value="{e(tag)}">'
                f' <label for="{n}-topic-{i}">{e(label)}</label><br>'
            )
        out.append("  </fieldset>")
    out += [
        f'  <p><input type="checkbox" id="{n}-consent" name="consent" value="yes" required>',
        f'  <label for="{n}-consent">{e(consent)}</label></p>',
        '  <div aria-hidden="true" style="position:absolute;left:-10000px;width:1px;height:1px;'
        'overflow:hidden">',
        f'    <label for="{n}-website">{e(words["subscribe_trap"])}</label>',
        f'    <input type="text" id="{n}-website" name="website" tabindex="-1" autocomplete="off">',
        "  </div>",
        f'  <p><button type="submit">{e(words["subscribe_button"])}</button></p>',
        "</form>",
    ]
    return "\n".join(out) + "\n"


@app.command("signup-form", cls=PlainHelp)
def signup_form(
    list_name: Annotated[
        str, typer.Option("--list", metavar="LIST", help="A list named in [signup] lists.")
    ],
    lang: Annotated[
        str, typer.Option("--lang", metavar="LANG", help="Language of the form (en, es, fr, pt).")
    ] = "en",
) -> None:
    """Print the sign-up form as HTML to paste into a web page.

    It posts to `newsletter serve` at send.unsubscribe_url; the [signup] table of
    newsletter.toml says which lists, topics and consent text it offers.
    """
    from ..server.pages import Pages

    ws = state.workspace()
    settings = ws.config.signup
    if settings is None:
        raise ConfigError(
            "newsletter.toml has no [signup] table",
            key="signup",
            hint="add [signup] with lists, consent_version and [signup.consent] (see the README)",
        )
    if list_name not in settings.lists:
        raise ConfigError(
            f"--list {list_name}: not a list open to sign-ups",
            key="signup.lists",
            hint=f"signup.lists has: {', '.join(settings.lists)}",
        )
    pages = Pages.load(ws)
    code = pages.pick_language(lang)
    words = pages.labels[code]
    org = ws.config.organisation.name
    action = str(ws.config.send.unsubscribe_url).rstrip("/") + "/subscribe"
    text = snippet(
        action,
        list_name,
        code,
        {k: v.replace("{org}", org) for k, v in words.items()},
        settings.consent_text(code).replace("{org}", org),
        [(tag, settings.topic_name(tag, code)) for tag in settings.topics],
        [(c, w.get("language_name", c)) for c, w in pages.labels.items()],
    )
    console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
