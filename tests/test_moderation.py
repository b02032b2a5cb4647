"""The moderation screen: word lists, normalisation against obfuscation, policy rules, the model
(when installed), batch checking and policy files.

The model-backed tests use the real ``alt-profanity-check`` model; everything else runs with
``use_model=False`` so it shows what the word lists and rules catch on their own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rejoinder.errors import ConfigError, SourceError
from rejoinder.moderation import SHIPPED_WORDLISTS, Moderator, PatternRule, Verdict, WordList, model

CLEAN = [
    "Hi! How are you doing today?",
    "I grew up near Scunthorpe, in Lincolnshire.",
    "My assistant booked the tickets.",
    "This class is harder than I expected.",
    "I'm reading Dickens this summer.",
    "Let's grab a cocktail after work.",
    "My therapist says I should sleep more.",
    "Shiitake mushrooms are great in soup.",
    "I cooked shitake mushrooms with rice.",
    "The assassin in that film was from Sussex.",
    "We bought grape juice and peanuts.",
    "Her analysis of the data was thorough.",
    "The cockpit of the plane was tiny.",
    "A peacock walked across the lawn.",
    "The flame retardant coating worked.",
    "He graduated magna cum laude.",
    "Moby Dick is a very long book.",
    "There's a chink in his armor.",
    "I'm going to beat you at chess tonight.",
    "I will never hurt you.",
    "The rooster crowed cock-a-doodle-doo.",
    "Did you watch the game last night?",
    "I think the sequel was better than the original.",
    "Penistone is a market town in Yorkshire.",
    "Niger and Nigeria are neighbours.",
    "The Mississippi is a long river.",
    "Don't kill yourself working so hard.",
    "Привет! Как дела?",
    "Купи, пожалуйста, хлеба.",
    "Сегодня небо очень красивое.",
    "Ребёнок уже спит.",
    "Наша команда выиграла матч.",
    "Давай рассуждать логически.",
    "Застрахуйте машину до поездки.",
    "Сукно на столе зелёное.",
    "Я требую объяснений.",
    "Скажи себе, что всё получится.",
    "Учебник по физике лежит на столе.",
    "Вебинар начнётся завтра.",
    "Купи скипидар в хозяйственном магазине.",
    "Она записалась на педикюр.",
    "Эта жидкость для мытья посуды.",
    "Хачапури очень вкусные.",
    "Мандарины сладкие.",
    "Всё прошло без сучка и задоринки.",
    "Ворона сидит на суку.",
    "Я страхую тебя на скалодроме.",
    "Погреб полон картошки.",
    "Потребитель всегда прав.",
    "Колебания маятника затухают.",
    "Анхуй — провинция Китая.",
    "Мудрый совет дорогого стоит.",
    "Ёжик в тумане — мой любимый мультфильм.",
    "Я убью время до вечера за книгой.",
    "Черные крысы живут в подвале.",
]


@pytest.fixture(scope="module")
def screen() -> Moderator:
    """Word lists and rules only."""
    return Moderator(use_model=False)


@pytest.fixture(scope="module")
def full() -> Moderator:
    """Word lists, rules and the model (skips where alt-profanity-check is not installed)."""
    moderator = Moderator()
    if not moderator.model_available:
        pytest.skip("alt-profanity-check is not installed")
    return moderator


def wordlist_reasons(verdict: Verdict) -> list[str]:
    return [r for r in verdict.reasons if r.startswith("wordlist:")]


# --------------------------------------------------------------------------------------------
# No false positives


@pytest.mark.parametrize("text", CLEAN)
def test_clean_chitchat_passes_word_lists_and_rules(screen: Moderator, text: str):
    assert screen.check(text) == Verdict(True, 0.0, ())


def test_clean_chitchat_passes_with_the_model_too(full: Moderator):
    blocked = [(t, v) for t, v in zip(CLEAN, full.check_many(CLEAN), strict=True) if not v.allowed]
    assert blocked == []


# --------------------------------------------------------------------------------------------
# Plain and obfuscated profanity


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("fuck you", "wordlist:en:fuck"),
        ("What a load of bullshit", "wordlist:en:bullshit"),
        ("you motherfucker", "wordlist:en:motherfucker"),
        ("shut up, bitch", "wordlist:en:bitch"),
        ("he is an asshole", "wordlist:en:asshole"),
        ("dirty faggots", "wordlist:en:faggots"),
        ("иди нахуй", "wordlist:ru:нахуй"),
        ("пиздец какой-то", "wordlist:ru:пиздец"),
        ("ну ты и мудак", "wordlist:ru:мудак"),
        ("заебал уже", "wordlist:ru:заебал"),
        ("ёбаный стыд", "wordlist:ru:ебаный"),
        ("блядь, опять", "wordlist:ru:блядь"),
        ("ты сука", "wordlist:ru:сука"),
        ("охуеть можно", "wordlist:ru:охуеть"),
        ("долбоёб", "wordlist:ru:долбоеб"),
        ("cyka blyat", "wordlist:ru:cyka"),
    ],
)
def test_plain_profanity_is_blocked_in_english_and_russian(screen: Moderator, text: str, reason: str):
    verdict = screen.check(text)
    assert not verdict.allowed
    assert verdict.score == 1.0
    assert reason in verdict.reasons


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("f u c k you", "wordlist:en:fuck"),
        ("f.u.c.k", "wordlist:en:fuck"),
        ("F-U-C-K off", "wordlist:en:fuck"),
        ("f_u_c_k", "wordlist:en:fuck"),
        ("f*ck this", "wordlist:en:f*ck"),
        ("what the f**k", "wordlist:en:f**k"),
        ("sh1t", "wordlist:en:shit"),
        ("$hit happens", "wordlist:en:shit"),
        ("sh!t", "wordlist:en:shit"),
        ("b1tch", "wordlist:en:bitch"),
        ("fuuuuck", "wordlist:en:fuuck"),
        ("a**hole", "wordlist:en:a**hole"),
        ("\uff46\uff55\uff43\uff4b", "wordlist:en:fuck"),  # fullwidth letters
        ("fu\u200bck", "wordlist:en:fuck"),  # zero-width space
        ("fu\u0441k", "wordlist:en:fuck"),  # Cyrillic с in an English word
        ("n1gg3r", "wordlist:en:nigger"),
        ("п.и.з.д.а", "wordlist:ru:пизда"),
        ("х у й", "wordlist:ru:хуй"),
        ("xуй", "wordlist:ru:хуй"),  # Latin x
        ("сyка", "wordlist:ru:сука"),  # Latin y
        ("с у к а", "wordlist:ru:сука"),
        ("х*й тебе", "wordlist:ru:х*й"),
        ("e6ать", "wordlist:ru:ебать"),  # Latin e, 6 for б
        ("3аебал", "wordlist:ru:заебал"),
        ("бляяяядь", "wordlist:ru:бляядь"),
    ],
)
def test_obfuscated_profanity_is_blocked(screen: Moderator, text: str, reason: str):
    verdict = screen.check(text)
    assert not verdict.allowed
    assert reason in verdict.reasons


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("F u C k YOU!!!", "fuck you"),
        ("f.u.c.k", "fuck"),
        ("sh1t, b1tch", "shit bitch"),
        ("fuuuuck", "fuuck"),
        ("xуй", "хуй"),
        ("сyка", "сука"),
        ("п.и.з.д.а", "пизда"),
        ("f*ck", "f*ck"),
        ("*bold* text", "bold text"),
        ("I'll kill you", "ill kill you"),
        ("Ёжик и йод", "ежик и йод"),
        ("café naïve", "cafe naive"),
        ("mp3 in the 90s", "mpe in the 90s"),
        ("wow! really?", "wow really"),
    ],
)
def test_normalise_defeats_obfuscation(screen: Moderator, text: str, normalised: str):
    assert screen.normalise(text) == normalised


@pytest.fixture(scope="module")
def model_only(full: Moderator) -> Moderator:
    return Moderator(wordlists=(), builtin_rules=False)


def test_the_model_also_scores_the_normalised_text(model_only: Moderator):
    # Spelled out, "f u c k" has no word the model knows; normalised, it does.
    assert model_only.check("f u c k you").reasons[0].startswith("model:")
    assert not model_only.check("f u c k you").allowed


def test_exceptions_are_hidden_from_the_model(model_only: Moderator, full: Moderator):
    # The model alone flags these names and idioms; the word lists' exceptions keep them clean.
    for text in ("Moby Dick is a long book", "magna cum laude", "The Kick-Ass movie was fun"):
        assert not model_only.check(text).allowed
        assert full.check(text).allowed


# --------------------------------------------------------------------------------------------
# Policy rules

THREATS_THE_MODEL_MISSES = [
    "I'm going to hurt you",
    "we are going to find you and shoot you",
    "я тебя убью",
    "Я тебя зарежу, понял?",
    "убью тебя",
    "убей себя",
    "сдохни",
    "kys",
]


@pytest.mark.parametrize(
    "text",
    [
        "I will find you and kill you",
        "I'll kill you",
        "Im gonna stab you",
        "you should die",
        "go kill yourself",
        "I hope you die",
        *THREATS_THE_MODEL_MISSES,
        "чтоб ты сдох",
        "найду и убью",
    ],
)
def test_threats_are_blocked_by_policy(screen: Moderator, text: str):
    verdict = screen.check(text)
    assert not verdict.allowed
    assert verdict.reasons == ("policy:threat",)


def test_threats_the_model_misses_are_still_blocked(model_only: Moderator, full: Moderator):
    for text in THREATS_THE_MODEL_MISSES:
        assert model_only.check(text).allowed, text  # the model alone lets it through...
        verdict = full.check(text)
        assert not verdict.allowed and "policy:threat" in verdict.reasons  # ...the rules do not


@pytest.mark.parametrize(
    "text",
    [
        "I will never hurt you",
        "I was ill and it hurt you",
        "I'm going to beat you at chess",
        "don't kill yourself over it",
        "This song kills me",
        "Я убью время до вечера",
        "Его убьют в конце фильма",
    ],
)
def test_harmless_sentences_with_violent_words_are_not_threats(screen: Moderator, text: str):
    assert screen.check(text).allowed


@pytest.mark.parametrize(
    "text",
    [
        "jews are vermin",
        "Immigrants are nothing but parasites",
        "all muslims should be exterminated",
        "gas the gays",
        "мигранты паразиты",
        "все цыгане — это крысы",
        "надо убивать всех евреев",
    ],
)
def test_dehumanising_templates_are_blocked_as_hate(screen: Moderator, text: str):
    assert screen.check(text).reasons == ("policy:hate",)


@pytest.mark.parametrize(
    "text", ["rats are animals", "women are not inferior", "Черные крысы живут в подвале", "Евреи празднуют Песах"]
)
def test_statements_about_groups_that_do_not_dehumanise_pass(screen: Moderator, text: str):
    assert screen.check(text).allowed


def test_slurs_are_caught_by_the_word_lists(screen: Moderator):
    assert screen.check("stupid n1gger").reasons == ("wordlist:en:nigger",)
    assert screen.check("понаехали хачи").reasons == ("wordlist:ru:хачи",)


def test_custom_rules_follow_the_built_in_ones(screen: Moderator):
    class Shouting:
        name, lang = "shouting", "any"

        def check(self, original: str, normalised: str) -> str | None:
            return "policy:shouting" if original.isupper() and len(original) > 10 else None

    moderator = Moderator(use_model=False, rules=[PatternRule("spam", r"buy cheap \w+"), Shouting()])
    assert moderator.check("BUY CHEAP PILLS NOW").reasons == ("policy:spam", "policy:shouting")
    assert moderator.check("I will kill you, buy cheap pills").reasons == ("policy:threat", "policy:spam")
    assert moderator.check("buy cheap").allowed


def test_builtin_rules_can_be_left_out():
    assert Moderator(use_model=False, builtin_rules=False).check("я тебя убью").allowed
    assert Moderator(use_model=False, wordlists=("en",)).check("я тебя убью").allowed  # ru rules off


# --------------------------------------------------------------------------------------------
# Batch checking

BATCH = [
    *CLEAN[:10],
    "fuck you",
    "f u c k",
    "",
    "   ",
    "fuck you",  # duplicates are scored once
    "I will find you and kill you",
    "Moby Dick is a long book",
    "ты сука",
    "this movie sucks",
    *CLEAN[-10:],
]


def test_check_many_equals_check_one_by_one(screen: Moderator):
    assert screen.check_many(BATCH) == [screen.check(t) for t in BATCH]


def test_check_many_equals_check_one_by_one_with_the_model(full: Moderator):
    assert full.check_many(BATCH) == [full.check(t) for t in BATCH]


def test_check_many_calls_the_model_once(full: Moderator, monkeypatch: pytest.MonkeyPatch):
    calls: list[int] = []
    predict = full._predict_prob

    def counting(texts: list[str]):
        calls.append(len(texts))
        return predict(texts)

    monkeypatch.setattr(full, "_predict_prob", counting)
    verdicts = full.check_many(BATCH)
    assert len(verdicts) == len(BATCH)
    assert len(calls) == 1
    assert calls[0] < 2 * len(BATCH)  # duplicates and unchanged texts are not sent twice


def test_check_many_of_nothing_is_empty(full: Moderator):
    assert full.check_many([]) == []


def test_texts_must_be_strings(screen: Moderator):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        screen.check_many(["ok", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="use check"):
        screen.check_many("a single text")


# --------------------------------------------------------------------------------------------
# Without the model


def test_use_model_false_scores_with_lists_and_rules_only(screen: Moderator):
    assert not screen.model_available
    assert screen.check("this movie sucks").score == 0.0
    assert screen.check("fuck").score == 1.0


def test_without_the_model_package_the_lists_and_rules_still_work(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(model, "_cache", {})
    monkeypatch.setitem(sys.modules, "profanity_check", None)  # makes "import profanity_check" fail
    moderator = Moderator()
    assert moderator.model_available is False
    assert moderator.check("fuck you").reasons == ("wordlist:en:fuck",)
    assert moderator.check("я тебя убью").reasons == ("policy:threat",)
    assert moderator.check("hello there") == Verdict(True, 0.0, ())


def test_importing_the_module_does_not_import_the_model():
    code = "import sys, rejoinder.moderation; print('profanity_check' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------
# Policy files

POLICY = """\
threshold: 0.9
model: false
wordlists: [en, ru]
extra_words:
  en: [frak, "gorram*"]
  ru: ["*блин*"]
allow: [bastard*, "moby dick"]
rules:
  - name: spam
    pattern: "buy cheap \\\\w+"
    lang: en
"""


def test_a_policy_file_adds_words_rules_and_allow_terms(tmp_path: Path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    moderator = Moderator.from_policy_file(path)
    assert moderator.threshold == 0.9 and not moderator.model_available
    assert moderator.check("frak you").reasons == ("wordlist:en:frak",)
    assert moderator.check("gorramit").reasons == ("wordlist:en:gorramit",)
    assert moderator.check("блинский блин").reasons == ("wordlist:ru:блинский", "wordlist:ru:блин")
    assert moderator.check("Buy cheap pills!").reasons == ("policy:spam",)
    assert moderator.check("that bastard of a storm").allowed
    assert not moderator.check("fuck").allowed  # the shipped lists are still there


def test_a_json_policy_file_works_the_same(tmp_path: Path):
    path = tmp_path / "policy.json"
    path.write_text('{"model": false, "extra_words": {"en": ["frak"]}, "rules": [{"name": "x", "pattern": "xyzzy"}]}')
    moderator = Moderator.from_policy_file(path)
    assert moderator.check("frak").reasons == ("wordlist:en:frak",)
    assert moderator.check("say xyzzy").reasons == ("policy:x",)


def test_an_allow_term_also_hides_a_word_from_the_model(tmp_path: Path, full: Moderator):
    path = tmp_path / "policy.yaml"
    path.write_text("allow: [bastard*]\n")
    assert not full.check("Inglorious Bastards is a film").allowed
    assert Moderator.from_policy_file(path).check("Inglorious Bastards is a film").allowed


@pytest.mark.parametrize(
    ("name", "text", "field", "line"),
    [
        (
            "bad_regex.yaml",
            "rules:\n  - {name: a, pattern: x}\n  - {name: b, pattern: y}\n  - {name: c, pattern: '(x'}\n",
            "rules[2].pattern: '(x' is not a valid regular expression",
            4,
        ),
        ("unknown.yaml", "threshold: 0.5\nmodle: true\n", "modle: unknown key 'modle'; expected one of", 2),
        ("unknown_rule_key.yaml", "rules:\n  - name: a\n    patern: x\n", "rules[0].patern: unknown key", 3),
        ("threshold.yaml", "threshold: high\n", "threshold: expected a number above 0 and at most 1", 1),
        ("threshold_range.yaml", "threshold: 1.5\n", "threshold: expected a number above 0", 1),
        ("model.yaml", "model: maybe\n", "model: expected true or false", 1),
        ("wordlists.yaml", "wordlists: [en, de]\n", "wordlists[1]: no shipped word list 'de'", 1),
        ("extra.yaml", "extra_words:\n  en: [ok, 42]\n", "extra_words.en[1]: expected", 2),
        ("extra_group.yaml", "extra_words:\n  en: [ok, 're:(a)b']\n", "extra_words.en[1]: '(a)b' has a capturing", 2),
        ("allow.yaml", "allow: scunthorpe\n", "allow: expected a list of terms, found a string", 1),
        ("rules.yaml", "rules: {name: a}\n", "rules: expected a list of rules", 1),
        ("no_pattern.yaml", "rules:\n  - name: a\n", "rules[0]: the rule has no pattern", 2),
        ("empty_match.yaml", "rules:\n  - {name: a, pattern: 'x*'}\n", "rules[0].pattern: 'x*' matches empty text", 2),
        ("bad.json", '{"rules": [{"name": "a", "pattern": "("}]}', "rules[0].pattern: '(' is not a valid", 1),
    ],
)
def test_malformed_policy_files_raise_source_error_naming_the_field(
    tmp_path: Path, name: str, text: str, field: str, line: int
):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as info:
        Moderator.from_policy_file(path)
    error = info.value
    assert field in error.reason
    assert error.path == str(path) and error.line == line
    assert str(error).startswith(f"{path}:{line}: ")


def test_broken_yaml_and_json_point_at_the_problem(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [\n  {name: a\n")
    with pytest.raises(SourceError, match="not valid YAML") as info:
        Moderator.from_policy_file(broken)
    assert info.value.line == 3
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('{"rules": [')
    with pytest.raises(SourceError, match="not valid JSON") as info:
        Moderator.from_policy_file(broken_json)
    assert (info.value.line, info.value.column) == (1, 12)


def test_a_policy_file_must_be_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- en\n- ru\n")
    with pytest.raises(SourceError, match="expected a mapping of policy settings"):
        Moderator.from_policy_file(path)


def test_an_empty_policy_file_means_the_defaults(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing to change\n")
    moderator = Moderator.from_policy_file(path)
    assert moderator.threshold == 0.8 and moderator.languages == ("en", "ru")


def test_a_missing_policy_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read policy file"):
        Moderator.from_policy_file(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------
# Word lists and arguments


def test_a_bad_word_list_entry_is_reported_with_its_line():
    with pytest.raises(SourceError) as info:
        WordList.parse("# comment\nfine\n\nre:(oops\n", "xx", "mine.txt")
    assert (info.value.path, info.value.line) == ("mine.txt", 4)
    assert "not a valid regular expression" in info.value.reason
    with pytest.raises(SourceError, match="is not a word list entry"):
        WordList.parse("fu?ck\n", "xx", "mine.txt")


def test_shipped_word_lists_parse_and_have_entries():
    for lang in SHIPPED_WORDLISTS:
        wordlist = WordList.shipped(lang)
        assert len(wordlist.blocked()) > 50 and wordlist.exceptions()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold must be a number above 0"),
        ({"threshold": True}, "threshold must be a number"),
        ({"wordlists": "en"}, "wordlists must be a list of names"),
        ({"wordlists": ["de"]}, "no shipped word list 'de'"),
        ({"extra_words": {"en": ["re:("]}}, r"extra_words\['en'\]\[0\]"),
        ({"allow": [""]}, r"allow\[0\]: the entry is empty"),
        ({"rules": ["not a rule"]}, r"rules\[0\] is a str, not a PolicyRule"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        Moderator(use_model=False, **kwargs)


def test_a_pattern_rule_with_a_bad_regex_is_a_config_error():
    with pytest.raises(ConfigError, match="rule 'x'"):
        PatternRule("x", "(")
