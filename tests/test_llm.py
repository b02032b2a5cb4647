"""The LLM layer: sampling, stop sequences, batched decoding, the assistant bot, the router."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from interrupt import interrupt_after_output, python_command
from llm_tiny import tiny_backend
from rejoinder.bots.assistant import AssistantBot, fit_history
from rejoinder.bots.router import Link, RouterBot, parse_chain
from rejoinder.chat import ChatSession
from rejoinder.dialogue import Cancel, Dialogue, Message, Reply, collect
from rejoinder.errors import ConfigError, InvalidMessage, RejoinderError
from rejoinder.llm.backends import Backend, load_backend
from rejoinder.llm.generation import Finish, GenerationParams, StopScanner, cut_at_stops, drain
from rejoinder.llm.models import resolve_model
from rejoinder.store import Store

GREEDY = GenerationParams(max_new_tokens=12, temperature=0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return tiny_backend(tmp_path_factory.mktemp("tiny"))


# -- generation parameters and stop sequences -----------------------------------------------------


def test_generation_parameters_are_checked_with_every_fault_named():
    with pytest.raises(ConfigError) as info:
        GenerationParams(max_new_tokens=0, temperature=-1, top_p=1.5)
    message = str(info.value)
    assert "max_new_tokens" in message and "temperature" in message and "top_p" in message


def tokens_of(pieces: list[str], reason: str = "length"):
    for piece in pieces:
        yield piece, None
    return reason


def test_a_stop_sequence_split_over_pieces_is_cut_and_never_shown():
    text, finish = drain(cut_at_stops(tokens_of(["Hello", " wor", "ld\nUs", "er: more text"]), ["\nUser:"]))
    assert text == "Hello world"
    assert finish == Finish("stop", tokens=4)  # a stop sequence ends the reply as a whole one


def test_a_stream_that_runs_out_says_why_and_how_many_tokens():
    assert drain(cut_at_stops(tokens_of(["a", "b"], "length"), [])) == ("ab", Finish("length", tokens=2))


def test_text_that_only_looks_like_the_start_of_a_stop_sequence_is_released():
    scanner = StopScanner(["</s>"])
    assert scanner.feed("a <") == "a "
    assert scanner.feed("b") == "<b"
    assert scanner.feed("</") == ""
    assert scanner.flush() == "</"


# -- the PyTorch backend ------------------------------------------------------------------------


def test_streamed_pieces_join_into_the_whole_reply_and_a_seed_repeats_it(backend):
    messages = [{"role": "user", "content": "Hello there"}]
    params = GenerationParams(max_new_tokens=16, seed=7)
    pieces = list(backend.stream_chat(messages, params))
    assert len(pieces) > 1
    assert "".join(pieces) == backend.chat(messages, params)


def test_max_new_tokens_bounds_the_reply(backend):
    ids = backend.chat_ids([{"role": "user", "content": "Tell me a joke"}])
    tokens = list(backend.stream_ids(ids, GenerationParams(max_new_tokens=5, seed=1)))
    assert len(tokens) <= 5


def test_concurrent_requests_are_decoded_in_one_batch_with_the_same_tokens_as_alone(backend):
    prompts = ["Hello", "Tell me a joke about cats and dogs.", "I lost my card yesterday, please block it.", "Hi"]
    ids = [backend.chat_ids([{"role": "user", "content": p}]) for p in prompts]
    alone = [list(backend.stream_ids(i, GREEDY)) for i in ids]
    together: dict[int, list[int]] = {}
    barrier = threading.Barrier(len(ids))

    def run(n: int) -> None:
        barrier.wait()
        together[n] = list(backend.stream_ids(ids[n], GREEDY))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [together[n] for n in range(len(ids))] == alone
    assert backend.engine.peak_batch >= 2


def test_requests_with_one_prompt_that_arrive_together_share_one_prefill_and_each_draw_with_its_own_seed(tmp_path):
    import torch

    from rejoinder.llm.backends.torch import _Request

    backend = tiny_backend(tmp_path)
    engine = backend.engine
    ids = backend.chat_ids([{"role": "user", "content": "Tell me a joke about cats and dogs."}])
    seeded = [GenerationParams(max_new_tokens=8, temperature=1.0, repetition_penalty=1.0, seed=s) for s in (1, 2, 3)]
    alone = [list(backend.stream_ids(ids, params)) for params in seeded]
    greedy_alone = list(backend.stream_ids(ids, GREEDY))
    prefills = []
    original = engine._prefill
    engine._prefill = lambda prompt: prefills.append(len(prompt)) or original(prompt)
    queued = [_Request(ids, params, Cancel(), torch) for params in seeded]
    for request in queued:  # waiting before the decoder wakes: all four arrive in one admission
        engine.pending.put(request)
    greedy = list(backend.stream_ids(ids, GREEDY))
    together = []
    for request in queued:
        tokens = []
        while (item := request.out.get(timeout=60)) is not None:
            tokens.append(item)
        together.append(tokens)
    assert prefills == [len(ids)]
    assert greedy == greedy_alone
    assert [t[:1] for t in together] == [t[:1] for t in alone]  # the first draws come from the shared logits
    assert len({tuple(t) for t in together}) > 1  # each its own seed


@pytest.mark.parametrize("stored", [True, False], ids=["on-stored-beginnings", "no-prefix-cache"])
def test_distinct_prompts_that_arrive_together_are_prefilled_in_one_pass_with_the_same_tokens_as_alone(
    tmp_path, stored
):
    import torch

    from rejoinder.llm.backends.torch import _Request

    reference = tiny_backend(tmp_path / "reference", prefix_cache_bytes=0)  # the same weights, nothing stored
    backend = tiny_backend(tmp_path / "tested", **({} if stored else {"prefix_cache_bytes": 0}))
    engine = backend.engine
    chats = ["Hello", "Tell me a joke about cats and dogs.", "I lost my card yesterday, please block it.", "Hi"]
    beginnings = [backend.chat_ids([{"role": "user", "content": c}]) for c in chats]
    more = backend.chat_ids([{"role": "user", "content": "and one more thing, please"}])[-6:]
    ids = [b + more[: k + 1] for k, b in enumerate(beginnings)]  # rests of 1 to 4 tokens past each beginning
    alone = [list(reference.stream_ids(i, GREEDY)) for i in ids]
    for b in beginnings:  # stored beginnings of four lengths
        list(backend.stream_ids(b, GenerationParams(max_new_tokens=1, temperature=0)))
    calls = {"together": 0, "one": 0}
    together_prefill, one_prefill = engine._prefill_together, engine._prefill
    engine._prefill_together = lambda p: calls.__setitem__("together", calls["together"] + 1) or together_prefill(p)
    engine._prefill = lambda p: calls.__setitem__("one", calls["one"] + 1) or one_prefill(p)
    hits = engine.prefixes.hits
    queued = [_Request(i, GREEDY, Cancel(), torch) for i in ids[1:]]
    for request in queued:  # waiting before the decoder wakes: all four arrive in one admission
        engine.pending.put(request)
    together = [list(backend.stream_ids(ids[0], GREEDY))]
    for request in queued:
        tokens = []
        while (item := request.out.get(timeout=60)) is not None:
            tokens.append(item)
        together.append(tokens)
    assert calls == {"together": 1, "one": 0}
    assert engine.prefixes.hits - hits == (4 if stored else 0)
    assert together == alone


def test_prompts_prefilled_together_stay_within_the_token_budget_and_a_long_one_goes_alone(backend, monkeypatch):
    from rejoinder.llm.backends import torch as engine_module

    monkeypatch.setattr(engine_module, "PREFILL_TOKENS", 100)
    prompts = [[1] * 20, [2] * 30, [3] * 10, [4] * 90, [5] * 40, [6] * 40]
    groups = backend.engine._prefill_groups(prompts)
    assert [[len(p) for p in g] for g in groups] == [[20, 30, 10], [90], [40, 40]]
    assert all(len(g) * max(map(len, g)) <= 100 or len(g) == 1 for g in groups)


def test_cancelling_stops_the_generation_early(backend):
    cancel = Cancel()
    ids = backend.chat_ids([{"role": "user", "content": "Hello"}])
    params = GenerationParams(max_new_tokens=200, temperature=1.0, seed=3, repetition_penalty=1.0)
    got = []
    for token in backend.stream_ids(ids, params, cancel):
        got.append(token)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3


def test_a_reader_that_stops_reading_frees_the_decoder(backend):
    params = GenerationParams(max_new_tokens=200, temperature=1.0, seed=3, repetition_penalty=1.0)
    stream = backend.stream_chat([{"role": "user", "content": "Hello"}], params)
    next(stream)
    stream.close()
    # the decoder drops the abandoned sequence and serves the next request at once
    assert backend.chat([{"role": "user", "content": "Hi"}], GenerationParams(max_new_tokens=3, seed=1)) is not None


LONG = GenerationParams(max_new_tokens=400, temperature=1.0, seed=3, repetition_penalty=1.0)
HELLO = [{"role": "user", "content": "Hello"}]


@contextmanager
def counted_forwards(backend):
    """Times of the model's forward passes while the block runs."""
    calls: list[float] = []
    forward = backend.model.forward

    @functools.wraps(forward)  # keeps the signature the engine inspects
    def counting(*args, **kwargs):
        calls.append(time.monotonic())
        return forward(*args, **kwargs)

    backend.model.forward = counting
    try:
        yield calls
    finally:
        del backend.model.forward


def test_a_cancel_set_from_another_thread_stops_the_decoder_within_one_step(backend):
    cancel = Cancel()
    with counted_forwards(backend) as calls:
        stream = backend.stream_chat(HELLO, LONG, cancel)
        next(stream)
        setter = threading.Thread(target=cancel.set)
        setter.start()
        setter.join()
        cancelled_at = time.monotonic()
        text, finish = drain(stream)
        time.sleep(0.3)
    assert text == "" and finish.reason == "cancelled"  # nothing made after the cancel is shown
    assert sum(t > cancelled_at for t in calls) <= 1


def test_closing_the_backend_ends_generations_in_flight_and_joins_its_thread(tmp_path):
    own = tiny_backend(tmp_path)
    stream = own.stream_chat(HELLO, LONG)
    next(stream)
    own.close()
    assert not own.engine._thread.is_alive()
    assert drain(stream)[1].reason == "cancelled"
    with pytest.raises(RejoinderError, match="closed"):
        own.chat(HELLO)


EXIT_MID_GENERATION = """
from pathlib import Path
from interrupt import interrupt_after_output, python_command
from llm_tiny import tiny_backend
from rejoinder.llm.generation import GenerationParams

backend = tiny_backend(Path("."), max_positions=8192)
params = GenerationParams(max_new_tokens=8000, temperature=1.0, repetition_penalty=1.0)
stream = backend.stream_chat([{"role": "user", "content": "Hello there"}], params)
next(stream)
print("generating", flush=True)
import time
time.sleep(60)  # Ctrl-C lands here while the decoding thread is inside the model
"""


def test_a_process_interrupted_mid_generation_exits_without_aborting(tmp_path):
    result = interrupt_after_output(python_command(EXIT_MID_GENERATION), cwd=tmp_path)
    assert not result.aborted, result.stderr[-2000:]  # was: "terminate called without an active exception", 134
    assert result.returncode == 1 and "KeyboardInterrupt" in result.stderr


def test_a_reply_cut_at_max_new_tokens_says_so_and_a_finished_one_says_stop(backend):
    text, finish = drain(backend.stream_chat(HELLO, GenerationParams(max_new_tokens=3, temperature=0)))
    assert finish.reason == "length" and finish.tokens == 3
    text, finish = drain(backend.stream_chat(HELLO, GREEDY, json_schema={"type": "boolean"}))
    assert text in ("true", "false") and finish.reason == "stop"  # the schema's end lets EOS through


def test_a_prompt_longer_than_the_context_window_is_refused(tmp_path):
    small = tiny_backend(tmp_path, context_window=32)
    with pytest.raises(InvalidMessage, match="reads at most 32"):
        small.chat([{"role": "user", "content": "Tell me a joke about cats and dogs. " * 10}])


def test_a_model_without_a_chat_template_cannot_be_the_assistant(tmp_path):
    base = tiny_backend(tmp_path, chat_template=False)
    with pytest.raises(ConfigError, match="no chat template"):
        AssistantBot(base)
    assert base.complete("Hello", GenerationParams(max_new_tokens=4, seed=1)) is not None  # raw prompting works


def test_unknown_backends_and_missing_models_are_named():
    with pytest.raises(ConfigError, match="unknown backend 'vllm'"):
        load_backend("vllm")
    with pytest.raises(ConfigError, match="never downloaded"):
        resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")
    with pytest.raises(ConfigError, match="needs --base-url"):
        load_backend("openai")


def test_the_openai_backend_names_an_unreachable_server():
    from rejoinder.bots.frames.demo_backend import free_port

    with pytest.raises(RejoinderError, match="cannot reach the OpenAI-compatible server"):
        load_backend("openai", base_url=f"http://127.0.0.1:{free_port()}/v1")


def test_the_openai_backend_sends_the_schema_in_the_form_the_server_takes_and_reports_length():
    import json

    import httpx

    from rejoinder.llm.backends.openai import OpenAIBackend

    formats: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        formats.append(body["response_format"]["type"])
        if body["response_format"]["type"] == "json_schema":  # as llama-cpp-python's server answers it
            return httpx.Response(
                500, text="('body', 'response_format', 'type') Input should be 'text' or 'json_object'"
            )
        assert body["response_format"]["schema"] == {"type": "boolean"}
        events = [{"choices": [{"delta": {"content": "tr"}}]}, {"choices": [{"delta": {"content": "ue"}}]}]
        events.append({"choices": [{"delta": {}, "finish_reason": "length"}]})
        return httpx.Response(200, text="".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")

    backend = OpenAIBackend("http://llm.invalid/v1", model="m")
    backend.client = httpx.Client(base_url=backend.base_url, transport=httpx.MockTransport(handler))
    for _ in range(2):
        text, finish = drain(backend.stream_chat(HELLO, GREEDY, json_schema={"type": "boolean"}))
        assert text == "true" and finish == Finish("length", tokens=2)
    assert formats == ["json_schema", "json_object", "json_object"]  # refused once, then asked the way it takes


# -- history fitting ------------------------------------------------------------------------------


def words(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def test_history_drops_the_oldest_turns_and_keeps_the_system_prompt():
    turns = [
        {"role": "user", "content": "one two three"},
        {"role": "assistant", "content": "four five"},
        {"role": "user", "content": "six seven"},
        {"role": "assistant", "content": "eight"},
        {"role": "user", "content": "nine ten"},
    ]
    chat, dropped = fit_history("be kind", turns, words, budget=8)
    assert chat[0] == {"role": "system", "content": "be kind"}
    assert chat[1]["role"] == "user" and chat[-1]["content"] == "nine ten"
    assert dropped == 2 and words(chat) <= 8


def test_a_single_message_too_long_for_the_window_is_refused():
    with pytest.raises(InvalidMessage, match="too long"):
        fit_history(None, [{"role": "user", "content": "word " * 50}], words, budget=10)


# -- the assistant bot through a chat session -----------------------------------------------------


def test_the_assistant_streams_and_the_turn_is_stored(backend, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    bot = AssistantBot(backend, params=GenerationParams(max_new_tokens=10, seed=1))
    session, _ = ChatSession.start(store, "assistant", {}, bot=bot)
    pieces = list(session.stream("Hello there"))
    stored = store.load_dialogue(session.conversation_id).messages
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].text == "".join(pieces).strip()
    assert stored[1].meta["backend"] == "torch"


def test_a_stopped_reply_is_kept_and_marked_cancelled(backend, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    params = GenerationParams(max_new_tokens=50, temperature=1.0, seed=2, repetition_penalty=1.0)
    session, _ = ChatSession.start(store, "assistant", {}, bot=AssistantBot(backend, params=params))
    stream = session.stream("Hello there")
    first = next(stream)
    stream.close()
    reply = store.load_dialogue(session.conversation_id).messages[-1]
    assert reply.meta.get("cancelled") is True and reply.text == first.strip()


def said(text: str) -> Dialogue:
    return Dialogue(bot="assistant", conversation_id="c", messages=[Message("user", text)])


def test_the_assistant_streams_pieces_and_returns_the_reply_with_what_produced_it(backend):
    bot = AssistantBot(backend, params=GenerationParams(max_new_tokens=10, seed=1))
    stream = bot.stream(said("Hello there"), Cancel())
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as end:
            reply = end.value
            break
    assert reply.text == "".join(pieces).strip()
    assert {"backend": "torch", "model": "tiny", "dropped_turns": 0}.items() <= reply.meta.items()
    assert 0 < reply.meta["tokens"] <= 10 and reply.meta["seconds"] >= reply.meta["first_piece_s"] > 0
    assert reply.finish_reason == reply.meta["finish_reason"] in ("stop", "length")
    assert bot.respond(said("Hello there")).text == reply.text  # respond is the same stream, collected
    assert not hasattr(bot, "last_stats")  # nothing per turn is kept on the bot


def test_an_assistant_reply_cut_at_max_new_tokens_is_marked_length(backend):
    bot = AssistantBot(backend, params=GenerationParams(max_new_tokens=3, temperature=0))
    reply = bot.respond(said("Tell me a joke"))
    assert reply.finish_reason == "length" and reply.meta["tokens"] == 3


def test_an_assistant_turn_cancelled_from_another_thread_keeps_what_was_said(backend):
    bot = AssistantBot(backend, params=LONG)
    cancel = Cancel()
    stream = bot.stream(said("Hello"), cancel)
    first = next(stream)
    setter = threading.Thread(target=cancel.set)
    setter.start()
    setter.join()
    reply = collect(stream)
    assert reply.finish_reason == "cancelled" and reply.text == first.strip()


def test_sixteen_conversations_on_one_assistant_each_get_their_own_reply_in_one_batch(tmp_path):
    own = tiny_backend(tmp_path)
    bot = AssistantBot(own, params=GenerationParams(max_new_tokens=12, temperature=0, repetition_penalty=1.0))
    texts = [f"Hello {n}" if n % 2 else f"Tell me a joke {n}" for n in range(16)]
    alone = [bot.respond(said(text)) for text in texts]
    together: dict[int, Reply] = {}
    barrier = threading.Barrier(16)

    def talk_to(n: int) -> None:
        barrier.wait()
        together[n] = bot.respond(said(texts[n]))

    threads = [threading.Thread(target=talk_to, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [together[n].text for n in range(16)] == [reply.text for reply in alone]
    assert all(together[n].meta["tokens"] == alone[n].meta["tokens"] for n in range(16))
    assert own.engine.peak_batch >= 8


def test_cancelled_replies_are_left_out_of_the_next_prompt(backend):
    bot = AssistantBot(backend, system_prompt="sys")
    dialogue = Dialogue(bot="assistant", conversation_id="c")
    dialogue.messages += [
        Message("user", "Hello"),
        Message("assistant", "half a rep", meta={"cancelled": True}),
        Message("user", "Hi again"),
    ]
    chat, _ = bot.chat_messages(dialogue)
    assert [m["content"] for m in chat] == ["sys", "Hello", "Hi again"]


# -- the router ---------------------------------------------------------------------------------


class Scripted:
    """A bot that answers with a fixed text and confidence."""

    def __init__(self, name: str, text: str, confidence: float, action: str = "answer") -> None:
        self.name, self.text, self.confidence, self.action = name, text, confidence, action

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return Reply(f"{self.name} here")

    def respond(self, dialogue: Dialogue) -> Reply:
        dialogue.state["seen"] = dialogue.state.get("seen", 0) + 1
        return Reply(self.text, confidence=self.confidence, meta={"action": self.action})


class Broken(Backend):
    name, model_name = "openai", "down"

    def stream_chat(self, messages, params, cancel=None) -> Iterator[str]:
        raise RejoinderError("cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1")
        yield ""

    stream_text = stream_chat

    def count_chat_tokens(self, messages) -> int:
        return 1


def talk(router: RouterBot, text: str, dialogue: Dialogue) -> Reply:
    dialogue.messages.append(Message("user", text))
    reply = router.respond(dialogue)
    dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
    return reply


def test_the_router_takes_a_confident_bot_and_passes_the_rest_down_the_chain(backend):
    bank = Scripted("bank", "Which card?", 0.9)
    unsure = Scripted("bank", "Sorry?", 0.2, action="fallback")
    assistant = AssistantBot(backend, params=GenerationParams(max_new_tokens=6, seed=1))
    dialogue = Dialogue(bot="router", conversation_id="r")
    reply = talk(RouterBot([Link("bank", bank, 0.6), Link("assistant", assistant)]), "lost card", dialogue)
    assert reply.text == "Which card?" and reply.meta["routed_to"] == "bank"
    reply = talk(RouterBot([Link("bank", unsure, 0.6), Link("assistant", assistant)]), "a joke?", dialogue)
    assert reply.meta["routed_to"] == "assistant" and reply.meta["tried"][0]["bot"] == "bank"
    assert dialogue.state["bots"]["bank"]["seen"] == 1  # the refused turn left the bank bot's state alone


def test_an_assistant_whose_server_is_down_passes_the_turn_to_the_last_resort():
    assistant = AssistantBot(Broken())
    eliza = Scripted("eliza", "Please go on.", 0.0)
    router = RouterBot([Link("assistant", assistant), Link("eliza", eliza)])
    reply = talk(router, "hello", Dialogue(bot="router", conversation_id="r2"))
    assert reply.text == "Please go on." and "cannot reach" in reply.meta["tried"][0]["error"]


def test_chains_are_read_from_text_or_config_with_faults_named():
    assert parse_chain("bank:0.6, assistant,eliza") == [("bank", 0.6, {}), ("assistant", 0.0, {}), ("eliza", 0.0, {})]
    links = parse_chain([{"bot": "bank", "min_confidence": 0.7, "options": {"language": "ru"}}, {"bot": "eliza"}])
    assert links[0] == ("bank", 0.7, {"language": "ru"})
    with pytest.raises(ConfigError, match="must be a number"):
        parse_chain("bank:high")
    with pytest.raises(ConfigError, match=r"chain\[0\]: unknown key threshold"):
        parse_chain([{"bot": "bank", "threshold": 1}])
    with pytest.raises(ConfigError, match="between 0 and 1"):
        parse_chain("bank:7")


# -- the command line -----------------------------------------------------------------------------


def test_chat_takes_a_local_model_directory_and_prints_one_reply_per_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llm_tiny import tiny_backend as build
    from rejoinder.cli import app

    tiny = build(tmp_path / "unused")
    model_dir = tmp_path / "tiny-model"
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    monkeypatch.setenv("REJOINDER_DB_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    result = CliRunner().invoke(
        app,
        ["chat", "--bot", "assistant", "--model", str(model_dir), "--backend", "torch", "-o", "max_new_tokens=8"],
        input="Hello there\nTell me a joke\n",
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2  # line breaks inside a reply never split it on a pipe


def test_chat_names_a_missing_model_path(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rejoinder.cli import app

    monkeypatch.setenv("REJOINDER_DB_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    result = CliRunner().invoke(app, ["chat", "--bot", "assistant", "--model", str(tmp_path / "nope")], input="hi\n")
    assert result.exit_code != 0
    assert "no such file or directory" in result.output and "nope" in result.output


def test_nucleus_sampling_draws_only_from_the_smallest_set_reaching_top_p(backend):
    import torch

    from rejoinder.llm.backends.torch import _Request

    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])  # probabilities .64 .23 .09 .03 .01
    params = GenerationParams(top_p=0.8, temperature=1.0, repetition_penalty=1.0, seed=5)
    request = _Request([], params, Cancel(), torch)
    drawn = {backend.engine._sample(request, logits)[0] for _ in range(300)}
    assert drawn == {0, 1}


def test_seeded_rows_draw_from_the_whole_distribution_with_its_frequencies_and_repeat_with_their_seed():
    import torch

    from rejoinder.llm.backends.torch import _inverse_cdf

    probs = torch.tensor([[0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    generator = torch.Generator().manual_seed(1)
    drawn = [_inverse_cdf(torch, probs[:1], [generator])[0] for _ in range(4000)]
    counts = [drawn.count(k) / len(drawn) for k in range(5)]
    assert counts[1] == counts[4] == 0.0  # probability 0 is never drawn
    assert counts[0] == pytest.approx(0.5, abs=0.03) and counts[2] == pytest.approx(0.3, abs=0.03)
    assert _inverse_cdf(torch, probs, [torch.Generator().manual_seed(1)] * 2)[1] == 4

    def seeded() -> list:
        return [torch.Generator().manual_seed(seed) for seed in (5, 6)]

    assert _inverse_cdf(torch, probs, seeded()) == _inverse_cdf(torch, probs, seeded())
