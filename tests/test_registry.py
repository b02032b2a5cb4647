"""Bots are found by name, options are checked, configuration files are validated."""

from __future__ import annotations

import re

import pytest

from rejoinder.bots import available_bots, create_bot, load_bot_config
from rejoinder.dialogue import Bot
from rejoinder.errors import ConfigError, SourceError, UnknownBot


def test_eliza_bots_are_registered_with_descriptions_and_options():
    bots = available_bots()
    assert {"eliza", "eliza-ru"} <= set(bots)
    assert "ELIZA" in bots["eliza"].description
    assert "script" in bots["eliza"].option_names()


def test_created_bots_follow_the_bot_protocol():
    assert isinstance(create_bot("eliza"), Bot)


def test_unknown_bot_lists_the_available_ones():
    with pytest.raises(UnknownBot, match=r"available bots: .*eliza"):
        create_bot("elisa")


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match="no option 'colour'; its options are: script"):
        create_bot("eliza", {"colour": "red"})


def test_bad_option_value_says_what_is_accepted():
    with pytest.raises(ConfigError, match=r"punctuation='fancy'.*one of: 1966, modern"):
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
    config = load_bot_config(path)
    assert config.bot == "eliza"
    assert config.options == {"script": "scripts/x.txt", "friendly": True}
    converted = available_bots()["eliza"].check(config.options, where=config.where, base=config.base)
    assert converted["script"] == str(tmp_path / "scripts" / "x.txt")
    assert converted["friendly"] is True


def test_every_bad_option_is_reported_at_once_with_what_is_accepted():
    with pytest.raises(ConfigError) as info:
        create_bot("eliza", {"friendly": "maybe", "punctuation": "fancy", "colour": "red"})
    message = str(info.value)
    assert "friendly='maybe': expected true or false" in message
    assert "punctuation='fancy': expected one of: 1966, modern" in message
    assert "no option 'colour'" in message


def test_a_bad_option_in_a_config_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "mybot.yaml"
    path.write_text("bot: eliza\noptions:\n  punctuation: modern\n  friendly: maybe\n")
    config = load_bot_config(path)
    with pytest.raises(ConfigError, match=rf"friendly='maybe' \({re.escape(str(path))}:4\): expected true or false"):
        create_bot(config.bot, config.options, where=config.where, base=config.base)


def test_options_naming_files_urls_or_models_are_for_the_operator_only():
    entry = available_bots()["eliza"]
    assert {o.name: o.client_settable for o in entry.options()}["script"] is False
    assert {o.name: o.client_settable for o in entry.options()}["friendly"] is True
    with pytest.raises(ConfigError, match=r"'script'.*only by the operator"):
        entry.check({"script": "/etc/passwd"}, client=True)
    assert entry.check({"friendly": "true"}, client=True)["friendly"] is True


def test_each_bot_has_a_json_schema_of_its_options():
    schema = available_bots()["eliza"].schema()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["properties"]["friendly"] == {
        "type": "boolean",
        "default": False,
        "description": schema["properties"]["friendly"]["description"],
        "x-client-settable": True,
    }
    assert schema["properties"]["punctuation"]["enum"] == ["1966", "modern"]
    assert schema["properties"]["script"]["x-client-settable"] is False


def test_the_pool_builds_one_bot_per_bot_and_options_and_shares_it(store):
    from rejoinder.bots import pool_for

    pool = pool_for(store)
    first, options = pool.get("eliza", {"friendly": "true"})
    second, _ = pool.get("eliza", {"friendly": True})
    other, _ = pool.get("eliza", {"friendly": False})
    assert first is second and first is not other
    assert options["friendly"] is True and options["script"] == "doctor"


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
