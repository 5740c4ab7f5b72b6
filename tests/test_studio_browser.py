"""The studio in headless Chromium, used as a person would: the real `newsletter studio` process,
the address it prints, controls found by their role and label, and the YAML file it saves.

What is asserted is what a user or a reviewer would see: the file on disk (its values, its
comments, the size of its diff), the messages beside the fields (the same words `check`
prints), the email in the preview frame, and where the keyboard focus goes.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from ruamel.yaml import YAML

from axe import assert_accessible
from browser import browser, offline_page
from conftest import SAMPLE_ISSUE, run_cli

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000


@dataclass
class Studio:
    url: str
    ws: Path
    proc: subprocess.Popen[str]

    @property
    def issue(self) -> Path:
        return self.ws / SAMPLE_ISSUE


def start_studio(ws: Path, *args: str) -> Studio:
    """`newsletter studio ARGS --port 0 --no-open` in `ws`; the URL from the line it prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env["COLUMNS"] = "300"
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "studio", *args, "--port", "0", "--no-open"],
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(60)
    line = first[0] if first else ""
    found = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
    if not found:
        proc.kill()
        pytest.fail(f"`newsletter studio` printed no address: {line!r}")
    return Studio(found.group(0), ws, proc)


@pytest.fixture
def studio(workspace: Path) -> Iterator[Studio]:
    s = start_studio(workspace, SAMPLE_ISSUE)
    try:
        yield s
    finally:
        s.proc.terminate()
        try:
            s.proc.wait(10)
        except subprocess.TimeoutExpired:
            s.proc.kill()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as b:
        yield b


def open_page(chromium: Any, url: str, width: int = 1400) -> Any:
    """The printed address in a fresh browser context, once the form is in place."""
    page = offline_page(chromium, viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    return page


def settle(page: Any) -> None:
    """Wait until no preview is due or on its way (the page marks body[data-preview-busy])."""
    page.wait_for_function("() => !document.body.dataset.previewBusy")


def preview_frame(page: Any) -> Any:
    return page.frame_locator("iframe[title='Email on a desktop']")


def article(page: Any, n: int) -> Any:
    return page.get_by_role("group", name=f"Article {n}", exact=True)


def read_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def changed_lines(before: str, after: str) -> list[str]:
    """The lines a diff shows as removed (-) or added (+)."""
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def messages(page: Any) -> Any:
    """The page's live region for what just happened (saved, reloaded, ...)."""
    return page.get_by_role("status", name="Messages")


def save_with_button(page: Any) -> None:
    settle(page)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(messages(page).filter(has_text="Saved")).to_be_visible()


# -- the tests ----------------------------------------------------------------------------------


def test_a_new_subject_shows_in_the_preview_and_saves_as_a_one_line_diff(
    studio: Studio, chromium: Any
) -> None:
    before = studio.issue.read_text(encoding="utf-8")
    page = open_page(chromium, studio.url)
    assert "?token=" not in page.url  # the token went into a cookie, out of the address bar
    subject = page.get_by_label("Subject", exact=True)
    expect(subject).to_have_value("Mesoamerica & Caribbean Digest — September 2019")
    subject.fill("Our October digest: #migration & more")
    expect(page.get_by_text("37 of 78 characters")).to_be_visible()
    expect(page.get_by_text("Unsaved changes")).to_be_visible()
    expect(
        preview_frame(page).get_by_role("heading", name="Our October digest: #migration & more")
    ).to_be_visible()

    save_with_button(page)
    expect(messages(page)).to_have_text("Saved issues/2019-09.yaml.")
    expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    after = studio.issue.read_text(encoding="utf-8")
    assert read_yaml(studio.issue)["subject"] == "Our October digest: #migration & more"
    # Only the subject line changed; the comments at the top and everything else are as they were.
    assert changed_lines(before, after) == [
        '-subject: "Mesoamerica & Caribbean Digest — September 2019"',
        '+subject: "Our October digest: #migration & more"',
    ]
    assert after.startswith("# Mesoamerica & Caribbean Digest, September 2019.\n")
    assert run_cli("check", SAMPLE_ISSUE, cwd=studio.ws).code == 0
    assert page.js_errors == []


def test_articles_are_added_moved_and_removed_and_saved_in_that_order(
    studio: Studio, chromium: Any
) -> None:
    original = read_yaml(studio.issue)["articles"]
    before = studio.issue.read_text(encoding="utf-8")
    page = open_page(chromium, studio.url)
    expect(page.get_by_role("group", name=re.compile(r"^Article \d+$"))).to_have_count(8)

    page.get_by_role("button", name="Add article").click()
    new = article(page, 9)
    expect(new.get_by_label("Title", exact=True)).to_be_focused()  # typing can start right away
    new.get_by_label("Title", exact=True).fill("A new story from Panama")
    new.get_by_label("Summary", exact=True).fill("What happened in *Panama* this month.")
    new.get_by_label("Article address (https://…)").fill("https://www.example.org/news/panama")
    expect(
        preview_frame(page).get_by_role("heading", name="A new story from Panama")
    ).to_be_visible()

    # Move it up twice: it becomes article 7, and the names follow the new order.
    page.get_by_role("button", name="Move up article 9").click()
    expect(page.get_by_role("button", name="Move up article 8")).to_be_focused()
    page.keyboard.press("Enter")
    expect(article(page, 7).get_by_label("Title", exact=True)).to_have_value(
        "A new story from Panama"
    )
    expect(page.locator("input[name='articles[7].title']")).to_have_value("A new story from Panama")
    expect(article(page, 9).get_by_label("Title", exact=True)).to_have_value(original[7]["title"])

    # Remove the first article; Undo is offered; the form renumbers.
    page.get_by_role("button", name="Remove article 1").click()
    expect(page.get_by_role("button", name=re.compile("^Undo removing article 1"))).to_be_focused()
    expect(page.get_by_role("group", name=re.compile(r"^Article \d+$"))).to_have_count(8)
    expect(article(page, 1).get_by_label("Title", exact=True)).to_have_value(original[1]["title"])
    expect(article(page, 6).get_by_label("Title", exact=True)).to_have_value(
        "A new story from Panama"
    )

    save_with_button(page)
    saved = read_yaml(studio.issue)["articles"]
    titles = [a["title"] for a in saved]
    expected = [a["title"] for a in original[1:6]]
    expected += ["A new story from Panama", original[6]["title"], original[7]["title"]]
    assert titles == expected
    assert saved[5] == {
        "title": "A new story from Panama",
        "summary": "What happened in *Panama* this month.",
        "url": "https://www.example.org/news/panama",
    }
    assert saved[0] == original[1]  # untouched articles keep every value
    after = studio.issue.read_text(encoding="utf-8")
    assert after.split("articles:")[0] == before.split("articles:")[0]  # comments and top kept
    # The removed article's lines are gone and the new one's added; nothing else was rewritten.
    removed = [line for line in changed_lines(before, after) if line.startswith("-")]
    assert len(removed) <= len(before.split("  - title:")[1].splitlines()) + 1
    assert page.js_errors == []


def test_an_invalid_address_gets_checks_message_at_the_field(studio: Studio, chromium: Any) -> None:
    page = open_page(chromium, studio.url)
    expect(page.get_by_role("heading", name="No problems found")).to_be_visible()
    url = article(page, 2).get_by_label("Article address (https://…)")
    url.fill("www.example.org/no scheme")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("heading", name="1 error", exact=True)).to_be_visible()
    described = url.get_attribute("aria-describedby")
    assert described
    message = page.locator(f"#{described.split()[0]}").inner_text()

    # The words are check's: save (a file with errors still saves) and run `newsletter check`.
    save_with_button(page)
    expect(messages(page)).to_contain_text("with 1 error")
    result = run_cli("check", SAMPLE_ISSUE, cwd=studio.ws)
    assert result.code != 0
    printed = result.out + result.err
    assert "articles[2].url" in printed
    [check_line] = [line for line in printed.splitlines() if "articles[2].url" in line]
    check_message = check_line.split("articles[2].url", 1)[1].lstrip(": ").strip()
    assert check_message.startswith("is not a web address")
    assert message == f"Error: {check_message}"

    # The summary links to the field; fixing it clears the message.
    page.get_by_role("link", name=re.compile(r"Article 2, Article address")).click()
    expect(url).to_be_focused()
    url.fill("https://www.example.org/news/2019-09/cross-border-network")
    expect(url).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("heading", name="No problems found")).to_be_visible()
    assert page.js_errors == []


def test_an_outside_edit_while_the_form_has_changes_is_a_conflict_and_keep_both_keeps_both(
    studio: Studio, chromium: Any
) -> None:
    page = open_page(chromium, studio.url)
    page.get_by_label("Subject", exact=True).fill("My unsaved subject")
    settle(page)
    on_disk = studio.issue.read_text(encoding="utf-8").replace(
        "Labour migration, cross-border networks", "Edited in a text editor"
    )
    studio.issue.write_text(on_disk, encoding="utf-8")
    expect(page.get_by_text("The file changed on disk since you opened it")).to_be_visible()
    expect(page.get_by_label("Subject", exact=True)).to_have_value("My unsaved subject")

    page.keyboard.press("Control+s")
    conflict = page.get_by_role("alert").filter(has_text="changed outside the studio")
    expect(conflict).to_be_visible()
    assert studio.issue.read_text(encoding="utf-8") == on_disk  # nothing overwritten
    expect(page.get_by_role("button", name="Keep both")).to_be_focused()
    expect(page.get_by_role("button", name="Reload from disk")).to_be_visible()
    assert_accessible(page, iframes=False)

    page.get_by_role("button", name="Keep both").click()
    expect(messages(page)).to_contain_text("conflict-")
    [copy] = list((studio.ws / "issues").glob("2019-09.conflict-*.yaml"))
    assert read_yaml(copy)["subject"] == "My unsaved subject"
    assert studio.issue.read_text(encoding="utf-8") == on_disk
    # The form now shows the file as it is on disk.
    expect(page.get_by_label("Subject", exact=True)).to_have_value(
        "Mesoamerica & Caribbean Digest — September 2019"
    )
    expect(page.get_by_label("Preview text (shown after the subject in the inbox)")).to_have_value(
        re.compile("^Edited in a text editor")
    )
    expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    assert page.js_errors == []


def test_reload_from_disk_discards_the_forms_changes(studio: Studio, chromium: Any) -> None:
    page = open_page(chromium, studio.url)
    page.get_by_label("Subject", exact=True).fill("Never saved")
    settle(page)
    text = studio.issue.read_text(encoding="utf-8").replace("number: 42", "number: 43")
    studio.issue.write_text(text, encoding="utf-8")
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_role("button", name="Reload from disk").click()
    expect(page.get_by_label("Issue number (optional)")).to_have_value("43")
    expect(page.get_by_label("Subject", exact=True)).not_to_have_value("Never saved")
    assert studio.issue.read_text(encoding="utf-8") == text
    assert list((studio.ws / "issues").glob("*.conflict-*")) == []


def test_a_clean_form_reloads_by_itself_when_the_file_changes(
    studio: Studio, chromium: Any
) -> None:
    page = open_page(chromium, studio.url)
    text = studio.issue.read_text(encoding="utf-8").replace(
        'subject: "Mesoamerica & Caribbean Digest — September 2019"',
        'subject: "Changed by git pull"',
    )
    studio.issue.write_text(text, encoding="utf-8")
    expect(page.get_by_label("Subject", exact=True)).to_have_value("Changed by git pull")
    expect(messages(page)).to_have_text("Reloaded: the file changed on disk.")
    expect(preview_frame(page).get_by_role("heading", name="Changed by git pull")).to_be_visible()
    expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    assert page.js_errors == []


def test_the_keyboard_alone_adds_an_article_switches_views_and_saves(
    studio: Studio, chromium: Any
) -> None:
    page = open_page(chromium, studio.url)
    # Tab from the top of the page: the first stop is the skip link, then Save.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the preview")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus is visible

    add = page.get_by_role("button", name="Add article")
    for _ in range(200):
        page.keyboard.press("Tab")
        if add.evaluate("b => b === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached “Add article”")
    page.keyboard.press("Enter")
    title = article(page, 9).get_by_label("Title", exact=True)
    expect(title).to_be_focused()
    page.keyboard.type("Typed with the keyboard")
    page.keyboard.press("Tab")  # the Summary's toolbar (one stop), then the Summary
    expect(article(page, 9).get_by_role("button", name="Bold")).to_be_focused()
    page.keyboard.press("Tab")
    expect(article(page, 9).get_by_label("Summary", exact=True)).to_be_focused()

    # The preview tabs: arrow keys move between them.
    desktop = page.get_by_role("tab", name="Desktop")
    desktop.focus()
    page.keyboard.press("ArrowRight")
    phone = page.get_by_role("tab", name="Phone")
    expect(phone).to_be_focused()
    expect(phone).to_have_attribute("aria-selected", "true")
    expect(page.locator("iframe[title='Email on a phone (375 px)']")).to_be_visible()
    expect(page.locator("iframe[title='Email on a desktop']")).to_be_hidden()
    page.keyboard.press("End")
    expect(page.get_by_role("tab", name="Plain text")).to_be_focused()
    # The new article has no address yet (an error): the last version without errors is shown.
    expect(page.get_by_text("The preview shows the last version without errors.")).to_be_visible()
    expect(page.get_by_role("tabpanel", name="Plain text")).to_contain_text(
        "8. Mexico and Guatemala exchange best practices"
    )

    title.focus()
    page.keyboard.press("Control+s")
    expect(messages(page).filter(has_text="Saved")).to_be_visible()
    titles = [a["title"] for a in read_yaml(studio.issue)["articles"]]
    assert titles[-1] == "Typed with the keyboard"
    assert page.js_errors == []


def test_the_markdown_toolbar_wraps_the_selection(studio: Studio, chromium: Any) -> None:
    page = open_page(chromium, studio.url)
    closing = page.get_by_label("Closing (optional)")
    closing.fill("Thank you for reading")
    closing.evaluate("t => t.setSelectionRange(10, 13)")  # "for"
    toolbar = page.get_by_role("toolbar", name="Formatting: Closing")
    toolbar.get_by_role("button", name="Bold").click()
    expect(closing).to_have_value("Thank you **for** reading")
    closing.evaluate("t => t.setSelectionRange(0, 5)")
    page.keyboard.press("Control+i")
    expect(closing).to_have_value("*Thank* you **for** reading")
    # The toolbar is one Tab stop; the arrow keys move along it.
    toolbar.get_by_role("button", name="Bold").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(toolbar.get_by_role("button", name="Link")).to_be_focused()
    closing.evaluate("t => t.setSelectionRange(0, 7)")  # "*Thank*"
    toolbar.get_by_role("button", name="Link").click()
    expect(closing).to_have_value("[*Thank*](https://) you **for** reading")
    page.keyboard.type("https://www.example.org/thanks")  # the https:// part was selected
    expect(closing).to_have_value("[*Thank*](https://www.example.org/thanks) you **for** reading")
    email = preview_frame(page)
    expect(email.locator("strong", has_text=re.compile(r"^for$"))).to_be_visible()
    expect(email.get_by_role("link", name="Thank", exact=True)).to_have_attribute(
        "href", re.compile(r"^https://www\.example\.org/thanks")
    )


def test_the_page_passes_axe_in_its_states(studio: Studio, chromium: Any) -> None:
    """axe-core on the page as loaded, with problems shown, on a phone, and as text. The email
    in the preview frames is left out: axe cannot run inside frames that may not run scripts."""
    page = open_page(chromium, studio.url)
    assert_accessible(page, iframes=False)
    article(page, 2).get_by_label("Article address (https://…)").fill("not an address")
    page.get_by_label("Subject", exact=True).fill("x" * 90)  # over the advice: a warning
    expect(page.get_by_role("heading", name=re.compile(r"^1 error"))).to_be_visible()
    settle(page)
    assert_accessible(page, iframes=False)
    narrow = open_page(chromium, studio.url, width=420)
    assert_accessible(narrow, iframes=False)
    save_with_button(page)
    studio.issue.write_text("subject: [unclosed\n", encoding="utf-8")  # not a form any more
    expect(page.get_by_label("Issue file (YAML)")).to_be_visible()
    assert_accessible(page, iframes=False)


def test_a_file_the_form_cannot_show_opens_as_text_and_becomes_a_form_once_fixed(
    workspace: Path, chromium: Any
) -> None:
    issue = workspace / SAMPLE_ISSUE
    good = issue.read_text(encoding="utf-8")
    issue.write_text(good.replace("number: 42", "number: 42\n  oops: [", 1), encoding="utf-8")
    s = start_studio(workspace, SAMPLE_ISSUE)
    try:
        page = open_page(chromium, s.url)
        text = page.get_by_label("Issue file (YAML)")
        expect(text).to_be_visible()
        expect(page.locator("#summary-list")).to_contain_text(re.compile(r"Line \d+: Error"))
        text.fill(good.replace("September 2019", "September 2019 (fixed)", 1))
        expect(page.get_by_role("heading", name="No problems found")).to_be_visible()
        page.keyboard.press("Control+s")
        expect(page.get_by_label("Subject", exact=True)).to_have_value(
            "Mesoamerica & Caribbean Digest — September 2019"
        )
        assert issue.read_text(encoding="utf-8").startswith(
            "# Mesoamerica & Caribbean Digest, September 2019 (fixed).\n"
        )
        assert page.js_errors == []
    finally:
        s.proc.terminate()
        s.proc.wait(10)


def test_what_is_typed_is_shown_as_text_never_run(studio: Studio, chromium: Any) -> None:
    page = open_page(chromium, studio.url)
    hostile = '<img src=x onerror="document.title=1"><!--<script>alert(1)</script>'
    page.get_by_label("Subject", exact=True).fill(hostile)
    expect(preview_frame(page).get_by_role("heading", name=hostile)).to_be_visible()
    save_with_button(page)
    page.reload()
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    expect(page.get_by_label("Subject", exact=True)).to_have_value(hostile)
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 2  # studio.js and the JSON state, nothing more
    assert page.js_errors == []


def test_send_me_a_test_writes_to_the_outbox_with_the_unsaved_subject(
    studio: Studio, chromium: Any
) -> None:
    page = open_page(chromium, studio.url)
    page.get_by_label("Subject", exact=True).fill("Test copy of an unsaved change")
    page.get_by_label("Send a test to").fill("ana.lopez@example.org")
    page.get_by_role("button", name="Send me a test").click()
    result = page.get_by_role("status", name="Test copy")
    expect(result).to_contain_text("outbox")
    [eml] = list((studio.ws / "outbox").rglob("*.eml"))
    assert "Test copy of an unsaved change" in eml.read_text(encoding="utf-8", errors="replace")
    assert "Test copy of an unsaved change" not in studio.issue.read_text(encoding="utf-8")


def test_with_no_issue_the_page_offers_to_create_one(workspace: Path, chromium: Any) -> None:
    (workspace / SAMPLE_ISSUE).unlink()
    s = start_studio(workspace)
    try:
        page = offline_page(chromium, viewport={"width": 1200, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(s.url)
        create = page.get_by_role("button", name=re.compile(r"^Create the issue for \w+ \d{4}$"))
        expect(create).to_be_visible()
        assert_accessible(page, iframes=False)
        create.click()
        expect(page.get_by_label("Subject", exact=True)).to_be_visible()
        [made] = list((workspace / "issues").glob("*.yaml"))
        assert re.fullmatch(r"\d{4}-\d{2}\.yaml", made.name)
    finally:
        s.proc.terminate()
        s.proc.wait(10)


def test_a_page_without_its_session_or_its_studio_says_so(studio: Studio, chromium: Any) -> None:
    page = open_page(chromium, studio.url)
    page.get_by_label("Subject", exact=True).fill("Typed before the studio stopped")
    settle(page)
    studio.proc.terminate()
    studio.proc.wait(10)
    expect(page.get_by_text("The studio is not answering")).to_be_visible()
    expect(page.get_by_label("Subject", exact=True)).to_have_value(
        "Typed before the studio stopped"
    )  # nothing typed is lost from the page

    # A new studio on the same file: this page's cookie is not its token.
    again = start_studio(studio.ws, SAMPLE_ISSUE)
    try:
        page2 = open_page(chromium, again.url)
        page2.context.clear_cookies()
        expect(page2.get_by_role("alert").filter(has_text="session ended")).to_be_visible(
            timeout=TIMEOUT_MS
        )
        expect(page2.get_by_role("alert")).to_contain_text("open the address")
    finally:
        again.proc.terminate()
        again.proc.wait(10)


def test_the_preview_stays_where_the_reader_was_while_typing(studio: Studio, chromium: Any) -> None:
    page = open_page(chromium, studio.url)
    frame = page.locator("iframe[title='Email on a desktop']")
    frame.evaluate("f => f.contentWindow.scrollTo(0, 1500)")
    before = int(page.evaluate("() => document.body.dataset.previewSeq"))
    page.get_by_label("Subject", exact=True).fill("Still reading article three")
    page.wait_for_function(f"() => Number(document.body.dataset.previewSeq) > {before}")
    expect(
        preview_frame(page).get_by_role("heading", name="Still reading article three")
    ).to_be_attached()
    # Where it was (the browser may shift it a little to keep the same lines in view), not on top.
    assert abs(frame.evaluate("f => f.contentWindow.scrollY") - 1500) < 200


def test_going_to_an_articles_fields_shows_that_article_in_the_preview(
    studio: Studio, chromium: Any
) -> None:
    page = open_page(chromium, studio.url)
    title = read_yaml(studio.issue)["articles"][6]["title"]
    article(page, 7).get_by_label("Place (optional)").focus()
    frame = page.locator("iframe[title='Email on a desktop']")
    heading = preview_frame(page).get_by_role("heading", name=title)
    top = heading.evaluate("h => h.getBoundingClientRect().top")
    height = frame.evaluate("f => f.clientHeight")
    assert 0 <= top < height / 2  # near the top of the preview, in view


def test_a_picture_picked_on_this_computer_is_kept_beside_the_issue_and_shown(
    studio: Studio, chromium: Any, tmp_path: Path
) -> None:
    import io

    from PIL import Image

    photo = tmp_path / "Market Day.PNG"
    buf = io.BytesIO()
    Image.new("RGB", (900, 500), (30, 120, 200)).save(buf, format="PNG")
    photo.write_bytes(buf.getvalue())
    page = open_page(chromium, studio.url)
    second = article(page, 2)
    second.get_by_label("Choose a picture from this computer").set_input_files(str(photo))
    src = second.get_by_label(re.compile("^Picture: a file kept with the issue"))
    expect(src).to_have_value("2019-09/market-day.png")
    alt = second.get_by_label("Picture description (alt text)")
    expect(alt).to_be_focused()  # the article had no picture: say what it shows next
    alt.fill("Stalls at the Tuesday market")
    settle(page)
    shown = preview_frame(page).get_by_role("img", name="Stalls at the Tuesday market")
    expect(shown).to_be_visible()
    assert shown.evaluate("img => img.naturalWidth") > 0  # the prepared file, from the studio
    save_with_button(page)
    image = read_yaml(studio.issue)["articles"][1]["image"]
    assert image == {"src": "2019-09/market-day.png", "alt": "Stalls at the Tuesday market"}
    assert (studio.ws / "issues/2019-09/market-day.png").read_bytes() == photo.read_bytes()
    assert page.js_errors == []
