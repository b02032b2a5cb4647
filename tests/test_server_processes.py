"""rejoinder serve as processes: killed mid-stream and restarted, and two servers on one database."""

from __future__ import annotations

import threading

import httpx
import pytest

from conftest import DOCTOR_1966, conversation_1966
from llm_tiny import tiny_model_dir
from serving import ServerProcess

openai = pytest.importorskip("openai")


def client(server: ServerProcess):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="local", max_retries=0, timeout=60)


def replay_1966(servers: list[ServerProcess], turns: list[tuple[str, str]], history: list[dict]) -> set[str]:
    """Send the 1966 turns statelessly, turn i to servers[i % len(servers)]; check the paper's replies."""
    cids = set()
    for i, (user, eliza) in enumerate(turns):
        history.append({"role": "user", "content": user})
        raw = client(servers[i % len(servers)]).chat.completions.with_raw_response.create(model="eliza-1966",
                                                                                         messages=history)  # fmt: skip
        assert raw.parse().choices[0].message.content == eliza, f"turn {i + 1}"
        cids.add(raw.headers["x-rejoinder-conversation"])
        history.append({"role": "assistant", "content": eliza})
    return cids


def test_a_server_killed_mid_stream_loses_no_answered_turn_and_resumes_every_conversation(tmp_path, db_url):
    model = tiny_model_dir(tmp_path / "tiny")
    config = tmp_path / "server.yaml"
    config.write_text(
        "bots:\n"
        f"  - {{name: eliza-1966, bot: eliza, options: {{script: '{DOCTOR_1966}'}}}}\n"
        f"  - {{name: tiny, bot: assistant, options: {{model: '{model}', backend: torch, max_new_tokens: 400, "
        "temperature: 1.0}}\n",
        encoding="utf-8",
    )
    server = ServerProcess(config, db_url).wait_ready()
    turns = conversation_1966()
    history: list[dict] = []
    try:
        before = replay_1966([server], turns[:7], history)
        started = threading.Barrier(4, timeout=60)
        outcomes: list[str] = []

        def stream() -> None:
            try:
                chunks = client(server).chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "Tell me a long story"}], stream=True
                )
                for i, _ in enumerate(chunks):
                    if i == 2:
                        started.wait()
                outcomes.append("finished")
            except (openai.APIError, httpx.HTTPError, threading.BrokenBarrierError):
                outcomes.append("cut")

        threads = [threading.Thread(target=stream) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait()  # three streams are under way
        server.kill()
        for t in threads:
            t.join(30)
        assert "cut" in outcomes
    finally:
        server.stop()
    restarted = ServerProcess(config, db_url, port=server.port).wait_ready()
    try:
        after = replay_1966([restarted], turns[7:], history)  # ELIZA's memory survived the kill
        assert after == before  # the same conversation, found by its history
        from rejoinder.store import Store

        store = Store(db_url)
        dialogue = store.load_dialogue(before.pop())
        assert [m.text for m in dialogue.messages if m.role == "assistant"][-15:] == [e for _, e in turns]
        for info in store.list_conversations(limit=50, anonymous=True):  # every stored turn is whole
            messages = store.load_dialogue(info.id).messages
            assert all(m.role != "assistant" or m.text or m.meta.get("cancelled") for m in messages)
        store.close()
    finally:
        restarted.stop()


def test_two_servers_on_one_database_serve_one_conversation_turn_by_turn(tmp_path, db_url):
    config = tmp_path / "server.yaml"
    config.write_text(f"bots:\n  - {{name: eliza-1966, bot: eliza, options: {{script: '{DOCTOR_1966}'}}}}\n",
                      encoding="utf-8")  # fmt: skip
    first = ServerProcess(config, db_url)
    second = ServerProcess(config, db_url)
    try:
        first.wait_ready()
        second.wait_ready()
        cids = replay_1966([first, second], conversation_1966(), [])
        assert len(cids) == 1  # each server found the conversation the other had continued
        api = httpx.Client(timeout=30)
        cid = api.post(first.url + "/api/conversations", json={"bot": "eliza-1966"}).json()["id"]
        for i, (user, eliza) in enumerate(conversation_1966()[:6]):
            url = (first if i % 2 else second).url
            reply = api.post(f"{url}/api/conversations/{cid}/messages", json={"text": user}).json()
            assert reply["message"]["text"] == eliza
        messages = api.get(f"{second.url}/api/conversations/{cid}").json()["messages"]
        assert [m["role"] for m in messages] == ["assistant"] + ["user", "assistant"] * 6
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_the_openai_client_chats_with_every_bot_streamed(tmp_path, db_url):
    """The default server (every registered bot, default options): each answers a streamed chat."""
    config = tmp_path / "server.yaml"
    config.write_text("prepare: true\n", encoding="utf-8")
    server = ServerProcess(config, db_url).wait_ready(timeout=1800)  # the corpus import, the NLU, the model
    try:
        names = [m.id for m in client(server).models.list()]
        assert {"eliza", "eliza-ru", "retrieval", "bank", "travel", "assistant", "router"} <= set(names)
        lines = {"eliza-ru": "Мне грустно", "bank": "I lost my card", "travel": "I want to fly to Paris"}
        for name in names:
            chunks = client(server).chat.completions.create(
                model=name, messages=[{"role": "user", "content": lines.get(name, "Hello, how are you?")}],
                stream=True, max_tokens=32,
            )  # fmt: skip
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text.strip(), name
    finally:
        server.stop()
