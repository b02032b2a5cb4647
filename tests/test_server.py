"""rejoinder serve as clients use it: the official openai client and raw HTTP over a real socket."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conftest import DOCTOR_1966, conversation_1966
from llm_tiny import tiny_model_dir
from serving import Running, ServerProcess, free_port

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from rejoinder.server import ServedBot, ServerConfig
    from rejoinder.store import Store

    tmp = tmp_path_factory.mktemp("server")
    model = tiny_model_dir(tmp / "tiny")
    bots = [
        ServedBot("eliza", "eliza"),
        ServedBot("eliza-1966", "eliza", {"script": str(DOCTOR_1966)}),
        ServedBot(
            "tiny", "assistant", {"model": str(model), "backend": "torch", "temperature": 0.7, "max_new_tokens": 24}
        ),
    ]
    store = Store(f"sqlite:///{tmp / 'server.db'}")
    running = Running(ServerConfig(port=free_port(), bots=bots, max_message_chars=2000, max_body_bytes=200_000), store)
    running.store = store
    running.wait_ready("tiny")
    yield running
    running.stop()
    store.close()


def test_the_models_are_the_served_bots(served):
    names = [m.id for m in served.client().models.list()]
    assert names == ["eliza", "eliza-1966", "tiny"]


def test_eliza_answers_the_openai_client_and_names_the_conversation(served):
    raw = served.client().chat.completions.with_raw_response.create(
        model="eliza", messages=[{"role": "user", "content": "I am sad"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content and completion.choices[0].finish_reason == "stop"
    cid = raw.headers["x-rejoinder-conversation"]
    assert served.store.load_dialogue(cid).messages[-1].text == completion.choices[0].message.content


def test_the_1966_conversation_replayed_statelessly_matches_the_paper(served):
    client = served.client()
    history, cids = [], set()
    for user, eliza in conversation_1966():
        history.append({"role": "user", "content": user})
        raw = client.chat.completions.with_raw_response.create(model="eliza-1966", messages=history)
        assert raw.parse().choices[0].message.content == eliza
        cids.add(raw.headers["x-rejoinder-conversation"])
        history.append({"role": "assistant", "content": eliza})
    assert len(cids) == 1  # every request found the conversation its history belongs to


def test_a_history_the_server_never_saw_is_replayed_into_the_bots_state(served):
    turns = conversation_1966()
    history = []
    for user, eliza in turns[:-1]:
        history += [{"role": "user", "content": user}, {"role": "assistant", "content": eliza}]
    history.append({"role": "user", "content": turns[-1][0] + " "})  # a history no stored conversation has
    reply = served.client().chat.completions.create(
        model="eliza-1966", messages=[{"role": "system", "content": "ignored by ELIZA"}, *history],
        extra_headers={"X-Rejoinder-Conversation": ""},
    )  # fmt: skip
    assert reply.choices[0].message.content == turns[-1][1]  # ELIZA's memory came back from the replay


def test_streaming_with_usage_n_and_stop_on_the_tiny_assistant(served):
    client = served.client()
    chunks = list(client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello there"}], stream=True,
        stream_options={"include_usage": True}, max_tokens=8, seed=1,
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage.completion_tokens >= 1 and usage.prompt_tokens > 1 and chunks[-1].choices == []
    assert text.strip() or usage.completion_tokens
    several = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], n=2,
                                             max_tokens=6, temperature=1.0)  # fmt: skip
    assert [c.index for c in several.choices] == [0, 1]
    cid = several.model_extra["conversation_id"]
    user = served.store.load_dialogue(cid).messages[-2]
    assert len(served.store.siblings(served.store.load_dialogue(cid).messages[-1].id)) == 2 and user.role == "user"
    eliza = client.chat.completions.create(model="eliza", messages=[{"role": "user", "content": "I am sad"}],
                                           stop=["?"])  # fmt: skip
    assert "?" not in eliza.choices[0].message.content


def test_response_format_constrains_the_assistant_and_is_refused_for_eliza(served):
    client = served.client()
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Answer in JSON"}], max_tokens=24,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )  # fmt: skip
    content = reply.choices[0].message.content
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content)["ok"], bool)
    with pytest.raises(openai.BadRequestError, match="cannot constrain"):
        client.chat.completions.create(model="eliza", messages=[{"role": "user", "content": "hi"}],
                                       response_format={"type": "json_object"})  # fmt: skip


def test_an_unknown_model_is_404_and_an_oversized_message_413(served):
    client = served.client()
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="eliza", messages=[{"role": "user", "content": "x " * 1500}])
    assert caught.value.status_code == 413
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="eliza", messages=[{"role": "user", "content": "x" * 300_000}])
    assert caught.value.status_code == 413


@pytest.mark.parametrize(
    "body, status",
    [
        (b"{not json", 400),
        (b"[]", 400),
        (json.dumps({"model": "eliza"}).encode(), 400),
        (json.dumps({"model": "eliza", "messages": []}).encode(), 400),
        (json.dumps({"model": "eliza", "messages": "hello"}).encode(), 400),
        (json.dumps({"model": 3, "messages": [{"role": "user", "content": "hi"}]}).encode(), 400),
        (json.dumps({"model": "eliza", "messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400),
        (json.dumps({"model": "eliza", "messages": [{"role": "user", "content": "   "}]}).encode(), 400),
        (json.dumps({"model": "eliza", "messages": [{"role": "user", "content": "hi"}], "n": 99}).encode(), 400),
        (
            json.dumps(
                {"model": "eliza", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}
            ).encode(),
            400,
        ),
        (json.dumps({"model": "eliza", "messages": [{"role": "assistant", "content": "hi"}]}).encode(), 400),
        (json.dumps({"model": "eliza", "messages": [{"role": "tool", "content": "hi"}]}).encode(), 400),
        (
            json.dumps({"model": "eliza", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(),
            400,
        ),
        (json.dumps({"model": "eliza", "messages": [{"role": "user", "content": "\ud800"}]}).encode(), 400),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, bytes) else str(v),
)
def test_malformed_requests_get_a_4xx_in_openais_error_shape(served, body, status):
    response = httpx.post(
        served.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"


def test_unknown_fields_are_accepted_and_ignored(served):
    response = httpx.post(served.url + "/v1/chat/completions", json={
        "model": "eliza", "messages": [{"role": "user", "content": "hello"}], "frequency_penalty": 0.5,
        "logit_bias": {}, "parallel_tool_calls": False})  # fmt: skip
    assert response.status_code == 200, response.text


def test_the_conversations_api_creates_continues_lists_fetches_regenerates_and_deletes(served):
    api = httpx.Client(base_url=served.url + "/api", timeout=60)
    bots = {b["name"]: b for b in api.get("/bots").json()["data"]}
    assert bots["eliza"]["ready"] and any(o["name"] == "script" and not o["client"] for o in bots["eliza"]["options"])
    created = api.post("/conversations", json={"bot": "eliza-1966"})
    assert created.status_code == 201
    cid = created.json()["id"]
    assert created.json()["messages"][0]["text"] == "HOW DO YOU DO. PLEASE TELL ME YOUR PROBLEM"
    first, second = conversation_1966()[0]
    reply = api.post(f"/conversations/{cid}/messages", json={"text": first}).json()
    assert reply["message"]["text"] == second
    with api.stream("POST", f"/conversations/{cid}/messages", json={"text": "I am sad", "stream": True}) as r:
        events = [line for line in r.iter_lines() if line.startswith("event:")]
    assert "event: reply" in events
    again = api.post(f"/conversations/{cid}/regenerate", json={})
    assert again.status_code == 200, again.text
    fetched = api.get(f"/conversations/{cid}").json()
    assert len(fetched["messages"][-1]["siblings"]) == 2 and "memory" in json.dumps(fetched["state"]).lower()
    assert cid in [c["id"] for c in api.get("/conversations", params={"limit": 50}).json()["data"]]
    refused = api.post("/conversations", json={"bot": "eliza", "options": {"script": "/etc/passwd"}})
    assert refused.status_code == 400 and "script" in refused.json()["error"]["message"]
    assert api.delete(f"/conversations/{cid}").status_code == 204
    assert api.get(f"/conversations/{cid}").status_code == 404


def test_two_turns_at_once_on_one_conversation_one_answered_one_409(served):
    import concurrent.futures

    api = httpx.Client(base_url=served.url + "/api", timeout=60)
    cid = api.post("/conversations", json={"bot": "tiny"}).json()["id"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda t: api.post(f"/conversations/{cid}/messages", json={"text": t}).status_code,
                                   ["tell me a story", "tell me a joke"]))  # fmt: skip
    messages = api.get(f"/conversations/{cid}").json()["messages"]
    assert statuses in ([200, 409], [200, 200])
    assert len(messages) == 2 * statuses.count(200)


def test_keys_separate_users_and_guard_admin_routes(tmp_path):
    from rejoinder.server import ServedBot, ServerConfig
    from rejoinder.store import Store

    store = Store(f"sqlite:///{tmp_path / 'keys.db'}")
    _, ann = store.create_key("ann")
    _, bob = store.create_key("bob")
    _, root = store.create_key("root", "admin")
    config = ServerConfig(port=free_port(), keys="required", bots=[ServedBot("eliza", "eliza")], requests_per_minute=10)
    running = Running(config, store)
    try:
        with pytest.raises(openai.AuthenticationError):
            running.client("wrong").chat.completions.create(model="eliza", messages=[{"role": "user", "content": "hi"}])
        raw = running.client(ann).chat.completions.with_raw_response.create(
            model="eliza", messages=[{"role": "user", "content": "I am sad"}])  # fmt: skip
        cid = raw.headers["x-rejoinder-conversation"]
        as_bob = httpx.get(f"{running.url}/api/conversations/{cid}", headers={"authorization": f"Bearer {bob}"})
        assert as_bob.status_code == 404
        as_ann = httpx.get(f"{running.url}/api/conversations/{cid}", headers={"authorization": f"Bearer {ann}"})
        assert as_ann.status_code == 200
        assert httpx.get(f"{running.url}/api/keys", headers={"authorization": f"Bearer {ann}"}).status_code == 403
        assert httpx.get(f"{running.url}/api/keys", headers={"authorization": f"Bearer {root}"}).status_code == 200
        assert httpx.get(f"{running.url}/v1/models").status_code == 401
        burst = [httpx.get(f"{running.url}/v1/models", headers={"authorization": f"Bearer {ann}"}) for _ in range(10)]
        limited = [r for r in burst if r.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1  # ann's key is limited, bob's is not
        assert httpx.get(f"{running.url}/v1/models", headers={"authorization": f"Bearer {bob}"}).status_code == 200
    finally:
        running.stop()
        store.close()


def test_rejoinder_serve_starts_a_real_server_and_keys_come_from_the_cli(tmp_path):
    import os
    import subprocess
    import sys

    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "REJOINDER_DB_URL": db_url, "COLUMNS": "250", "HF_HUB_OFFLINE": "1"}
    rejoinder = [sys.executable, "-m", "rejoinder.cli"]
    created = subprocess.run([*rejoinder, "keys", "create", "--name", "ann"], capture_output=True, text=True, env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.split(": ")[-1].strip()
    assert secret.startswith("rj-") and "not shown again" in created.stderr
    listed = subprocess.run([*rejoinder, "keys", "list"], capture_output=True, text=True, env=env)
    assert "ann" in listed.stdout and secret not in listed.stdout
    config = tmp_path / "server.yaml"
    config.write_text("keys: required\nbots:\n  - eliza\n", encoding="utf-8")
    server = ServerProcess(config, db_url)
    try:
        server.wait_ready(key=secret)
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        models = httpx.get(f"{server.url}/v1/models", headers={"authorization": f"Bearer {secret}"}).json()
        assert [m["id"] for m in models["data"]] == ["eliza"]
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=secret, max_retries=0)
        reply = client.chat.completions.create(model="eliza", messages=[{"role": "user", "content": "I am sad"}])
        assert reply.choices[0].message.content
        revoked = subprocess.run([*rejoinder, "keys", "revoke", "ann"], capture_output=True, text=True, env=env)
        assert revoked.returncode == 0
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="eliza", messages=[{"role": "user", "content": "I am sad"}])
    finally:
        server.stop()


def test_a_bad_server_config_names_the_file_and_the_key(tmp_path):
    from rejoinder.errors import SourceError
    from rejoinder.server import load_server_config

    path = tmp_path / "server.yaml"
    path.write_text("port: 80000\n", encoding="utf-8")
    with pytest.raises(SourceError, match="port 80000"):
        load_server_config(path)
    path.write_text("bots:\n  - {name: x, colour: red}\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"bots\[0\]: unknown key\(s\) colour"):
        load_server_config(path)
    path.write_text("keys: sometimes\n", encoding="utf-8")
    with pytest.raises(SourceError, match="keys 'sometimes'"):
        load_server_config(path)


def test_a_reply_longer_than_the_request_timeout_is_stopped_and_kept_as_cancelled(tmp_path):
    from rejoinder.server import ServedBot, ServerConfig
    from rejoinder.store import Store

    model = tiny_model_dir(tmp_path / "tiny")
    bots = [ServedBot("tiny", "assistant", {"model": str(model), "backend": "torch", "max_new_tokens": 400})]
    store = Store(f"sqlite:///{tmp_path / 'timeout.db'}")
    running = Running(ServerConfig(port=free_port(), bots=bots, request_timeout_s=0.02), store)
    try:
        running.wait_ready("tiny")
        with pytest.raises(openai.APIStatusError) as caught:
            running.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Go on"}])
        assert caught.value.status_code == 504 and "longer than" in str(caught.value)
        stream = running.client().chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Go on and on"}], stream=True
        )
        with pytest.raises(openai.APIError, match="longer than"):
            list(stream)
        replies = [m for c in store.list_conversations(anonymous=True) for m in store.load_dialogue(c.id).messages
                   if m.role == "assistant"]  # fmt: skip
        assert replies and all(m.meta.get("cancelled") for m in replies)
    finally:
        running.stop()
        store.close()


def test_a_client_that_disconnects_stops_its_generation_and_the_partial_reply_is_kept(tmp_path):
    from rejoinder.server import ServedBot, ServerConfig
    from rejoinder.store import Store

    model = tiny_model_dir(tmp_path / "tiny")
    bots = [ServedBot("tiny", "assistant", {"model": str(model), "backend": "torch", "max_new_tokens": 400,
                                            "temperature": 1.0})]  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'gone.db'}")
    running = Running(ServerConfig(port=free_port(), bots=bots), store)
    try:
        running.wait_ready("tiny")
        body = {"model": "tiny", "messages": [{"role": "user", "content": "Tell me everything"}], "stream": True}
        with httpx.stream("POST", running.url + "/v1/chat/completions", json=body, timeout=60) as response:
            cid = response.headers["x-rejoinder-conversation"]
            for i, _ in enumerate(response.iter_lines()):
                if i >= 6:
                    break  # the client goes away mid-reply
        deadline = time.monotonic() + 30
        while True:
            messages = store.load_dialogue(cid).messages
            if messages and messages[-1].role == "assistant":
                break
            assert time.monotonic() < deadline, "the partial reply was never stored"
            time.sleep(0.1)
        reply = messages[-1]
        assert reply.meta.get("cancelled") and reply.meta.get("tokens", 400) < 400
    finally:
        running.stop()
        store.close()


def test_the_default_server_serves_every_bot_that_starts_on_its_defaults():
    from rejoinder.bots import available_bots
    from rejoinder.server.config import default_bots

    served = {b.name for b in default_bots()}
    assert {"eliza", "eliza-ru", "retrieval", "bank", "travel", "assistant", "router"} <= served
    assert "frames" not in served  # it needs a domain file; bank and travel are it on the shipped domains
    assert "frames" in available_bots()
    assert available_bots()["frames"].schema()["required"] == ["domain"]


def test_bots_prepared_in_the_background_are_built_and_prepared_one_at_a_time(tmp_path):
    from rejoinder.dialogue import Readiness
    from rejoinder.server.app import Server
    from rejoinder.server.config import ServedBot, ServerConfig
    from rejoinder.store import Store

    running: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    class SlowPreparing:
        def __init__(self, name: str) -> None:
            self.name, self.done = name, False

        def greet(self, dialogue):
            return None

        def respond(self, dialogue):
            raise AssertionError("not asked")

        def readiness(self) -> Readiness:
            return Readiness(ready=self.done, complete=self.done)

        def prepare(self, progress=None, cancel=None) -> None:
            running.append(self.name)
            overlaps.append(tuple(running))
            time.sleep(0.05)
            running.remove(self.name)
            self.done = True

    names = ["one", "two", "three"]
    config = ServerConfig(bots=[ServedBot(n, "eliza", {}) for n in names])
    server = Server(config, Store(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    for name in names:
        server.served[name].bot = SlowPreparing(name)
        server.prepare_in_background(server.served[name])
    deadline = time.monotonic() + 10
    while not all(server.served[n].ready() for n in names):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert overlaps == [("one",), ("two",), ("three",)]
