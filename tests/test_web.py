"""The web pages in a real browser: Debian's chromium, headless, driven by Playwright, against
``rejoinder serve`` running as a process on a real socket.

Skipped where chromium or Playwright is missing, unless ``REJOINDER_REQUIRE_BROWSER=1`` (CI), which
makes a missing browser a failure. ``REJOINDER_SCREENSHOTS=DIR`` saves the README's screenshots.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import DOCTOR_1966, conversation_1966
from serving import ServerProcess

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("REJOINDER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("REJOINDER_REQUIRE_BROWSER") == "1"
SHOTS = os.environ.get("REJOINDER_SCREENSHOTS")

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    if REQUIRED:
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)
if CHROMIUM is None:
    if REQUIRED:
        raise RuntimeError("REJOINDER_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
    pytest.skip("no chromium on PATH (apt-get install chromium)", allow_module_level=True)

HOSTILE = '<script>window.pwned = 1</script> <img src=x onerror="window.pwned = 1"> [click](javascript:window.pwned=1)'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = serve(
        tmp_path_factory.mktemp("web"),
        "arena: [eliza-1966, eliza]\n"
        "bots:\n"
        f"  - {{name: eliza-1966, bot: eliza, options: {{script: '{DOCTOR_1966}'}}}}\n"
        "  - {name: eliza, bot: eliza}\n"
        "  - {name: bank, bot: bank, options: {embedder: hashing}}\n"
        "  - {name: assistant, bot: assistant, options: {max_new_tokens: 400}}\n",
    )
    yield process
    process.stop()


def serve(tmp: Path, config: str) -> ServerProcess:
    """``rejoinder serve`` on ``config`` (the bots prepared before it answers), its database in ``tmp``."""
    path = tmp / "server.yaml"
    path.write_text("prepare: true\n" + config, encoding="utf-8")
    db_url = f"sqlite:///{tmp / 'web.db'}"
    process = ServerProcess(path, db_url)
    process.env["REJOINDER_HOME"] = str(tmp / "home")
    process.wait_ready(timeout=600)
    process.db_url = db_url
    process.tmp = tmp
    return process


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


def store_of(server):
    from rejoinder.store import Store

    return Store(server.db_url)


def visitor_of(page) -> str:
    cookie = next(c for c in page.context.cookies() if c["name"] == "rejoinder_visitor")
    return f"visitor:{cookie['value'].split('.')[0]}"  # the id, without its signature


def open_chat(page, server, bot: str) -> None:
    page.goto(f"{server.url}/?bot={bot}")
    expect(page.locator("#bot")).to_have_value(bot)


def say(page, text: str) -> None:
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")


def last_reply(page):
    return page.locator("#messages .msg.assistant").last


def shoot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))


def test_eliza_gives_the_1966_reply_in_the_browser_and_the_panel_shows_its_rule(page, server):
    open_chat(page, server, "eliza-1966")
    (user, eliza), (user2, eliza2) = conversation_1966()[:2]
    say(page, user)
    expect(page.locator("#messages .msg.user").last).to_have_text(user)
    expect(last_reply(page)).to_contain_text(eliza)
    say(page, user2)
    expect(last_reply(page)).to_contain_text(eliza2)
    expect(page.locator("#panel")).to_contain_text("Rule")
    assert page.locator("#input").evaluate("node => node === document.activeElement")  # ready for the next line


def test_shift_enter_breaks_the_line_and_enter_sends(page, server):
    open_chat(page, server, "eliza")
    page.locator("#input").fill("first line")
    page.locator("#input").press("Shift+Enter")
    page.locator("#input").type("second line")
    assert page.locator("#input").input_value() == "first line\nsecond line"
    page.locator("#input").press("Enter")
    expect(page.locator("#messages .msg.user").last).to_have_text("first line\nsecond line")


def test_an_assistant_reply_streams_and_stops_and_is_kept_as_stopped(page, server):
    open_chat(page, server, "assistant")
    say(page, "Write a long story about a lighthouse keeper and the sea, in many chapters.")
    streaming = page.locator("#messages .msg.streaming .body")
    expect(streaming).not_to_have_text("", timeout=60_000)
    page.locator("#stop").click()
    expect(last_reply(page).locator(".note")).to_have_text("(stopped)", timeout=30_000)
    store = store_of(server)
    conversation = store.list_conversations(user_id=visitor_of(page))[0].id
    deadline = time.monotonic() + 60
    while not store.load_dialogue(conversation).messages:  # committed once the decoding sees the stop
        assert time.monotonic() < deadline, "the stopped reply was never stored"
        time.sleep(0.2)
    reply = store.load_dialogue(conversation).messages[-1]
    assert reply.role == "assistant" and reply.meta["finish_reason"] == "cancelled"
    # the kept reply is what the server had produced when it saw the stop (a few tokens may be
    # ones the aborted page never received): the page then shows the kept version
    expect(last_reply(page).locator(".body")).to_have_text(reply.text, timeout=30_000)
    expect(last_reply(page).locator(".note")).to_have_text("(stopped)")
    assert reply.meta["tokens"] < 400  # stopped before max_new_tokens
    store.close()


def test_the_bank_bot_fills_its_frame_and_the_slot_panel_shows_filled_and_missing(page, server):
    open_chat(page, server, "bank")
    say(page, "I lost my card")
    expect(page.locator("#slots [data-slot=card]")).to_have_class("slot-missing")
    expect(page.locator("#panel")).to_contain_text("lost_card")
    say(page, "my debit card")
    expect(page.locator("#slots [data-slot=card]")).to_have_class("slot-filled")
    expect(page.locator("#slots [data-slot=card]")).to_contain_text("debit")
    expect(page.locator("#slots [data-slot=when]")).to_have_class("slot-missing")
    say(page, "yesterday")
    expect(page.locator("#panel .confirmation")).to_contain_text("debit")
    shoot(page, "chat")


def test_thumbs_down_with_a_comment_is_stored_against_the_reply(page, server):
    open_chat(page, server, "eliza")
    say(page, "I am unhappy")
    reply = last_reply(page)
    expect(reply).not_to_have_class("msg assistant streaming")
    reply.get_by_role("button", name="Bad reply").click()
    expect(reply.get_by_role("button", name="Bad reply")).to_have_attribute("aria-pressed", "true")
    reply.get_by_role("textbox", name="Comment (optional)").fill("too repetitive")
    reply.get_by_role("button", name="Save").click()
    expect(reply.locator(".thanks")).to_have_text("Thank you")
    message_id = reply.get_attribute("data-id")
    store = store_of(server)
    given = {f.kind: f.value for f in store.feedback(message_id=message_id)}
    assert given["rating"] == {"score": -1}
    assert given["comment"]["text"] == "too repetitive"
    assert all(f.user_id == visitor_of(page) for f in store.feedback(message_id=message_id))
    store.close()


def test_regenerate_keeps_both_versions_and_switching_back_records_the_choice(page, server):
    open_chat(page, server, "eliza")
    say(page, "I need some help")
    first = last_reply(page)
    expect(first.locator(".regenerate")).to_be_enabled()
    first_text = first.locator(".body").inner_text()
    first_id = first.get_attribute("data-id")
    first.locator(".regenerate").click()
    expect(last_reply(page).locator(".version")).to_have_text("2/2")
    second_id = last_reply(page).get_attribute("data-id")
    assert second_id != first_id  # a new reply (ELIZA, from the same state, says the same again)
    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(last_reply(page).locator(".version")).to_have_text("1/2")
    expect(last_reply(page).locator(".body")).to_have_text(first_text)
    store = store_of(server)
    choices = store.feedback(kind="choice", message_id=first_id)
    assert choices and choices[-1].value["kept"] == first_id and len(choices[-1].value["of"]) == 2
    store.close()


def test_hostile_markup_in_messages_and_replies_renders_as_text(page, server):
    open_chat(page, server, "eliza")
    page.locator("#new").click()
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)  # the greeting
    visitor = visitor_of(page)
    store = store_of(server)
    from rejoinder.dialogue import Message

    cid = store.create_conversation("eliza", user_id=visitor)
    store.append_turn(cid, [Message("user", HOSTILE, user_id=visitor), Message("assistant", HOSTILE, bot="eliza")],
                      {}, expected_version=0)  # fmt: skip
    store.close()
    page.reload()
    page.locator("#history button").first.click()
    expect(page.locator("#messages .msg.user")).to_have_text(HOSTILE)
    expect(last_reply(page)).to_contain_text("<script>window.pwned = 1</script>")
    expect(last_reply(page)).to_contain_text("[click](javascript:window.pwned=1)")
    say(page, HOSTILE)  # and what ELIZA makes of it, streamed
    expect(page.locator("#messages .msg.user")).to_have_count(2)
    expect(last_reply(page).locator(".actions")).to_be_visible()
    assert page.locator("#messages script, #messages img, #messages [onerror]").count() == 0
    assert page.locator("#messages a[href^='javascript']").count() == 0
    assert page.evaluate("window.pwned") is None


def test_a_cross_site_form_post_and_a_request_without_the_csrf_token_are_refused(page, server):
    page.goto(server.url + "/")  # the visitor and CSRF cookies
    # text/plain sends name=value: the body reads {"bot": "eliza", "x": "="}, a valid request
    hostile = (f'<form id=f method=post enctype="text/plain" action="{server.url}/api/conversations">'
               """<input name='{"bot": "eliza", "x": "' value='"}'></form>"""
               "<script>document.getElementById('f').submit()</script>")  # fmt: skip

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(hostile.encode())

        def log_message(self, *args: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)  # another port: same site, other origin
    threading.Thread(target=other.serve_forever, daemon=True).start()
    store = store_of(server)
    before = len(store.list_conversations(user_id=visitor_of(page), limit=200))
    try:
        with page.expect_response(lambda r: r.url.endswith("/api/conversations")) as caught:
            page.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        assert caught.value.status == 403
        assert "cross-site" in caught.value.text()
    finally:
        other.shutdown()
    page.goto(server.url + "/")
    status = page.evaluate("""async () => (await fetch('/api/conversations', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({bot: 'eliza'})})).status""")
    assert status == 403  # same origin, but without the page's token
    status = page.evaluate("""async () => (await fetch('/api/conversations', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': document.querySelector(
        'meta[name=csrf-token]').content}, body: JSON.stringify({bot: 'eliza'})})).status""")
    assert status == 201
    assert len(store.list_conversations(user_id=visitor_of(page), limit=200)) == before + 1
    store.close()


def test_a_phone_width_page_in_russian_still_chats(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="ru-RU")
    page = context.new_page()
    page.goto(f"{server.url}/?bot=eliza")
    expect(page.locator("#send")).to_have_text("Отправить")
    say(page, "Мне грустно")
    expect(last_reply(page)).not_to_have_text("")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_an_arena_vote_reveals_the_names_and_reaches_the_export_and_the_leaderboard(page, server):
    page.goto(server.url + "/arena")
    expect(page.locator("#votes")).to_be_hidden()  # nothing to vote on before the first replies
    say(page, "I am sad today")
    for side in ("a", "b"):
        expect(page.locator(f"#messages-{side} .msg.assistant").last).not_to_have_text("")
    expect(page.locator("#votes")).to_be_visible()
    assert page.locator("#name-a").inner_text() == "A"  # anonymous until the vote
    shoot(page, "arena")
    page.get_by_role("button", name="A is better").click()
    expect(page.locator("#verdict")).to_have_text("Your vote: A is better")
    names = {page.locator("#name-a").inner_text(), page.locator("#name-b").inner_text()}
    assert {n.split(": ")[1] for n in names} == {"eliza", "eliza-1966"}
    winner = page.locator("#name-a").inner_text().split(": ")[1]
    say(page, "Why am I sad?")  # the battle goes on after the vote
    expect(page.locator("#messages-a .msg.user")).to_have_count(2)

    out = server.tmp / "preferences.jsonl"
    env = {**server.env}
    done = subprocess.run([sys.executable, "-m", "rejoinder.cli", "data", "export", "preferences", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    mine = [r for r in records if r.get("user_id") == visitor_of(page)]
    assert mine and mine[-1]["prompt"][-1] == {"role": "user", "content": "I am sad today"}

    page.goto(server.url + "/leaderboard")
    table = page.locator("#leaderboard")
    expect(table).to_contain_text(winner)
    first = table.locator("tbody tr").first
    expect(first).to_contain_text(winner)
    leaderboard = httpx.get(server.url + "/api/arena/leaderboard").json()
    assert leaderboard["counted"] >= 1
    shoot(page, "leaderboard")


@pytest.fixture(scope="module")
def assistant_arena(tmp_path_factory):
    """A server whose arena is two variants of the assistant: replies long enough to stop."""
    process = serve(
        tmp_path_factory.mktemp("web-arena"),
        "arena: [assistant, assistant-warm]\n"
        "bots:\n"
        "  - {name: assistant, bot: assistant, options: {max_new_tokens: 400}}\n"
        "  - {name: assistant-warm, bot: assistant, options: {max_new_tokens: 400, temperature: 1.0}}\n",
    )
    yield process
    process.stop()


def test_stopping_an_arena_turn_keeps_both_sides_as_stopped_and_the_vote_still_counts(page, assistant_arena):
    server = assistant_arena
    page.goto(server.url + "/arena")
    say(page, "Write a long story about a lighthouse keeper and the sea, in many chapters.")
    for side in ("a", "b"):
        expect(page.locator(f"#messages-{side} .msg.streaming .body")).not_to_have_text("", timeout=60_000)
    expect(page.locator("#stop")).to_be_visible()
    page.locator("#input").press("Escape")  # the keyboard's stop; the button does the same
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#send")).to_be_enabled(timeout=30_000)  # once both stopped replies are stored
    store = store_of(server)
    battle = store.battles(user_id=visitor_of(page))[0]
    for side, cid in (("a", battle.conversation_a), ("b", battle.conversation_b)):
        reply = store.load_dialogue(cid).messages[-1]
        assert reply.role == "assistant" and reply.meta["finish_reason"] == "cancelled"
        shown = page.locator(f"#messages-{side} .msg.assistant").last
        expect(shown.locator(".body")).to_have_text(reply.text)  # the kept version, once both are stored
        expect(shown.locator(".note")).to_have_text("(stopped)")
    expect(page.locator("#votes")).to_be_visible()
    page.get_by_role("button", name="Tie").click()
    expect(page.locator("#verdict")).to_have_text("Your vote: Tie")
    assert store.battle(battle.id).vote == "tie"


def test_the_pages_load_nothing_from_elsewhere(page, server):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in ("/", "/arena", "/leaderboard"):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(server.url) for url in requested), requested
