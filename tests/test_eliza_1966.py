"""ELIZA against its published behaviour: the CACM 1966 paper is the specification."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import DOCTOR_1966, conversation_1966
from rejoinder.bots.eliza import create
from rejoinder.bots.eliza.engine import (
    ElizaEngine,
    bcd_word,
    hash_word,
    last_cell,
    match,
    reassemble,
    slip_hash,
    tokenize,
)
from rejoinder.bots.eliza.script import AnyOf, Tagged, load_script
from rejoinder.chat import ChatSession
from rejoinder.store import Store

pytestmark = pytest.mark.skipif(not DOCTOR_1966.exists(), reason="../shared/data/eliza is not present")


@pytest.fixture(scope="module")
def doctor():
    return load_script(DOCTOR_1966)


# -- HASH -------------------------------------------------------------------------------------


def test_hash_gives_the_published_and_deduced_values():
    assert hash_word("HERE", 2) == 3
    assert hash_word("KIDS", 2) == 1
    assert hash_word("TIME", 2) == 0
    assert hash_word("ALWAYS", 7) == 14


def test_bcd_word_packs_six_space_padded_characters():
    assert bcd_word("HERE") == 0o302551256060
    assert bcd_word("ALWAYS") == 0o214366217062


def test_hash_uses_the_last_six_character_cell_of_long_words():
    assert last_cell("INVENTED") == "ED"
    assert last_cell("SIXSIX") == "SIXSIX"
    assert hash_word("INVENTED", 2) == slip_hash(bcd_word("ED"), 2)


def test_hash_refuses_more_than_fifteen_bits():
    with pytest.raises(ValueError):
        slip_hash(1, 16)


# -- tokenising ----------------------------------------------------------------------------------


def test_tokenizer_upper_cases_and_keeps_comma_and_period_as_delimiters():
    assert tokenize("Well, my boyfriend made me come here.") == [
        "WELL",
        ",",
        "MY",
        "BOYFRIEND",
        "MADE",
        "ME",
        "COME",
        "HERE",
        ".",
    ]


def test_tokenizer_1966_mode_drops_question_and_exclamation_marks():
    assert tokenize("Why? Don't!") == ["WHY", "DON'T"]


def test_tokenizer_modern_mode_treats_question_marks_as_periods_and_dashes_as_commas():
    assert tokenize("Why? Fine - no; ok: yes!", "modern") == [
        "WHY",
        ".",
        "FINE",
        ",",
        "NO",
        ",",
        "OK",
        ",",
        "YES",
        ".",
    ]


def test_tokenizer_accepts_typographic_apostrophes():
    assert tokenize("I\u2019m here") == ["I'M", "HERE"]


# -- matching -------------------------------------------------------------------------------------


def _tags(word: str) -> frozenset[str]:
    return {"MOTHER": frozenset({"FAMILY", "NOUN"})}.get(word, frozenset())


def test_match_takes_the_shortest_span_for_every_zero_but_the_last():
    words = ["A", "YOU", "B", "YOU", "C"]
    assert match((0, "YOU", 0), words, _tags) == [["A"], ["YOU"], ["B", "YOU", "C"]]
    assert match((0, "YOU", 0, "YOU", 0), words, _tags) == [["A"], ["YOU"], ["B"], ["YOU"], ["C"]]


def test_match_with_number_takes_exactly_that_many_words():
    assert match((0, 2, "X"), ["A", "B", "C", "X"], _tags) == [["A"], ["B", "C"], ["X"]]
    assert match((3,), ["A", "B"], _tags) is None


def test_match_any_of_and_dlist_tags():
    words = ["YOUR", "MOTHER", "IS", "SAD"]
    assert match((0, Tagged(frozenset({"FAMILY"})), 0, AnyOf(frozenset({"SAD", "HAPPY"}))), words, _tags) == [
        ["YOUR"],
        ["MOTHER"],
        ["IS"],
        ["SAD"],
    ]
    assert match((0, Tagged(frozenset({"PET"})), 0), words, _tags) is None


def test_match_must_consume_every_word():
    assert match((0, "I", 0, "YOU"), ["I", "HATE", "YOU", "TOO"], _tags) is None


def test_reassemble_inserts_components_by_number():
    assert reassemble(("WHY", "DO", "YOU", "SAY", 3), [["A"], ["B"], ["C", "D"]]) == [
        "WHY",
        "DO",
        "YOU",
        "SAY",
        "C",
        "D",
    ]


# -- the published conversation ----------------------------------------------------------------------


def test_doctor_script_has_the_67_rules_of_the_appendix(doctor):
    assert len(doctor.rules) + 1 == 67  # NONE is held apart, as is MEMORY
    assert doctor.memory is not None and doctor.memory.keyword == "MY"
    assert doctor.opening == ("HOW", "DO", "YOU", "DO.", "PLEASE", "TELL", "ME", "YOUR", "PROBLEM")


def test_1966_conversation_is_reproduced_word_for_word(doctor):
    engine = ElizaEngine(doctor)
    state = engine.initial_state()
    replies = [" ".join(engine.respond(user, state).words) for user, _ in conversation_1966()]
    assert replies == [eliza for _, eliza in conversation_1966()]


def test_but_is_a_delimiter_so_only_the_first_clause_is_answered(doctor):
    engine = ElizaEngine(doctor)
    turn = engine.respond(
        "You are not very aggressive but I think you don't want me to notice that.", engine.initial_state()
    )
    assert turn.text == ["I", "ARE", "NOT", "VERY", "AGGRESSIVE"]


def test_memory_is_recalled_only_when_limit_is_four(doctor):
    engine = ElizaEngine(doctor)
    state = engine.initial_state()
    engine.respond("My car is broken", state)  # LIMIT 2: memorised
    assert state["memory"]
    assert engine.respond("Nothing", state).source == "none"  # LIMIT 3
    recalled = engine.respond("Nothing", state)  # LIMIT 4
    assert recalled.source == "memory"
    assert state["memory"] == []


def test_1966_conversation_survives_a_stop_after_every_turn(doctor, db_url):
    """In-process: a new Store and a new bot for every turn, the state coming only from the store."""
    store = Store(db_url)
    session, _ = ChatSession.start(store, "eliza", {"script": str(DOCTOR_1966)})
    conversation_id = session.conversation_id
    replies = []
    for user, _ in conversation_1966():
        store.close()
        store = Store(db_url)
        replies.append(ChatSession.resume(store, conversation_id).send(user).text)
    store.close()
    assert replies == [eliza for _, eliza in conversation_1966()]


def _cli(args: list[str], stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rejoinder.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_1966_conversation_split_across_two_processes_at_every_turn_boundary(tmp_path, db_url):
    pairs = conversation_1966()
    expected = [eliza for _, eliza in pairs]
    env = {**os.environ, "REJOINDER_DB_URL": db_url}
    for boundary in range(1, len(pairs)):
        first = _cli(
            ["chat", "--bot", "eliza", "--script", str(DOCTOR_1966)],
            "".join(u + "\n" for u, _ in pairs[:boundary]),
            env,
        )
        assert first.returncode == 0, first.stderr
        conversation_id = first.stderr.split("conversation:")[1].split()[0]
        second = _cli(["chat", "--conversation", conversation_id], "".join(u + "\n" for u, _ in pairs[boundary:]), env)
        assert second.returncode == 0, second.stderr
        opening, *replies = first.stdout.splitlines()
        assert opening == "HOW DO YOU DO. PLEASE TELL ME YOUR PROBLEM"
        assert replies + second.stdout.splitlines() == expected, f"split after turn {boundary}"


# -- every rule of the DOCTOR script -------------------------------------------------------------------

# Inputs that reach every decomposition and every reassembly of the 1966 DOCTOR script.
# Each is repeated as often as its decomposition has reassemblies, so each cycle comes round.
COVERAGE_INPUTS = [
    "Sorry",
    "I remember my childhood",
    "Do you remember the war",
    "Remember the war",
    "If only things had gone better",
    "I dreamt about flying",
    "I dreamed about you",
    "A dream",
    "Dreams",
    "How",
    "When",
    "Alike",
    "Same",
    "Certainly",
    "Perhaps",
    "Maybe",
    "My name is Joe",
    "Deutsch",
    "Francais",
    "Italiano",
    "Espanol",
    "Hello",
    "Computer",
    "Machine",
    "Machines",
    "Computers",
    "Am I crazy",
    "Am",
    "Are you there",
    "They are nice",
    "Your eyes",
    "Was I wrong",
    "I was wrong",
    "Were you happy",
    "It was raining",
    "You're mean",
    "I'm sad",
    "I want a car",
    "I am sad",
    "I am happy",
    "Like I was saying",
    "I think I should go",
    "I feel you hate me",
    "I am tired",
    "I can't sleep",
    "I don't know",
    "I feel bad",
    "I hate you",
    "I see",
    "You remind me of Bob",
    "You are smart",
    "You hate me",
    "You talk a lot",
    "Yes",
    "No",
    "My mother",
    "My car",
    "Can you help",
    "Can I go",
    "What",
    "Because",
    "Why don't you help",
    "Why can't I sleep",
    "Why",
    "Everyone",
    "Everybody",
    "Nobody",
    "Noone",
    "Always",
    "He is like a dog",
    "I like it",
    "Whatever",
    # MEMORY transformations 0..3 are chosen by the hash of the last word.
    "My house",
    "My home",
    "My dog",
    "My money",
]


def test_every_rule_and_reassembly_of_the_doctor_script_is_reached(doctor):
    engine = ElizaEngine(doctor)
    state = engine.initial_state()
    used: set[tuple[str, int]] = set()
    fired: set[str] = set()
    for text in COVERAGE_INPUTS:
        for _ in range(9):  # the longest reassembly list has 9 entries
            turn = engine.respond(text, state)
            used.update(turn.choices)
            fired.update(turn.rule_ids)
    expected = {
        (t.rule_id, i)
        for t in (doctor.transformation(rule_id) for rule_id in doctor.all_transformation_ids())
        for i in range(len(t.reassemblies))
    }
    assert expected - used == set()
    link_rules = {f"{k}/=" for k, r in doctor.rules.items() if r.link is not None}
    assert link_rules - fired == set()
    assert {("MEMORY", i) for i in range(4)} <= used


def test_newkey_on_an_empty_keystack_falls_back_to_none(doctor):
    engine = ElizaEngine(doctor)
    turn = engine.respond("It was raining", engine.initial_state())
    assert turn.rule_ids == ["WAS/3", "NONE/0"]
    assert turn.source == "none"


def test_pre_rewrites_the_text_and_continues_with_the_linked_rule(doctor):
    engine = ElizaEngine(doctor)
    turn = engine.respond("He says I'm depressed much of the time.", engine.initial_state())
    assert turn.rule_ids == ["I'M/0", "I/1"]


def test_keywords_of_equal_rank_keep_sentence_order_and_higher_rank_goes_on_top(doctor):
    engine = ElizaEngine(doctor)
    assert engine.respond("Perhaps I could learn to get along with my mother.", engine.initial_state()).keystack == [
        "MY",
        "PERHAPS",
        "I",
    ]


# -- Anthony Hay's published sessions with the same script (extra golden behaviour) -------------------

HAY_SESSION = [
    ("Mother I tried please believe me", "YOU SAY MOTHER YOU TRIED PLEASE BELIEVE YOU"),
    ("I'm doing the best that I can.", "IS IT BECAUSE YOU ARE DOING THE BEST THAT YOU CAN THAT YOU CAME TO ME"),
    (
        "I'm ashamed of the things I've been put through",
        "HOW LONG HAVE YOU BEEN ASHAMED OF THE THINGS I'VE BEEN PUT THROUGH",
    ),
    ("I'm ashamed of the person I am.", "DO YOU BELIEVE IT NORMAL TO BE ASHAMED OF THE PERSON YOU ARE"),
    ("Isolation, isolation, isolation.", "I AM NOT SURE I UNDERSTAND YOU FULLY"),
    ("But if you could just see the beauty", "DO YOU THINK ITS LIKELY THAT I COULD JUST SEE THE BEAUTY"),
    ("These things I could never describe", "CAN YOU ELABORATE ON THAT"),
    ("These pleasures a wayward distraction", "PLEASE GO ON"),
    ("This is my one lucky prize.", "YOUR ONE LUCKY PRIZE"),
]

HAY_MODERN_SESSION = [
    ("hi", "I AM NOT SURE I UNDERSTAND YOU FULLY"),
    ("I was just saying hello.", "WERE YOU REALLY"),
    ("So I'll just jump straight in with my problem.", "YOUR PROBLEM"),
    ("It's something that's on my mind every day.", "WHY DO YOU SAY YOUR MIND EVERY DAY"),
    ("It's very serious. It affects everybody. I think about it a lot.", "REALLY, EVERYBODY"),
    ("Yes. I'm talking about the climate and ecological crisis.", "YOU SEEM QUITE POSITIVE"),
    (
        "Nobody's life will be untouched by the climate crisis.",
        "DOES THAT HAVE ANYTHING TO DO WITH THE FACT THAT YOUR PROBLEM",
    ),
    ("I'm not sure what you mean.", "IS IT BECAUSE YOU ARE NOT SURE WHAT I MEAN THAT YOU CAME TO ME"),
    (
        "Not really. I'm here because I want a serious conversation with you about something that "
        "matters deeply to me.",
        "WHAT WOULD IT MEAN TO YOU IF YOU GOT A SERIOUS CONVERSATION WITH I ABOUT SOMETHING THAT MATTERS DEEPLY TO YOU",
    ),
    ("It would mean I could believe what Weizenbaum said about you in his book.", "WE WERE DISCUSSING YOU - NOT ME"),
    ("ok", "DOES THAT HAVE ANYTHING TO DO WITH THE FACT THAT YOUR MIND EVERY DAY"),
    ("No. It's on my mind every day because it's such a huge problem.", "ARE YOU SAYING 'NO' JUST TO BE NEGATIVE"),
    ("No, I'm trying to explain how I feel about the climate crisis.", "YOU ARE BEING A BIT NEGATIVE"),
    ("Do you deny there is a climate crisis?", "OH, I DENY THERE IS A CLIMATE CRISIS"),
    (
        "Wow! I really didn't expect that. Haven't you seen the IPCC reports and heard scientists and "
        "the UN Secretary-General talking about the problem?",
        "YOU SAY YOU REALLY DIDN'T EXPECT THAT",
    ),
    (
        "I didn't because I didn't expect you to voice your own beliefs so strongly. I thought I'd be "
        "doing all the talking.",
        "PERHAPS IN YOUR FANTASY WE DIDN'T BECAUSE YOU DIDN'T EXPECT EACH OTHER",
    ),
    (
        "This isn't a fantasy. It's very real. Millions of people will die, are dying, becuase the world is heating.",
        "DID YOU THINK THEY MIGHT NOT BE DYING",
    ),
]


def test_published_session_with_the_1966_script_is_reproduced(doctor):
    engine = ElizaEngine(doctor)
    state = engine.initial_state()
    assert [" ".join(engine.respond(u, state).words) for u, _ in HAY_SESSION] == [e for _, e in HAY_SESSION]


def test_modern_punctuation_reads_question_and_exclamation_marks_as_periods(doctor):
    engine = ElizaEngine(doctor, punctuation="modern")
    state = engine.initial_state()
    assert [" ".join(engine.respond(u, state).words) for u, _ in HAY_MODERN_SESSION] == [
        e for _, e in HAY_MODERN_SESSION
    ]


def test_friendly_output_is_lower_case_with_punctuation():
    bot = create(str(DOCTOR_1966), friendly=True)
    from rejoinder.dialogue import Dialogue, Message

    dialogue = Dialogue(bot="eliza")
    assert bot.greet(dialogue).text == "How do you do. Please tell me your problem."
    dialogue.messages.append(Message("user", "Men are all alike."))
    assert bot.respond(dialogue).text == "In what way?"
    dialogue.messages.append(Message("user", "I need some help, that much seems certain."))
    assert bot.respond(dialogue).text == "What would it mean to you if you got some help?"
