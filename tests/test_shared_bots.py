"""One bot serves many conversations at once: each turn gets its own reply and metadata."""

from __future__ import annotations

import threading

from llm_tiny import tiny_backend
from rejoinder.bots.assistant import AssistantBot
from rejoinder.chat import ChatSession
from rejoinder.llm.generation import GenerationParams


def test_sixteen_concurrent_sessions_on_one_assistant_are_decoded_together_each_with_its_own_reply(store, tmp_path):
    backend = tiny_backend(tmp_path / "tiny")
    bot = AssistantBot(backend, params=GenerationParams(max_new_tokens=24, temperature=0.8, seed=None))
    sessions = [ChatSession.start(store, "assistant", bot=bot)[0] for _ in range(16)]
    start = threading.Barrier(16)
    results: dict[int, tuple[str, object]] = {}

    def talk(number: int) -> None:
        start.wait()
        turn = sessions[number].stream(f"Hello there, I am user {number}")
        text = "".join(turn)
        results[number] = (text, turn.reply)

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 16
    assert backend.engine.peak_batch >= 8  # decoded together, not one after another
    for number, session in enumerate(sessions):
        text, reply = results[number]
        stored = store.load_dialogue(session.conversation_id).messages
        assert [m.text for m in stored] == [f"Hello there, I am user {number}", text.strip()]
        # the metadata is this turn's own: its length and why it ended agree with each other
        first = reply.meta["first_piece_s"]
        assert reply.meta["model"] == "tiny" and (first is None or first <= reply.meta["seconds"])
        if reply.finish_reason == "length":
            assert reply.meta["tokens"] == 24
        else:
            assert reply.finish_reason == "stop" and reply.meta["tokens"] < 24
        assert stored[-1].meta["tokens"] == reply.meta["tokens"]


def test_building_an_assistant_loads_nothing_and_assistants_that_sample_differently_share_one_model(store, tmp_path):
    from rejoinder.bots import pool_for

    tiny = tiny_backend(tmp_path / "unused")
    model_dir = tmp_path / "tiny-model"
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    pool = pool_for(store)
    cool, _ = pool.get("assistant", {"model": str(model_dir), "backend": "torch", "temperature": "0.2"})
    warm, options = pool.get("assistant", {"model": str(model_dir), "backend": "torch", "temperature": 0.9})
    assert cool is not warm and options["temperature"] == 0.9
    assert not cool.readiness().complete  # nothing was loaded to build it
    events = []
    cool.prepare(events.append)
    assert cool.readiness().complete and [e.done for e in events] == [0, 1]
    assert warm.backend is cool.backend  # one model, one decoding loop for both
