"""The web chat's and the arena's HTTP API over a real socket: feedback, versions, blind battles,
the leaderboard, the CSRF guard, visitors and logging in with a key."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import DOCTOR_1966
from serving import Running, free_port


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from rejoinder.server import ServedBot, ServerConfig
    from rejoinder.store import Store

    tmp = tmp_path_factory.mktemp("web-api")
    bots = [ServedBot("eliza", "eliza"), ServedBot("eliza-1966", "eliza", {"script": str(DOCTOR_1966)}),
            ServedBot("eliza-ru", "eliza-ru")]  # fmt: skip
    store = Store(f"sqlite:///{tmp / 'web.db'}")
    config = ServerConfig(port=free_port(), bots=bots, arena=["eliza", "eliza-1966"], arena_daily_cap=2, prepare=False)
    running = Running(config, store)
    running.store = store
    yield running
    running.stop()
    store.close()


def browser(web) -> httpx.Client:
    """A client that behaves as the page's script does: cookies from the page, the token sent back."""
    client = httpx.Client(base_url=web.url, timeout=30)
    page = client.get("/")
    assert page.status_code == 200
    client.headers["X-CSRF-Token"] = client.cookies["rejoinder_csrf"]
    return client


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    out, name = [], "message"
    for line in response.text.splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            out.append((name, json.loads(line[5:])))
    return out


def test_the_chat_page_sets_a_visitor_and_a_csrf_cookie_and_loads_only_its_own_files(web):
    client = httpx.Client(base_url=web.url)
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert {"rejoinder_csrf", "rejoinder_visitor"} <= set(client.cookies)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text.replace(web.url, "") and "https://" not in page.text
    for asset in ("/static/app.css", "/static/common.js", "/static/chat.js", "/static/arena.js"):
        assert client.get(asset).status_code == 200


def test_a_page_in_russian_by_query_and_by_accept_language(web):
    assert "Отправить" in httpx.get(web.url + "/?lang=ru").text
    assert "Отправить" in httpx.get(web.url + "/", headers={"accept-language": "ru-RU,ru;q=0.9"}).text
    assert "Send" in httpx.get(web.url + "/", headers={"accept-language": "de-DE"}).text


def test_each_visitor_sees_only_its_own_conversations(web):
    alice, bob = browser(web), browser(web)
    created = alice.post("/api/conversations", json={"bot": "eliza"}).json()
    assert created["id"] in [c["id"] for c in alice.get("/api/conversations").json()["data"]]
    assert created["id"] not in [c["id"] for c in bob.get("/api/conversations").json()["data"]]
    assert bob.get(f"/api/conversations/{created['id']}").status_code == 404


def test_a_cookie_request_without_the_token_or_from_another_origin_is_refused(web):
    client = browser(web)
    token = client.headers.pop("X-CSRF-Token")
    refused = client.post("/api/conversations", json={"bot": "eliza"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
    wrong = client.post("/api/conversations", json={"bot": "eliza"}, headers={"X-CSRF-Token": "x" + token})
    assert wrong.status_code == 403
    other = client.post("/api/conversations", json={"bot": "eliza"},
                        headers={"X-CSRF-Token": token, "Origin": "http://127.0.0.1:1"})  # fmt: skip
    assert other.status_code == 403 and "Origin" in other.json()["error"]["message"]
    sibling = client.post("/api/conversations", json={"bot": "eliza"},
                          headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-site"})  # fmt: skip
    assert sibling.status_code == 403
    # API clients (no cookies, no browser headers) are not affected
    assert httpx.post(web.url + "/api/conversations", json={"bot": "eliza"}).status_code == 201


def test_thumbs_and_comments_are_stored_and_bad_feedback_is_refused_by_field(web):
    client = browser(web)
    cid = client.post("/api/conversations", json={"bot": "eliza"}).json()["id"]
    reply = client.post(f"/api/conversations/{cid}/messages", json={"text": "I am sad"}).json()["message"]
    saved = client.post(f"/api/messages/{reply['id']}/feedback", json={"rating": 1, "comment": "kind"})
    assert saved.status_code == 201 and [f["kind"] for f in saved.json()["data"]] == ["rating", "comment"]
    kinds = {f.kind: f.value for f in web.store.feedback(message_id=reply["id"])}
    assert kinds == {"rating": {"score": 1}, "comment": {"text": "kind", "score": 1}}
    assert client.post(f"/api/messages/{reply['id']}/feedback", json={"rating": 5}).status_code == 400
    assert client.post(f"/api/messages/{reply['id']}/feedback", json={}).status_code == 400
    assert client.post("/api/messages/nope/feedback", json={"rating": 1}).status_code == 404
    assert browser(web).post(f"/api/messages/{reply['id']}/feedback", json={"rating": -1}).status_code == 404


def test_regenerate_streams_a_sibling_and_switching_records_which_was_kept(web):
    client = browser(web)
    cid = client.post("/api/conversations", json={"bot": "eliza"}).json()["id"]
    first = client.post(f"/api/conversations/{cid}/messages", json={"text": "I need help"}).json()["message"]
    streamed = events(client.post(f"/api/conversations/{cid}/regenerate", json={"stream": True}))
    reply = next(data for name, data in streamed if name == "reply")["message"]
    assert reply["siblings"] == [first["id"], reply["id"]] and reply["sibling_index"] == 1
    switched = client.post(f"/api/conversations/{cid}/switch", json={"message_id": first["id"]}).json()
    assert switched["messages"][-1]["id"] == first["id"] and switched["messages"][-1]["sibling_index"] == 0
    choice = web.store.feedback(kind="choice", message_id=first["id"])[-1]
    assert choice.value == {"kept": first["id"], "of": [first["id"], reply["id"]]}
    other = client.post("/api/conversations", json={"bot": "eliza"}).json()["id"]
    assert client.post(f"/api/conversations/{other}/switch", json={"message_id": first["id"]}).status_code == 404


def test_replies_come_with_safe_html(web):
    client = browser(web)
    cid = client.post("/api/conversations", json={"bot": "eliza"}).json()["id"]
    reply = client.post(f"/api/conversations/{cid}/messages", json={"text": "I am <b>sad</b>"}).json()["message"]
    assert "<b>" not in reply["html"]


def test_an_arena_battle_is_blind_until_the_vote_and_the_vote_reveals_both_names(web):
    client = browser(web)
    battle = client.post("/api/arena/battles")
    assert battle.status_code == 201
    battle = battle.json()
    assert "name" not in battle["a"] and "name" not in battle["b"]
    assert battle["a"]["messages"] == [] and battle["b"]["messages"] == []  # openings would name the bot
    side_a = web.store.battle(battle["id"]).conversation_a
    assert client.get(f"/api/conversations/{side_a}").status_code == 404  # its bot and options would too
    assert client.post(f"/api/arena/battles/{battle['id']}/vote", json={"vote": "a"}).status_code == 409  # no turn yet
    streamed = events(client.post(f"/api/arena/battles/{battle['id']}/messages", json={"text": "I am sad"}))
    replies = {data["side"]: data["message"] for name, data in streamed if name == "reply"}
    assert set(replies) == {"a", "b"} and all("meta" not in m for m in replies.values())
    assert streamed[-1][0] == "done"
    seen = client.get(f"/api/arena/battles/{battle['id']}").json()
    assert all("meta" not in m for m in seen["a"]["messages"]) and "name" not in seen["a"]
    assert [m["finish_reason"] for m in seen["a"]["messages"]] == [None, "stop"]  # how a reply ended names no one
    assert browser(web).get(f"/api/arena/battles/{battle['id']}").status_code == 404  # another visitor's
    assert client.post(f"/api/arena/battles/{battle['id']}/vote", json={"vote": "left"}).status_code == 400
    voted = client.post(f"/api/arena/battles/{battle['id']}/vote", json={"vote": "b"}).json()
    assert {voted["a"]["name"], voted["b"]["name"]} == {"eliza", "eliza-1966"}
    assert client.post(f"/api/arena/battles/{battle['id']}/vote", json={"vote": "a"}).status_code == 409
    stored = web.store.battle(battle["id"])
    assert stored.vote == "b" and stored.user_id and stored.user_id.startswith("visitor:")
    assert client.get(f"/api/conversations/{side_a}").status_code == 200  # revealed: an ordinary conversation
    assert voted["a"]["messages"][0]["role"] == "assistant"  # the opening, shown now
    more = events(client.post(f"/api/arena/battles/{battle['id']}/messages", json={"text": "Why?"}))
    assert any(name == "reply" and "meta" in data["message"] for name, data in more)  # revealed: meta too
    listed = [c["id"] for c in client.get("/api/conversations").json()["data"]]
    assert stored.conversation_a not in listed and stored.conversation_b not in listed


def test_the_leaderboard_counts_votes_within_the_daily_cap(web):
    client = browser(web)
    for _ in range(3):
        battle = client.post("/api/arena/battles").json()
        client.post(f"/api/arena/battles/{battle['id']}/messages", json={"text": "Hello"})
        client.post(f"/api/arena/battles/{battle['id']}/vote", json={"vote": "tie"})
    board = client.get("/api/arena/leaderboard").json()
    assert {row["contestant"] for row in board["rows"]} == {"eliza", "eliza-1966"}
    assert board["capped"] >= 1  # this visitor's third vote today is over the cap of 2
    assert all(row["preliminary"] for row in board["rows"])  # a handful of votes each
    page = client.get("/leaderboard")
    assert page.status_code == 200 and "eliza-1966" in page.text and "preliminary" in page.text


def test_positions_are_balanced_over_battles(web):
    client = browser(web)
    for _ in range(6):
        client.post("/api/arena/battles")
    counts = web.store.left_counts()
    for name in ("eliza", "eliza-1966"):
        left, right = counts[name]
        assert abs(left - right) <= 1


def test_a_server_with_keys_sends_browsers_to_log_in_and_a_key_cookie_then_works(tmp_path):
    from rejoinder.server import ServedBot, ServerConfig
    from rejoinder.store import Store

    store = Store(f"sqlite:///{tmp_path / 'keys.db'}")
    _, secret = store.create_key("alice")
    running = Running(ServerConfig(port=free_port(), bots=[ServedBot("eliza", "eliza")], keys="required",
                                   prepare=False), store)  # fmt: skip
    try:
        client = httpx.Client(base_url=running.url, timeout=30)
        assert client.get("/").headers["location"].startswith("/login")
        login = client.get("/login")
        token = client.cookies["rejoinder_csrf"]
        assert login.status_code == 200 and "rejoinder_visitor" not in client.cookies
        assert client.post("/login", data={"key": secret, "csrf": "wrong"}).status_code == 403
        assert client.post("/login", data={"key": "nope", "csrf": token}).status_code == 401
        done = client.post("/login", data={"key": secret, "csrf": token, "next": "//evil.example/"})
        assert done.status_code == 303 and done.headers["location"] == "/"
        assert client.get("/").status_code == 200
        client.headers["X-CSRF-Token"] = token
        created = client.post("/api/conversations", json={"bot": "eliza"})
        assert created.status_code == 201
        assert store.get_conversation(created.json()["id"]).user_id == store.check_key(secret).user_id
        assert httpx.post(running.url + "/api/conversations", json={"bot": "eliza"}).status_code == 401
    finally:
        running.stop()
        store.close()


def test_an_arena_config_naming_a_bot_not_served_is_refused():
    from rejoinder.errors import ConfigError
    from rejoinder.server import ServedBot, ServerConfig

    with pytest.raises(ConfigError, match="arena: ghost not served"):
        ServerConfig(bots=[ServedBot("eliza", "eliza")], arena=["eliza", "ghost"]).check()


def test_a_conversation_with_a_bot_served_under_a_second_name_continues_under_that_name(web):
    client = browser(web)
    created = client.post("/api/conversations", json={"bot": "eliza-1966"}).json()
    assert created["bot"] == "eliza-1966"
    listed = {c["id"]: c["bot"] for c in client.get("/api/conversations").json()["data"]}
    assert listed[created["id"]] == "eliza-1966"
    assert client.get(f"/api/conversations/{created['id']}").json()["bot"] == "eliza-1966"


def test_a_visitor_id_the_server_did_not_sign_is_not_an_identity(web):
    client = browser(web)
    mine = client.post("/api/conversations", json={"bot": "eliza"}).json()["id"]
    forged = httpx.Client(base_url=web.url, cookies={"rejoinder_visitor": "ab" * 16 + "." + "0" * 32,
                                                     "rejoinder_csrf": "t"}, headers={"X-CSRF-Token": "t"})  # fmt: skip
    page = forged.get("/")
    assert page.status_code == 200 and "rejoinder_visitor=" in page.headers["set-cookie"]  # a signed one instead
    assert forged.post("/api/conversations", json={"bot": "eliza"}).status_code == 201  # as the local operator
    assert not web.store.list_conversations(user_id="visitor:" + "ab" * 16)
    owner = web.store.get_conversation(mine).user_id
    visitor = client.cookies["rejoinder_visitor"]
    assert owner == "visitor:" + visitor.split(".")[0]
    tampered = visitor.split(".")[0][::-1] + "." + visitor.split(".")[1]
    spoof = httpx.Client(base_url=web.url, cookies={"rejoinder_visitor": tampered})
    assert mine not in [c["id"] for c in spoof.get("/api/conversations").json()["data"]]


def test_a_rebound_dns_name_cannot_reach_a_loopback_server(web):
    refused = httpx.post(web.url + "/api/conversations", json={"bot": "eliza"}, headers={"host": "evil.example:80"})
    assert refused.status_code == 400
    assert httpx.get(web.url.replace("127.0.0.1", "localhost") + "/").status_code == 200


def test_the_arena_keys_of_a_server_config_file_are_read_and_checked(tmp_path):
    from rejoinder.errors import SourceError
    from rejoinder.server.config import load_server_config

    path = tmp_path / "server.yaml"
    path.write_text("bots: [eliza, eliza-ru]\narena: [eliza, eliza-ru]\narena_daily_cap: 5\n", encoding="utf-8")
    config = load_server_config(path)
    config.check()
    assert config.arena == ["eliza", "eliza-ru"] and config.arena_daily_cap == 5
    path.write_text("arena: [eliza, 3]\n", encoding="utf-8")
    with pytest.raises(SourceError, match="arena: expected a list of served bot names"):
        load_server_config(path)
