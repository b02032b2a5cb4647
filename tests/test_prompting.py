"""Prompt templates: loading and checking, zero- and few-shot prompts, choice mapping, evaluation, the CLI.

No real model runs here: a scripted backend answers exactly as told, and a tiny randomly initialised
Llama (built in the test, a few kilobytes) checks the path through the PyTorch backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DATA
from rejoinder.cli import app
from rejoinder.dialogue import Cancel
from rejoinder.errors import ConfigError, SourceError
from rejoinder.llm import prompting
from rejoinder.llm.backends import Backend, Messages
from rejoinder.llm.generation import GenerationParams
from rejoinder.llm.prompting import (
    MissingFields,
    Template,
    evaluate_template,
    load_template,
    map_choice,
    normalise_label,
    parse_template,
    placeholders,
    prepare_job,
    read_jsonl,
    render,
    run_template,
    sample_examples,
    shipped_templates,
)

runner = CliRunner()

LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card"]


class ScriptedBackend(Backend):
    """Answers each prompt with ``answer(last user text or prompt)``; remembers what it was asked."""

    name = "scripted"
    model_name = "scripted-model"

    def __init__(self, answer: Callable[[str], str], *, chat_template: bool = True) -> None:
        self.answer = answer
        self.has_chat_template = chat_template
        self.chats: list[list[dict[str, str]]] = []
        self.texts: list[str] = []
        self.params: list[GenerationParams] = []
        self.closed = False

    def stream_chat(
        self, messages: Messages, params: GenerationParams, cancel: Cancel | None = None, **_
    ) -> Iterator[str]:
        self.chats.append(list(messages))
        self.params.append(params)
        yield self.answer(messages[-1]["content"])

    def stream_text(self, prompt: str, params: GenerationParams, cancel: Cancel | None = None, **_) -> Iterator[str]:
        self.texts.append(prompt)
        self.params.append(params)
        yield self.answer(prompt.rsplit("\n\n", 1)[-1])

    def count_chat_tokens(self, messages: Messages) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def close(self) -> None:
        self.closed = True


def by_text(answers: dict[str, str]) -> Callable[[str], str]:
    """An answer function: the answer of the first key found in the prompt's last part."""

    def answer(prompt: str) -> str:
        return next((value for key, value in answers.items() if key in prompt), "no idea")

    return answer


def chat_template(**changes) -> Template:
    base = Template(
        name="t",
        mode="chat",
        instruction="Classify the message. Intents: {choices}.",
        input="{text}",
        output_prefix="Intent:",
        stop=("\n",),
        max_new_tokens=8,
        choices=tuple(LABELS),
    )
    return replace(base, **changes)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


# -- templates: the shipped ones and the checks ----------------------------------------------------
def test_shipped_templates_include_zero_shot_few_shot_base_and_a_generic_task_and_all_load():
    names = shipped_templates()
    assert {"intent-zero-shot", "intent-few-shot", "intent-few-shot-base", "summarize", "qa"} <= set(names)
    loaded = {name: load_template(name) for name in names}
    assert loaded["intent-zero-shot"].mode == "chat" and loaded["intent-zero-shot"].shots == 0
    assert loaded["intent-few-shot"].mode == "chat" and loaded["intent-few-shot"].shots >= 3
    assert loaded["intent-few-shot-base"].mode == "text" and loaded["intent-few-shot-base"].output_prefix == "Intent:"
    assert all(t.name == name and t.description for name, t in loaded.items())
    assert loaded["intent-zero-shot"].choices_from == "labels" and loaded["summarize"].classifies is False


def test_template_given_as_a_path_loads_that_file(tmp_path):
    path = write(tmp_path / "mine.yaml", "name: mine\nmode: chat\ninstruction: Be brief.\ninput: '{question}'\n")
    template = load_template(str(path))
    assert template.name == "mine" and template.input_fields == ("question",) and template.path == path


def test_unknown_template_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"not a shipped template \(.*intent-zero-shot"):
        load_template("no-such-template")


BAD_TEMPLATES = [
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nshots: 3\n",
        "key 'shots': unknown key",
        5,
        id="unknown-key",
    ),
    pytest.param(
        "name: x\nmode: chatty\ninstruction: hi\ninput: '{text}'\n", "key 'mode': expected 'chat'", 2, id="mode"
    ),
    pytest.param("name: x\nmode: chat\ninput: '{text}'\n", "missing required key 'instruction'", 1, id="missing-key"),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text.__class__}'\n",
        "key 'input': placeholder {text.__class__} is not a plain {field} name",
        4,
        id="unsafe-placeholder",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: 'Pick from {labels}'\ninput: '{text}'\nchoices: [a, b]\n",
        "key 'instruction': unknown placeholder {labels}; this key takes: {choices}",
        3,
        id="instruction-placeholder",
    ),
    pytest.param(
        "name: x\nmode: text\ninstruction: hi\ninput: '{text}'\n",
        "key 'output_prefix': a text-mode template needs an output prefix",
        1,
        id="text-without-prefix",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nexamples:\n  - text: hello\n",
        "key 'examples[0]': missing 'output'",
        6,
        id="example-without-output",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nexamples:\n  - output: a\n",
        "key 'examples[0]': missing field 'text', which the input uses",
        6,
        id="example-without-input-field",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nchoices: [a, b]\n"
        "examples:\n  - text: t\n    output: c\n",
        "key 'examples[0].output': 'c' is not one of the choices",
        8,
        id="example-output-not-a-choice",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nchoices: [a]\nchoices_from: labels\n",
        "key 'choices_from': give 'choices' or 'choices_from', not both",
        6,
        id="choices-twice",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nmax_new_tokens: 0\n",
        "key 'max_new_tokens': expected an integer of at least 1",
        5,
        id="max-new-tokens",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: hi\ninput: '{text}'\nstop: ['']\n",
        "key 'stop[0]': a stop sequence must be a non-empty string",
        5,
        id="empty-stop",
    ),
    pytest.param(
        "name: x\nmode: chat\ninstruction: 'one of {choices}'\ninput: '{text}'\n",
        "key 'instruction': {choices} is used but the template has no 'choices' nor 'choices_from'",
        3,
        id="choices-placeholder-without-choices",
    ),
    pytest.param("name: x\nmode: [chat\n", "the template is not valid YAML", 3, id="yaml-syntax"),
    pytest.param("- just\n- a list\n", "a template must be a mapping of keys", 1, id="not-a-mapping"),
]


@pytest.mark.parametrize(("text", "message", "line"), BAD_TEMPLATES)
def test_malformed_template_fails_naming_the_file_the_line_the_key_and_the_fault(tmp_path, text, message, line):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(SourceError) as caught:
        load_template(path)
    error = caught.value
    assert error.path == str(path)
    assert message in error.reason
    assert error.line == line
    assert str(error).startswith(str(path))


# -- safe formatting and prompt construction -------------------------------------------------------
def test_render_fills_plain_fields_keeps_double_braces_and_names_every_missing_field():
    assert render("{a} and {{literal}} {b}", {"a": 1, "b": "x"}) == "1 and {literal} x"
    with pytest.raises(MissingFields) as caught:
        render("{text} / {lang} / {text}", {"label": "x"})
    assert caught.value.missing == ("text", "lang")
    assert caught.value.describe() == "missing fields 'text', 'lang' (the record has 'label')"


def test_placeholders_refuse_attribute_index_conversion_and_format_spec():
    assert placeholders("{a} {b} {a}") == ["a", "b", "a"]
    for unsafe in ("{a.b}", "{a[0]}", "{a!r}", "{a:>9}", "{0}", "{"):
        with pytest.raises(ValueError):
            placeholders(unsafe)


def test_zero_shot_chat_prompt_is_the_instruction_as_system_then_the_input():
    template = chat_template()
    assert template.prompt({"text": "Where is my card?"}) == [
        {
            "role": "system",
            "content": "Classify the message. Intents: card_arrival, exchange_rate, lost_or_stolen_card.",
        },
        {"role": "user", "content": "Where is my card?"},
    ]


def test_few_shot_chat_prompt_puts_each_example_as_a_user_assistant_pair_before_the_input():
    template = chat_template().with_examples(
        [{"text": "card not here", "output": "card_arrival"}, {"text": "rate?", "output": "exchange_rate"}]
    )
    assert template.prompt({"text": "wallet stolen"}) == [
        {
            "role": "system",
            "content": "Classify the message. Intents: card_arrival, exchange_rate, lost_or_stolen_card.",
        },
        {"role": "user", "content": "card not here"},
        {"role": "assistant", "content": "card_arrival"},
        {"role": "user", "content": "rate?"},
        {"role": "assistant", "content": "exchange_rate"},
        {"role": "user", "content": "wallet stolen"},
    ]


BASE_TEMPLATE = """\
name: base
mode: text
instruction: |
  Label each message with its intent, one of: {choices}.
input: "Input: {text}"
output_prefix: "Intent:"
stop: ["\\n"]
choices: [card_arrival, exchange_rate, lost_or_stolen_card]
examples:
  - text: card not here
    output: card_arrival
  - text: what is the rate
    output: exchange_rate
"""


def test_few_shot_text_prompt_is_gpt3_style_instruction_examples_then_query_and_prefix():
    template = parse_template(BASE_TEMPLATE, "base.yaml")
    assert template.stop == ("\n",)
    assert template.prompt({"text": "wallet stolen"}) == (
        "Label each message with its intent, one of: card_arrival, exchange_rate, lost_or_stolen_card.\n"
        "\n"
        "Input: card not here\n"
        "Intent: card_arrival\n"
        "\n"
        "Input: what is the rate\n"
        "Intent: exchange_rate\n"
        "\n"
        "Input: wallet stolen\n"
        "Intent:"
    )


def test_zero_shot_text_prompt_is_instruction_blank_line_query_and_prefix():
    template = parse_template(BASE_TEMPLATE, "base.yaml").with_examples([])
    assert template.prompt({"text": "hi"}) == (
        "Label each message with its intent, one of: card_arrival, exchange_rate, lost_or_stolen_card.\n"
        "\nInput: hi\nIntent:"
    )


def test_instruction_with_unresolved_choices_from_labels_asks_for_labelled_data():
    template = load_template("intent-zero-shot")
    with pytest.raises(ConfigError, match="choices_from: labels"):
        template.prompt({"text": "hi"})
    resolved = template.with_choices(["b_label", "a_label", "b_label"])
    assert resolved.choices == ("a_label", "b_label")
    assert "a_label, b_label" in resolved.prompt({"text": "hi"})[0]["content"]


def test_task_parameters_are_greedy_without_repetition_penalty_and_use_the_templates_stops():
    params = parse_template(BASE_TEMPLATE).params(seed=3)
    assert (params.temperature, params.repetition_penalty, params.stop, params.seed) == (0.0, 1.0, ("\n",), 3)
    assert params.max_new_tokens == 32


# -- choices ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "choice", "how"),
    [
        ("card_arrival", "card_arrival", "exact"),
        ("Card arrival", "card_arrival", "normalised"),
        ("CardArrival", "card_arrival", "normalised"),
        ("The intent is lost_or_stolen_card, I think", "lost_or_stolen_card", "contained"),
        ("card arival", "card_arrival", "fuzzy"),
        ("exchange-rates", "exchange_rate", "fuzzy"),
        ("I do not know what you mean", None, None),
        ("Sorry, I cannot tell you where your card is right now", None, None),
        ("", None, None),
        ("???", None, None),
    ],
)
def test_completion_maps_to_the_closest_choice_or_to_none(answer, choice, how):
    assert map_choice(answer, LABELS) == (choice, how)


def test_contained_choices_prefer_the_longest_match():
    assert map_choice("card payment not recognised", ["card_payment", "card_payment_not_recognised"])[0] == (
        "card_payment_not_recognised"
    )


def test_normalise_label_agrees_on_snake_camel_and_spaced_labels():
    assert normalise_label("AddToPlaylist") == normalise_label("add_to_playlist") == "add to playlist"
    assert normalise_label("  Card-Arrival. ") == "card arrival"


def test_clean_takes_the_first_line_without_an_echoed_prefix_quotes_or_full_stop():
    template = chat_template()
    assert template.clean('\n intent: "card_arrival".\nMore text') == "card_arrival"


# -- running and evaluating ------------------------------------------------------------------------
def test_run_template_keeps_the_raw_completion_beside_the_choice_and_reports_progress():
    backend = ScriptedBackend(by_text({"card": " Intent: Card arrival\n", "euro": "exchange rate"}))
    seen = []
    results = list(
        run_template(
            backend,
            chat_template(),
            [{"text": "my card?", "id": 1}, {"text": "euro price"}, {"text": "weather"}],
            progress=lambda done, total: seen.append((done, total)),
        )
    )
    assert [r.completion for r in results] == [" Intent: Card arrival\n", "exchange rate", "no idea"]
    assert [r.choice for r in results] == ["card_arrival", "exchange_rate", None]
    assert [r.match for r in results] == ["normalised", "normalised", None]
    assert results[0].as_record(True) == {
        "text": "my card?",
        "id": 1,
        "completion": " Intent: Card arrival\n",
        "choice": "card_arrival",
    }
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert backend.params[0].temperature == 0 and backend.params[0].stop == ("\n",)


def test_run_template_names_the_record_that_lacks_a_field():
    with pytest.raises(ConfigError, match=r"record 2: missing field 'text' \(the record has 'body'\)"):
        list(run_template(ScriptedBackend(str), chat_template(), [{"text": "a"}, {"body": "b"}]))


def test_chat_template_on_a_base_model_is_refused_pointing_at_text_mode_templates():
    backend = ScriptedBackend(str, chat_template=False)
    with pytest.raises(ConfigError, match=r"has no chat template.*intent-few-shot-base"):
        list(run_template(backend, chat_template(), [{"text": "a"}]))


def test_text_mode_sends_one_raw_prompt_per_record():
    backend = ScriptedBackend(lambda prompt: " card_arrival", chat_template=False)
    template = parse_template(BASE_TEMPLATE)
    [result] = run_template(backend, template, [{"text": "hi"}])
    assert backend.texts == [template.prompt({"text": "hi"})] and not backend.chats
    assert result.choice == "card_arrival"


def test_evaluation_counts_accuracy_invalid_answers_per_label_and_confusions_exactly():
    records = [
        {"text": "c1", "label": "card_arrival"},
        {"text": "c2", "label": "card_arrival"},
        {"text": "c3", "label": "card_arrival"},
        {"text": "e1", "label": "exchange_rate"},
        {"text": "e2", "label": "exchange_rate"},
        {"text": "l1", "label": "lost_or_stolen_card"},
        {"text": "l2", "label": "lost_or_stolen_card"},
        {"text": "l3", "label": "lost_or_stolen_card"},
    ]
    answers = {
        "c1": "card_arrival",
        "c2": "Card Arrival",
        "c3": "exchange_rate",
        "e1": "exchange rate",
        "e2": "dunno",
        "l1": "lost_or_stolen_card",
        "l2": "exchange_rate",
        "l3": "exchange_rate",
    }
    backend = ScriptedBackend(answers.__getitem__)
    report = evaluate_template(backend, chat_template(), records)
    assert report.examples == 8 and report.shots == 0
    assert report.accuracy == pytest.approx(4 / 8)
    assert report.invalid_rate == pytest.approx(1 / 8)
    assert report.per_label == {
        "card_arrival": {"gold": 3, "correct": 2, "predicted": 2},
        "exchange_rate": {"gold": 2, "correct": 1, "predicted": 4},
        "lost_or_stolen_card": {"gold": 3, "correct": 1, "predicted": 1},
    }
    assert report.confusions == [
        ("lost_or_stolen_card", "exchange_rate", 2),
        ("card_arrival", "exchange_rate", 1),
        ("exchange_rate", "(no choice)", 1),
    ]
    assert report.model == "scripted-model" and report.tokens_per_second is None
    assert report.seconds_per_example == pytest.approx(report.seconds / 8)
    data = report.as_dict()
    assert data["accuracy"] == 0.5 and data["confusions"][0] == ["lost_or_stolen_card", "exchange_rate", 2]


def test_evaluation_takes_choices_from_the_records_labels_and_reads_another_text_field():
    template = load_template("intent-zero-shot")
    records = [{"utterance": "a", "intent": "x_one"}, {"utterance": "b", "intent": "y_two"}]
    backend = ScriptedBackend({"a": "x one", "b": "x_one"}.__getitem__)
    report = evaluate_template(backend, template, records, label_field="intent", text_field="utterance")
    assert report.accuracy == 0.5 and report.invalid_rate == 0.0
    assert "x_one, y_two" in backend.chats[0][0]["content"]


def test_evaluation_without_choices_compares_the_cleaned_completion_to_the_label():
    template = Template(name="g", mode="chat", instruction="Answer.", input="{text}")
    backend = ScriptedBackend({"q1": " Paris.\n", "q2": "Lyon"}.__getitem__)
    report = evaluate_template(backend, template, [{"text": "q1", "label": "paris"}, {"text": "q2", "label": "Nice"}])
    assert report.accuracy == 0.5 and report.invalid_rate is None


def test_evaluation_names_a_record_without_a_label():
    with pytest.raises(ConfigError, match=r"record 2: missing field 'label'"):
        evaluate_template(ScriptedBackend(str), chat_template(), [{"text": "a", "label": "x"}, {"text": "b"}])


# -- JSONL input and demonstrations ----------------------------------------------------------------
def test_read_jsonl_skips_blank_lines_and_names_the_line_of_broken_json(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"text": "a"}\n\n{"text": "b"}\n{"text": "c",}\n')
    with pytest.raises(SourceError) as caught:
        read_jsonl(path)
    assert caught.value.line == 4 and caught.value.column == 14 and "not valid JSON" in caught.value.reason
    good = write(tmp_path / "good.jsonl", '{"text": "a"}\n\n{"text": "b"}\n')
    assert read_jsonl(good, ["text"]) == [{"text": "a"}, {"text": "b"}]


def test_read_jsonl_names_the_line_of_a_missing_field_and_of_a_non_object(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(SourceError, match=r"in.jsonl:2: missing field 'text' \(the record has 'body'\)"):
        read_jsonl(path, ["text"])
    with pytest.raises(SourceError, match=r"in.jsonl:1: expected a JSON object, found list"):
        read_jsonl(write(tmp_path / "in.jsonl", "[1, 2]\n"))
    with pytest.raises(SourceError, match="no records"):
        read_jsonl(write(tmp_path / "in.jsonl", "\n"))


def test_sampled_examples_are_balanced_across_labels_and_repeatable_by_seed():
    records = [{"text": f"{label} {i}", "label": label} for label in ("a", "b", "c") for i in range(10)]
    first = sample_examples(records, 6, seed=1)
    assert sorted(e["output"] for e in first) == ["a", "a", "b", "b", "c", "c"]
    assert all(e["text"].startswith(e["output"]) for e in first)
    assert sample_examples(records, 6, seed=1) == first
    assert sample_examples(records, 6, seed=2) != first
    assert len({e["output"] for e in sample_examples(records, 3, seed=5)}) == 3
    with pytest.raises(ConfigError, match="asked for 31 examples"):
        sample_examples(records, 31)


def test_shots_take_the_templates_first_examples_or_sample_them_from_a_training_file(tmp_path):
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "wallet gone", "label": "lost_or_stolen_card"}])
    three = prepare_job("intent-few-shot", inputs, shots=2, evaluate=True)
    assert three.template.examples == load_template("intent-few-shot").examples[:2]
    assert prepare_job("intent-few-shot", inputs, shots=0).template.shots == 0
    with pytest.raises(ConfigError, match="has 5 example"):
        prepare_job("intent-few-shot", inputs, shots=9)
    train = write_jsonl(
        tmp_path / "train.jsonl", [{"text": f"{label} {i}", "label": label} for label in LABELS for i in range(4)]
    )
    sampled = prepare_job("intent-zero-shot", inputs, shots=3, examples=train, seed=4)
    assert sorted(e["output"] for e in sampled.template.examples) == sorted(LABELS)
    assert sampled.template.choices == tuple(LABELS)  # training labels and the input's labels


def test_choices_from_labels_without_any_labelled_data_is_an_error(tmp_path):
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}])
    with pytest.raises(ConfigError, match=r"choices_from: labels.*--examples TRAIN\.jsonl"):
        prepare_job("intent-zero-shot", inputs)


# -- a real (tiny) model through the PyTorch backend -----------------------------------------------
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = "[UNK] <|im_start|> <|im_end|> system user assistant card arrival exchange rate lost stolen intent : _ ."


def tiny_backend(tmp_path: Path, *, with_chat_template: bool = True):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.models import ModelRef

    vocab = {word: i for i, word in enumerate(WORDS.split())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="<|im_end|>")
    if with_chat_template:
        tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        eos_token_id=vocab["<|im_end|>"],
        bos_token_id=None,
        pad_token_id=0,
    )
    model = transformers.LlamaForCausalLM(config)
    return TorchBackend(ModelRef("tiny", tmp_path, "hf"), model=model, tokenizer=tokenizer)


def test_tiny_llama_answers_chat_and_text_templates_deterministically_within_max_new_tokens(tmp_path):
    backend = tiny_backend(tmp_path)
    try:
        chat = chat_template(stop=(), max_new_tokens=4)
        records = [{"text": "card arrival"}, {"text": "lost card"}]
        first = list(run_template(backend, chat, records))
        again = list(run_template(backend, chat, records))
        assert [c.completion for c in first] == [c.completion for c in again]
        assert all(isinstance(c.completion, str) and c.tokens is not None and c.tokens <= 4 for c in first)
        assert all(c.choice is None or c.choice in LABELS for c in first)
        text = parse_template(BASE_TEMPLATE)
        [result] = run_template(backend, text, [{"text": "exchange rate"}], text.params().with_(max_new_tokens=3))
        assert isinstance(result.completion, str) and "\n" not in result.completion
        report = evaluate_template(backend, chat, [{"text": "card", "label": "card_arrival"}])
        assert report.tokens_per_second is None or report.tokens_per_second >= 0
    finally:
        backend.close()


def test_tiny_llama_without_chat_template_takes_text_mode_and_refuses_chat_mode(tmp_path):
    backend = tiny_backend(tmp_path, with_chat_template=False)
    assert backend.has_chat_template is False
    with pytest.raises(ConfigError, match="has no chat template"):
        list(run_template(backend, chat_template(), [{"text": "card"}]))
    text = parse_template(BASE_TEMPLATE)
    [result] = run_template(backend, text, [{"text": "card"}], text.params().with_(max_new_tokens=2))
    assert isinstance(result.completion, str)


# -- the command line ------------------------------------------------------------------------------
@pytest.fixture
def scripted(monkeypatch):
    """Every backend the CLI opens is a ScriptedBackend answering by keywords; returns the ones made."""
    made: list[ScriptedBackend] = []
    answers = {"card": "card_arrival", "euro": "Exchange rate", "wallet": "exchange_rate"}

    def fake_load_backend(backend="auto", **options):
        made.append(ScriptedBackend(by_text(answers)))
        made[-1].options = {"backend": backend, **options}
        return made[-1]

    monkeypatch.setattr(prompting, "load_backend", fake_load_backend)
    return made


INPUTS = [
    {"id": 1, "text": "where is my card", "label": "card_arrival"},
    {"id": 2, "text": "euro price", "label": "exchange_rate"},
    {"id": 3, "text": "wallet taken", "label": "lost_or_stolen_card"},
]


def test_cli_prompt_writes_one_jsonl_line_per_input_with_completion_and_choice(tmp_path, scripted):
    inputs = write_jsonl(tmp_path / "in.jsonl", INPUTS)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        [
            "prompt",
            "intent-few-shot",
            str(inputs),
            "--output",
            str(out),
            "--model",
            "m",
            "--shots",
            "2",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["completion"], r["choice"]) for r in rows] == [
        (1, "card_arrival", "card_arrival"),
        (2, "Exchange rate", "exchange_rate"),
        (3, "exchange_rate", "exchange_rate"),
    ]
    assert rows[0]["text"] == "where is my card" and rows[0]["label"] == "card_arrival"
    [backend] = scripted
    assert backend.options == {"backend": "auto", "model": "m", "base_url": None, "threads": 1} and backend.closed
    assert len(backend.chats[0]) == 1 + 2 * 2 + 1  # system, two example pairs, the input


def test_cli_prompt_without_output_prints_jsonl_on_stdout(tmp_path, scripted):
    template = write(tmp_path / "sum.yaml", "name: sum\nmode: chat\ninstruction: Summarise.\ninput: '{text}'\n")
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "card story"}])
    result = runner.invoke(app, ["prompt", str(template), str(inputs)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"text": "card story", "completion": "card_arrival"}
    ]


def test_cli_prompt_eval_prints_accuracy_and_invalid_rate_and_writes_the_json_report(tmp_path, scripted):
    inputs = write_jsonl(tmp_path / "in.jsonl", INPUTS)
    report_path = tmp_path / "report.json"
    result = runner.invoke(app, ["prompt", "intent-zero-shot", str(inputs), "--eval", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "66.67%" in result.stdout and "invalid answers" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["accuracy"] == pytest.approx(2 / 3) and report["invalid_rate"] == 0.0
    assert report["template"] == "intent-zero-shot" and report["shots"] == 0 and report["examples"] == 3
    assert report["confusions"] == [["lost_or_stolen_card", "exchange_rate", 1]]


def test_cli_prompt_reports_the_line_of_broken_jsonl_and_exits_2(tmp_path, scripted):
    inputs = write(tmp_path / "in.jsonl", '{"text": "a"}\n{"text": \n')
    result = runner.invoke(app, ["prompt", "summarize", str(inputs)])
    assert result.exit_code == 2
    assert f"{inputs}:2:" in result.stderr and "not valid JSON" in result.stderr
    assert not scripted  # no model loaded for bad input


def test_cli_prompt_reports_a_missing_field_with_its_line(tmp_path, scripted):
    inputs = write(tmp_path / "in.jsonl", '{"text": "a"}\n{"body": "b"}\n')
    result = runner.invoke(app, ["prompt", "summarize", str(inputs)])
    assert result.exit_code == 2 and f"{inputs}:2: missing field 'text'" in result.stderr


def test_cli_prompt_with_a_malformed_template_names_the_file_and_the_key(tmp_path, scripted):
    template = write(tmp_path / "bad.yaml", "name: bad\nmode: chat\ninstruction: hi\ninput: '{text}'\ntemprature: 1\n")
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    result = runner.invoke(app, ["prompt", str(template), str(inputs)])
    assert result.exit_code == 2
    assert f"{template}:5:1: key 'temprature': unknown key" in result.stderr


def test_cli_prompt_json_without_eval_is_refused(tmp_path, scripted):
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    result = runner.invoke(app, ["prompt", "summarize", str(inputs), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "--json writes the report of --eval" in result.stderr


@pytest.mark.skipif(not (DATA / "nlu" / "banking77" / "test.csv").exists(), reason="../shared/data/nlu is not present")
def test_cli_prompt_eval_on_banking77_samples_the_test_split_draws_shots_from_train_and_shows_the_nlu_reference(
    tmp_path, scripted
):
    report_path = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "prompt",
            "intent-few-shot",
            "banking77",
            "--eval",
            "--limit",
            "12",
            "--shots",
            "3",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "93.86%" in result.stdout and "trained NLU" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "banking77" and report["examples"] == 12 and report["shots"] == 3
    assert report["reference"]["nlu"]["intent_accuracy"] == 0.9386
    [backend] = scripted
    system = backend.chats[0][0]["content"]
    assert system.count("_") > 77 and "card_arrival" in system and "country_support" in system  # all 77 intents
    train_texts = {r["text"] for r in prompting.dataset_records("banking77")[0]}
    assert backend.chats[0][1]["content"] in train_texts
