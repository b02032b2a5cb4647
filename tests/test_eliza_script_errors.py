"""A malformed script gets an error that names the file, line, column and what was expected."""

from __future__ import annotations

import pytest

from rejoinder.bots.eliza.engine import ElizaEngine
from rejoinder.bots.eliza.script import load_script, parse_script
from rejoinder.errors import ScriptError

GOOD = """\
; a comment
(HELLO THERE)
START
(I = YOU
    ((0 YOU 0) (WHY DO YOU SAY YOU 3) (=WHAT)))
(WHAT ((0) (WHY DO YOU ASK)))
(NONE ((0) (GO ON)))
()
"""


def error_of(text: str) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        parse_script(text, "s.txt")
    return info.value


def test_a_good_script_parses():
    script = parse_script(GOOD)
    assert script.opening == ("HELLO", "THERE")
    assert script.rules["I"].substitute == "YOU"


def test_unclosed_parenthesis_points_at_the_open_one():
    error = error_of("(HELLO)\nSTART\n(I = YOU\n  ((0) (HI))\n")
    assert (error.line, error.column) == (3, 1)
    assert "never closed" in str(error)
    assert str(error).startswith("s.txt:3:1:")


def test_stray_closing_parenthesis_is_reported_where_it_is():
    error = error_of("(HELLO)\nSTART\n(NONE ((0) (X))))\n")
    assert (error.line, error.column) == (3, 17)
    assert "unexpected ')'" in str(error)


def test_missing_start_says_start_was_expected():
    error = error_of("(HELLO)\n(NONE ((0) (X)))\n")
    assert error.line == 2 and "expected the atom START" in str(error)


def test_missing_opening_remark_is_reported():
    assert "opening remark" in str(error_of("START\n(NONE ((0) (X)))"))


def test_empty_script_is_reported():
    assert "empty" in str(error_of("; nothing here\n"))


def test_missing_none_rule_is_reported():
    assert "no NONE rule" in str(error_of("(HI)\nSTART\n(WHAT ((0) (WHY)))\n"))


def test_link_to_an_unknown_keyword_names_the_keyword_and_line():
    error = error_of("(HI)\nSTART\n(HOW (=WAT))\n(NONE ((0) (X)))\n")
    assert "=WAT" in str(error) and error.line == 3


def test_reassembly_number_beyond_the_decomposition_is_reported():
    error = error_of("(HI)\nSTART\n(I ((0 I 0) (YOU SAID 4)))\n(NONE ((0) (X)))\n")
    assert error.line == 3 and error.column == 23
    assert "part 4" in str(error) and "3 part(s)" in str(error)


def test_unexpected_atom_in_rule_lists_what_is_accepted():
    error = error_of("(HI)\nSTART\n(I FOO ((0) (X)))\n(NONE ((0) (X)))\n")
    assert "unexpected atom 'FOO'" in str(error) and "DLIST" in str(error)
    assert (error.line, error.column) == (3, 4)


def test_memory_needs_exactly_four_transformations():
    error = error_of("(HI)\nSTART\n(MY ((0) (X)))\n(MEMORY MY (0 = A) (0 = B))\n(NONE ((0) (X)))\n")
    assert "exactly 4" in str(error) and error.line == 4


def test_memory_keyword_must_be_an_ordinary_keyword():
    text = "(HI)\nSTART\n(MEMORY MY (0 = A) (0 = B) (0 = C) (0 = D))\n(NONE ((0) (X)))\n"
    assert "MEMORY keyword MY" in str(error_of(text))


def test_duplicate_keyword_names_the_first_definition():
    error = error_of("(HI)\nSTART\n(I ((0) (X)))\n(I ((0) (Y)))\n(NONE ((0) (X)))\n")
    assert "defined twice" in str(error) and "line 3" in str(error) and error.line == 4


def test_bad_decomposition_element_is_reported():
    error = error_of("(HI)\nSTART\n(I ((0 (A B) 0) (X)))\n(NONE ((0) (X)))\n")
    assert "(*WORD ...) or (/TAG ...)" in str(error)


def test_missing_file_and_non_utf8_file_are_reported(tmp_path):
    with pytest.raises(ScriptError, match="no such script file"):
        load_script(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"(HI)\nSTART\n(\xff)")
    with pytest.raises(ScriptError, match="not UTF-8"):
        load_script(bad)


def test_a_script_whose_decompositions_all_fail_answers_with_the_slip_nomatch_replies():
    script = parse_script("(HI)\nSTART\n(CAT ((0 DOG 0) (WOOF)))\n(NONE ((0) (GO ON)))\n")
    engine = ElizaEngine(script)
    state = engine.initial_state()
    replies = [" ".join(engine.respond("a cat", state).words) for _ in range(4)]
    assert replies == ["HMMM", "GO ON, PLEASE", "I SEE", "PLEASE CONTINUE"]


def test_link_cycles_are_cut_off_instead_of_recursing_forever():
    script = parse_script("(HI)\nSTART\n(A (=B))\n(B (=A))\n(NONE ((0) (GO ON)))\n")
    engine = ElizaEngine(script)
    assert engine.respond("a", engine.initial_state()).source == "nomatch"
