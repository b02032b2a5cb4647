"""Bots are found by name, options are checked, configuration files are validated."""

from __future__ import annotations

import pytest

from rejoinder.bots import available_bots, create_bot, load_bot_config
from rejoinder.dialogue import Bot
from rejoinder.errors import ConfigError, SourceError, UnknownBot


def test_eliza_bots_are_registered_with_descriptions_and_options():
    bots = available_bots()
    assert {"eliza", "eliza-ru"} <= set(bots)
    assert "ELIZA" in bots["eliza"].description
    assert "script" in bots["eliza"].options()


def test_created_bots_follow_the_bot_protocol():
    assert isinstance(create_bot("eliza"), Bot)


def test_unknown_bot_lists_the_available_ones():
    with pytest.raises(UnknownBot, match=r"available bots: .*eliza"):
        create_bot("elisa")


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match="no option colour; its options are: script"):
        create_bot("eliza", {"colour": "red"})


def test_bad_option_value_says_what_is_accepted():
    with pytest.raises(ConfigError, match=r"punctuation='fancy'.*'1966' or 'modern'"):
        create_bot("eliza", {"punctuation": "fancy"})
    with pytest.raises(ConfigError, match="friendly='maybe'"):
        create_bot("eliza", {"friendly": "maybe"})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bot.yaml", "bot: eliza\noptions:\n  script: scripts/x.txt\n  friendly: true\n"),
        ("bot.json", '{"bot": "eliza", "options": {"script": "scripts/x.txt", "friendly": true}}'),
        ("bot.toml", 'bot = "eliza"\n[options]\nscript = "scripts/x.txt"\nfriendly = true\n'),
    ],
)
def test_config_files_in_yaml_json_and_toml_resolve_paths_next_to_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    bot, options = load_bot_config(path)
    assert bot == "eliza"
    assert options == {"script": str(tmp_path / "scripts" / "x.txt"), "friendly": True}


def test_broken_json_config_points_at_line_and_column(tmp_path):
    path = tmp_path / "bot.json"
    path.write_text('{"bot": "eliza",\n "options": {oops}}')
    with pytest.raises(SourceError) as info:
        load_bot_config(path)
    assert info.value.line == 2 and info.value.column == 14 and "invalid JSON" in str(info.value)


def test_broken_yaml_config_points_at_the_line(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text("bot: eliza\noptions: [unclosed\n")
    with pytest.raises(SourceError, match="invalid YAML") as info:
        load_bot_config(path)
    assert info.value.line is not None


def test_config_with_unknown_keys_or_no_bot_is_refused(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text("bots: eliza\n")
    with pytest.raises(SourceError, match="unknown key"):
        load_bot_config(path)
    path.write_text("options: {}\n")
    with pytest.raises(SourceError, match="'bot' must name a bot"):
        load_bot_config(path)
