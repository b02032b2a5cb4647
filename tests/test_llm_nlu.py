"""The LLM NLU of the frame bot: the constrained decoder's guarantee (any model, even a random one,
writes one parseable JSON object of the schema), the mapping of the answer to a Parse, and the frame
bot, the factories and ``eval dialogues`` running on it. No real model: a tiny random Llama and
scripted fake backends."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rejoinder.bots.frames.bot import EXAMPLES, FrameBot, _start_demo_backend
from rejoinder.bots.frames.demo_backend import free_port
from rejoinder.bots.frames.domain import DEFAULT_RESPONSES, Domain, load_domain
from rejoinder.bots.frames.nlu.llm import LLMNLU, NONE, OutputSchema, Understanding, locate
from rejoinder.bots.frames.schema import Slot, parse_frame
from rejoinder.datasets.nlu import Example, Span
from rejoinder.dialogue import Cancel, Dialogue, Message
from rejoinder.llm.backends import Backend
from rejoinder.llm.constrained import DONE, ConstrainedDecoder, JsonGrammar, TokenTable, token_texts
from rejoinder.llm.generation import GenerationParams

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # a Thursday
LOCAL_NOW = NOW.replace(tzinfo=None)

# -- a small domain: two frames with different slots, and a plain-response intent ------------------

TRAVEL = {
    "name": "travel",
    "intents": ["book_ticket"],
    "slots": [
        {"name": "from", "type": "city"},
        {"name": "to", "type": "city", "prompt": "Where to?", "is_required": True},
        {"name": "date", "type": "date", "prompt": "When?", "is_required": True},
    ],
}
CARD = {
    "name": "block_card",
    "intents": ["block_card"],
    "slots": [{"name": "card", "type": "enum", "prompt": "Which card?", "is_required": True,
               "choices": ["debit", {"value": "credit", "synonyms": ["mastercard", "credit card"]}]}],
}  # fmt: skip


def small_domain() -> Domain:
    responses = {**DEFAULT_RESPONSES["en"], "opening_hours": "We are open 9 to 6."}
    return Domain("test", "en", [parse_frame(TRAVEL), parse_frame(CARD)], None, responses)


def small_schema(max_value_chars: int = 10) -> OutputSchema:
    return OutputSchema.for_domain(small_domain(), max_value_chars=max_value_chars)


def grammar_of(schema: OutputSchema) -> JsonGrammar:
    """The automaton the backends constrain the NLU's answers with."""
    return JsonGrammar(schema.json_schema())


# -- a tiny random chat model -------------------------------------------------------------------------

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    '{"intent": "book_ticket", "slots": {"to": "Paris", "date": "tomorrow"}}',
    '{"intent": "none", "slots": {}} {"intent":"block_card","slots":{"card":"credit"}}',
    "I want to fly from London to Berlin on Friday, please block my credit card",
    'Привет! Я потерял карту. "quoted" back\\slash',
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    """Byte-level BPE trained on JSON-ish text, so multi-character tokens cross the grammar's states."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<pad>")
    fast.chat_template = CHATML
    return fast


def tiny_backend(tokenizer, tmp_path: Path, seed: int = 0, **options):
    """The shared tiny random model (tests/llm_tiny.py) over this file's character-level tokenizer."""
    from llm_tiny import tiny_backend as shared

    return shared(tmp_path, tokenizer=tokenizer, seed=seed, max_positions=4096, **options)


# -- scripted fake backends ---------------------------------------------------------------------------


class ScriptedBackend(Backend):
    """Answers each user message with ``answer(message)``; remembers the chats it was sent."""

    name = "scripted"
    model_name = "scripted"

    def __init__(self, answer: Callable[[str], str] | dict[str, str]) -> None:
        self.answer = answer if callable(answer) else answer.__getitem__
        self.chats: list[list[dict[str, str]]] = []

    def stream_chat(self, messages, params: GenerationParams, cancel: Cancel | None = None, **_) -> Iterator[str]:
        self.chats.append([dict(m) for m in messages])
        yield self.answer(messages[-1]["content"])

    def stream_text(self, prompt: str, params: GenerationParams, cancel: Cancel | None = None, **_) -> Iterator[str]:
        raise NotImplementedError

    def count_chat_tokens(self, messages) -> int:
        return 0


def answer(intent: str, **slots: str) -> str:
    return json.dumps({"intent": intent, "slots": slots}, ensure_ascii=False)


# == the grammar ======================================================================================


def test_grammar_accepts_json_dumps_and_compact_objects_of_the_schema():
    grammar = grammar_of(small_schema())
    for text in (
        answer("book_ticket", to="Paris", date="tomorrow"),
        answer(NONE),
        answer("block_card", card="my visa"),
        '{"intent":"opening_hours","slots":{}}',
        '{"intent": "none", "slots": { "to": "Rome","from":"Oslo"}}',
    ):
        assert grammar.accepts(text), text
        assert all(grammar.accepts_prefix(text[:n]) for n in range(len(text) + 1))
        assert not any(grammar.accepts(text[:n]) for n in range(len(text)))  # complete only at the end


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (answer("book_flight"), "intent outside the enum"),
        ('{"intent": "book", "slots": {}}', "a prefix of an intent is not an intent"),
        (answer("block_card", to="Paris"), "slot of another frame"),
        (answer("book_ticket", card="credit"), "slot of another frame"),
        ('{"intent": "none", "slots": {"to": "a", "to": "b"}}', "a slot given twice"),
        (answer(NONE, to="x" * 11), "value longer than the limit"),
        ('{"intent": "none", "slots": {"to": "a\\"b"}}', "escapes"),
        ('{"intent": "none", "slots": {"to": "a\nb"}}', "control characters"),
        ('{"slots": {}, "intent": "none"}', "keys in another order"),
        ('{"intent":  "none", "slots": {}}', "two spaces"),
        ('{"intent": "none", "slots": {}} ', "text after the object"),
        ('{"intent": "none", "slots": {"to": 5}}', "a value that is not a string"),
    ],
)
def test_grammar_rejects_what_the_schema_forbids(text, why):
    assert not grammar_of(small_schema()).accepts(text), why


def test_every_accepted_object_parses_as_json_of_the_schema():
    schema = small_schema()
    grammar = grammar_of(schema)
    for intent in schema.labels:
        for names in ((), schema.slots_of(intent)[:1], schema.slots_of(intent)):
            text = answer(intent, **{name: "Ok, ёж!" for name in names})
            assert grammar.accepts(text)
            data = json.loads(text)
            assert data["intent"] in schema.labels and set(data["slots"]) <= set(schema.slots_of(intent))


def test_json_schema_ties_slot_names_to_intents_and_compiles_for_llama_cpp():
    schema = small_schema()
    tied = schema.json_schema()
    groups = {tuple(alt["properties"]["intent"]["enum"]): set(alt["properties"]["slots"]["properties"])
              for alt in tied["anyOf"]}  # fmt: skip
    assert groups == {
        ("book_ticket",): {"from", "to", "date"},
        ("block_card",): {"card"},
        ("opening_hours", NONE): {"from", "to", "date", "card"},
    }
    flat = schema.json_schema(per_intent=False)
    assert flat["properties"]["intent"]["enum"] == ["book_ticket", "block_card", "opening_hours", NONE]
    assert flat["properties"]["slots"]["properties"]["to"] == {"type": "string", "maxLength": 10}
    llama_cpp = pytest.importorskip("llama_cpp")
    grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(tied), verbose=False)
    assert "book_ticket" in grammar._grammar


# == the token mask ===================================================================================


def test_token_texts_map_byte_level_pieces_back_to_text(tokenizer):
    texts, special = token_texts(tokenizer)
    assert special == {tokenizer.convert_tokens_to_ids(t) for t in ("<pad>", "<|im_start|>", "<|im_end|>")}
    for word in (" Berlin", '{"', "Привет", ' "quoted"'):
        ids = tokenizer(word)["input_ids"]
        assert "".join(texts[i] for i in ids) == word


def _states_along(grammar: JsonGrammar, text: str) -> list:
    states, state = [grammar.start], grammar.start
    for char in text:
        state = grammar.step(state, char)
        states.append(state)
    return states


def test_allowed_tokens_are_exactly_those_that_keep_a_valid_prefix(tokenizer):
    grammar = grammar_of(small_schema(max_value_chars=10))
    table = TokenTable(tokenizer, {tokenizer.eos_token_id})
    decoder = ConstrainedDecoder(grammar, table)
    text = '{"intent": "book_ticket", "slots": {"to": "Paris ёж", "date":"tomorrow!!"}}'
    assert grammar.accepts(text)
    for state in _states_along(grammar, text):
        allowed = set().union(*(set(part.tolist()) for part in decoder.allowed(state)))
        if state == DONE:
            assert allowed == {tokenizer.eos_token_id}
            continue
        brute = {
            i
            for i, piece in enumerate(table.texts)
            if piece and i not in table.special and grammar.advance(state, piece) is not None
        }
        assert allowed == brute, state
        assert tokenizer.eos_token_id not in allowed  # EOS only once the object is complete


@pytest.mark.parametrize("prefix_cache", [True, False], ids=["prefix-cached", "prefilled-whole"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_random_model_under_the_mask_always_writes_parseable_json_of_the_schema(
    tokenizer, tmp_path, seed, prefix_cache
):
    backend = tiny_backend(tokenizer, tmp_path, seed=seed, **({} if prefix_cache else {"prefix_cache_bytes": 0}))
    nlu = LLMNLU(small_domain(), backend, shots=0, max_value_chars=10)
    for temperature, text in ((1.5, "block my credit card"), (1.0, "fly to Paris"), (0.0, "hello")):
        nlu.params = nlu.params.with_(temperature=temperature, top_p=1.0, seed=seed)
        understood = nlu.understand(text)
        assert nlu.grammar.accepts(understood.raw), understood.raw
        data = json.loads(understood.raw)
        assert data["intent"] in nlu.schema.labels
        assert set(data["slots"]) <= set(nlu.schema.slots_of(data["intent"]))
        assert all(isinstance(v, str) and len(v) <= 10 for v in data["slots"].values())
        assert understood.valid and 0.0 < understood.confidence <= 1.0


def test_greedy_constrained_decoding_is_repeatable_and_its_confidence_a_probability(tokenizer, tmp_path):
    nlu = LLMNLU(small_domain(), tiny_backend(tokenizer, tmp_path, seed=7), shots=0, max_value_chars=8)
    first, second = nlu.understand("fly to Rome"), nlu.understand("fly to Rome")
    assert first.raw == second.raw and first.confidence == pytest.approx(second.confidence)
    assert 0.0 < first.confidence <= 1.0
    assert nlu.params.temperature == 0 and nlu.params.repetition_penalty == 1.0


def test_the_prompt_shared_by_every_utterance_is_prefilled_once_and_changes_nothing(tokenizer, tmp_path):
    backend = tiny_backend(tokenizer, tmp_path, seed=11)
    uncached = tiny_backend(tokenizer, tmp_path, seed=11, prefix_cache_bytes=0)  # the same weights, no cache
    examples = [Example("fly to Paris", "book_ticket", (Span(7, 12, "to"),)), Example("block it", "block_card")]
    cached = LLMNLU(small_domain(), backend, examples=examples, shots=1, max_value_chars=8)
    plain = LLMNLU(small_domain(), uncached, examples=examples, shots=1, max_value_chars=8)
    one, other = (backend.chat_ids(cached.messages(t)) for t in ("0", "Z"))
    shared = next(i for i, (a, b) in enumerate(zip(one, other, strict=False)) if a != b)
    fed: list[int] = []
    forward = backend.model.forward

    @functools.wraps(forward)  # keeps the signature the decoders inspect
    def counting(*args, **kwargs):
        fed.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    backend.model.forward = counting
    for turn, text in enumerate(("fly to Rome tomorrow", "block my credit card", "fly to Rome tomorrow")):
        fed.clear()
        first = cached.understand(text)
        feeds = fed[:]
        again = plain.understand(text)
        assert (again.raw, again.intent, again.slots) == (first.raw, first.intent, first.slots)
        assert again.confidence == pytest.approx(first.confidence, rel=1e-4)
        prompt = len(backend.chat_ids(cached.messages(text)))
        # the whole prompt on the first call; then only what differs from a stored prompt; then a token a step
        assert feeds[0] == prompt if turn == 0 else feeds[0] <= prompt - shared
        assert set(feeds[1:]) <= {1}
    assert backend.engine.prefixes.hits == 2


def test_the_torch_parse_of_a_random_model_is_a_well_formed_parse(tokenizer, tmp_path):
    nlu = LLMNLU(small_domain(), tiny_backend(tokenizer, tmp_path, seed=3), shots=0, max_value_chars=8)
    parse = nlu.parse("yes, block my credit card", LOCAL_NOW)
    assert parse.intent in (None, "book_ticket", "block_card", "opening_hours")
    assert "affirm" in parse.acts
    assert all(0 <= s.start < s.end <= len(parse.text) for s in parse.tagged)


# == from the LLM's answer to a Parse =================================================================


def test_the_answer_becomes_intent_confidence_and_tagged_spans():
    text = "I want to fly from London to Paris tomorrow"
    backend = ScriptedBackend({text: answer("book_ticket", **{"from": "London", "to": "paris", "date": "tomorrow"})})
    parse = LLMNLU(small_domain(), backend).parse(text, LOCAL_NOW)
    assert parse.intent == "book_ticket" and parse.confidence == 1.0
    assert [(text[s.start : s.end], s.slot) for s in parse.tagged] == [
        ("London", "from"),
        ("Paris", "to"),
        ("tomorrow", "date"),
    ]


def test_none_means_no_intent_and_dialogue_acts_come_from_the_word_rules():
    backend = ScriptedBackend({"yes, that's right": answer(NONE)})
    parse = LLMNLU(small_domain(), backend).parse("yes, that's right", LOCAL_NOW)
    assert parse.intent is None and parse.tagged == [] and parse.acts == ["affirm"]


@pytest.mark.parametrize("reply", ["Sure! I think the user wants a ticket.", "{oops", '["none"]', ""])
def test_a_reply_that_is_not_a_json_object_reads_as_no_intent(reply):
    understood = LLMNLU(small_domain(), ScriptedBackend(lambda _: reply)).understand("fly to Paris")
    assert understood.intent == NONE and understood.slots == {} and understood.confidence == 0.0
    assert not understood.valid


def test_an_intent_outside_the_schema_reads_as_no_intent_with_zero_confidence():
    reply = '{"intent": "book_flight", "slots": {"to": "Paris", "card": "visa"}}'
    understood = LLMNLU(small_domain(), ScriptedBackend(lambda _: reply)).understand("fly to Paris")
    assert (understood.intent, understood.confidence, understood.valid) == (NONE, 0.0, False)
    assert understood.slots == {"to": "Paris", "card": "visa"}  # slot names are checked on their own


def test_slot_names_outside_the_intents_frame_and_empty_values_are_dropped():
    reply = 'Here: {"intent": "block_card", "slots": {"card": "credit", "to": "Paris", "x": "y"}} done'
    understood = LLMNLU(small_domain(), ScriptedBackend(lambda _: reply)).understand("block my credit card")
    assert understood == Understanding("block_card", {"card": "credit"}, 1.0, reply, True)
    blank = answer("block_card", card=" ")
    assert LLMNLU(small_domain(), ScriptedBackend(lambda _: blank)).understand("block it").slots == {}


def test_slot_strings_are_found_verbatim_by_their_typed_value_or_fuzzily():
    city = Slot(name="to", type="city")
    card = small_domain().frame("block_card").slot("card")
    assert locate("to PARIS please", "Paris", city) == (3, 8)
    assert locate("из Москвы в Питер", "Moscow", city, language="ru", now=LOCAL_NOW) == (3, 9)
    start, end = locate("block my mastercard", "credit", card, now=LOCAL_NOW)
    assert "block my mastercard"[start:end].endswith("mastercard")  # where the enum parser reads "credit"
    assert locate("a ticket to Barcelonna", "Barcelona", city) == (12, 22)
    assert locate("a ticket to Rome", "Tokyo", city) is None
    assert locate("from Rome to Rome", "Rome", city, [(5, 9)]) == (13, 17)  # a span is not used twice


def test_a_slot_string_not_said_by_the_user_fills_nothing():
    backend = ScriptedBackend(lambda _: answer("book_ticket", to="Berlin"))
    assert LLMNLU(small_domain(), backend).parse("book me a ticket", LOCAL_NOW).tagged == []


def test_the_prompt_lists_intents_and_slots_and_its_examples_fit_the_schema():
    domain = load_domain(EXAMPLES / "bank_en" / "domain.yaml")
    backend = ScriptedBackend(lambda _: answer(NONE))
    nlu = LLMNLU(domain, backend, shots=2)
    for name in ("lost_card", "block_card", "balance", "transfer_status", "dispute", "opening_hours", NONE):
        assert f"- {name}: " in nlu.system
    assert "one of debit, credit" in nlu.system and "- merchant (dispute): free text" in nlu.system
    assert len(nlu.shots) >= 2 * 6
    assert all(nlu.grammar.accepts(reply) for _, reply in nlu.shots)
    nlu.parse("my card is gone", LOCAL_NOW)
    [chat] = backend.chats
    assert chat[0] == {"role": "system", "content": nlu.system}
    assert chat[-1] == {"role": "user", "content": "my card is gone"}
    assert [m["role"] for m in chat[1:-1]] == ["user", "assistant"] * len(nlu.shots)


def test_examples_may_be_given_and_ones_that_do_not_fit_are_left_out():
    examples = [
        Example("fly to Paris", "book_ticket", (Span(7, 12, "to"),)),
        Example("block card", "block_card", (Span(0, 5, "to"),)),  # "to" is not a card slot
        Example("what?", "unknown"),
    ]
    nlu = LLMNLU(small_domain(), ScriptedBackend(lambda _: ""), examples=examples, shots=3)
    assert [said for said, _ in nlu.shots] == ["fly to Paris", "Paris", "yes, that's right"]


def test_the_openai_backend_is_asked_for_the_json_schema_and_bad_json_reads_as_none():
    from rejoinder.llm.backends.openai import OpenAIBackend

    bodies, replies = [], iter(['{"intent": "block_card", "slots": {"card": "credit"}}', "not json"])

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        event = {"choices": [{"delta": {"content": next(replies)}}]}
        return httpx.Response(200, text=f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n")

    backend = OpenAIBackend("http://llm.invalid/v1", model="m")
    backend.client = httpx.Client(base_url=backend.base_url, transport=httpx.MockTransport(handler))
    nlu = LLMNLU(small_domain(), backend, shots=0)
    parse = nlu.parse("block my credit card", LOCAL_NOW)
    assert parse.intent == "block_card" and [(s.start, s.end, s.slot) for s in parse.tagged] == [(9, 15, "card")]
    assert nlu.parse("block my credit card", LOCAL_NOW).intent is None
    schema = bodies[0]["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["schema"] == nlu.schema.json_schema()
    assert bodies[0]["temperature"] == 0.0


# == the frame bot on the LLM NLU =====================================================================


def _keyword_llm(message: str) -> str:
    """A stand-in LLM for the travel domain: books on travel words, copies cities and days it knows."""
    slots = {}
    for role, city in re.findall(r"\b(from|to)\s+(Paris|London|Rome|Berlin)\b", message):
        slots[role] = city
    if re.fullmatch(r"(Paris|London|Rome|Berlin)", message):
        slots["to"] = message
    day = re.search(r"\b(tomorrow|next \w+day|on \w+day)\b", message)
    if day:
        slots["date"] = day.group(1)
    intent = "book_ticket" if re.search(r"\b(fly|ticket|flight|travel)\b", message, re.I) else NONE
    return answer(intent, **slots)


@pytest.fixture(scope="module")
def travel_domain():
    return _start_demo_backend(load_domain(EXAMPLES / "travel" / "domain.yaml"), free_port())


def talk(bot: FrameBot, lines: list[str]) -> tuple[list, Dialogue]:
    dialogue = Dialogue(bot="travel", conversation_id="llm-1")
    replies = []
    for line in lines:
        dialogue.messages.append(Message("user", line, created_at=NOW))
        reply = bot.respond(dialogue)
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta))
        replies.append(reply)
    return replies, dialogue


def test_the_frame_bot_books_a_trip_with_the_llm_nlu(travel_domain):
    bot = FrameBot(travel_domain, LLMNLU(travel_domain, ScriptedBackend(_keyword_llm)), name="travel")
    replies, dialogue = talk(bot, ["I'd like a ticket from London please", "Rome", "next Friday", "yes"])
    assert [r.meta["action"] for r in replies] == ["ask:to", "ask:date", "confirm", "submitted"]
    assert replies[2].text == "Tickets from London to Rome on Friday 4 December 2026"
    assert replies[3].text.startswith("Booked: Rome on Friday 4 December 2026. Your booking number is TK-")
    assert replies[0].meta["nlu"]["intent"] == "book_ticket"
    assert replies[0].meta["nlu"]["tagged"] == [("London", "from")]
    slots = {name: item["value"] for name, item in dialogue.state["last"]["slots"].items()}
    assert slots == {"from": "London", "to": "Rome", "date": "2026-12-04"}


def test_create_travel_with_nlu_llm_loads_the_named_backend(monkeypatch):
    from rejoinder.bots.frames import bot as frame_bot
    from rejoinder.llm import backends

    asked = {}

    def fake_load_backend(backend="auto", **options):
        asked.update(options, backend=backend)
        return ScriptedBackend(_keyword_llm)

    monkeypatch.setattr(backends, "load_backend", fake_load_backend)
    bot = frame_bot.create_travel(nlu="llm", model="tiny.gguf", backend="llama.cpp", demo_backend_port=free_port())
    assert isinstance(bot.nlu, LLMNLU) and bot.name == "travel"
    assert asked == {"backend": "llama.cpp", "model": "tiny.gguf", "base_url": None, "api_key": None}
    with pytest.raises(Exception, match="nlu='gpt'"):
        frame_bot.create_travel(nlu="gpt")


def test_cli_eval_dialogues_runs_the_simulator_on_the_llm_nlu(monkeypatch, tmp_path):
    from rejoinder.cli import app
    from rejoinder.llm import backends

    monkeypatch.setattr(backends, "load_backend", lambda backend="auto", **_: ScriptedBackend(_keyword_llm))
    output = tmp_path / "report.json"
    command = ["eval", "dialogues", "--bot", "travel", "-n", "3", "--nlu", "llm", "--backend", "torch"]
    result = CliRunner().invoke(app, [*command, "--json", str(output)])
    assert result.exit_code == 0, result.output
    assert "LLM NLU, torch" in result.output and "task success rate" in result.output
    assert json.loads(output.read_text())["dialogues"] == 3
    bad = CliRunner().invoke(app, ["eval", "dialogues", "--bot", "travel", "--nlu", "gpt"])
    assert bad.exit_code != 0 and "--nlu" in bad.output


def test_the_llm_words_the_next_question_and_a_bad_wording_falls_back_to_the_prompt(travel_domain):
    from rejoinder.bots.frames.nlu.llm import QuestionPhraser

    def llm(message: str) -> str:
        if message.startswith("Question: What city"):
            return "Where would you like to go?"
        if message.startswith("Question: When"):
            return "Sure thing"  # not a question: the frame's own prompt is asked instead
        return _keyword_llm(message)

    backend = ScriptedBackend(llm)
    bot = FrameBot(travel_domain, LLMNLU(travel_domain, backend), name="travel")
    bot.phraser = QuestionPhraser(backend, "en")
    replies, _ = talk(bot, ["I'd like a ticket from London please", "Rome"])
    assert replies[0].text == "Where would you like to go?"
    assert replies[1].text == travel_domain.frame("travel").slot("date").prompt
    wording = [chat for chat in backend.chats if chat[0]["content"].startswith("You help")]
    assert "Already known: from: London" in wording[0][1]["content"]


def test_phrasing_questions_needs_the_llm_nlu():
    from rejoinder.bots.frames import bot as frame_bot

    with pytest.raises(Exception, match="phrase_questions=true needs nlu=llm"):
        frame_bot.create_travel(phrase_questions="true")
