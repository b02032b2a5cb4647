"""Slot values in English and Russian utterances: recognition, normal forms, roles and overlaps."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import pytest

from rejoinder.bots.frames.schema import Choice, Slot
from rejoinder.bots.frames.values import (
    GAZETTEER,
    default_role,
    extract,
    extract_all,
    iban_valid,
    luhn_valid,
)
from rejoinder.errors import ConfigError, SourceError

NOW = datetime(2026, 11, 26, 9, 0)  # a Thursday


def found(text: str, type: str, lang: str = "en", **kwargs) -> list:
    return [v.value for v in extract(text, type, lang=lang, now=NOW, **kwargs)]


def only(text: str, type: str, lang: str = "en", **kwargs):
    values = found(text, type, lang, **kwargs)
    assert len(values) == 1, values
    return values[0]


# --------------------------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("today", "en", "2026-11-26"),
        ("tonight", "en", "2026-11-26"),
        ("tomorrow", "en", "2026-11-27"),
        ("the day after tomorrow", "en", "2026-11-28"),
        ("yesterday", "en", "2026-11-25"),
        ("сегодня", "ru", "2026-11-26"),
        ("завтра", "ru", "2026-11-27"),
        ("послезавтра", "ru", "2026-11-28"),
        ("вчера", "ru", "2026-11-25"),
        ("позавчера", "ru", "2026-11-24"),
    ],
)
def test_relative_day_words_are_dates_relative_to_now(text, lang, expected):
    assert only(text, "date", lang) == expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("on Friday", "en", "2026-11-27"),
        ("this Friday", "en", "2026-11-27"),
        ("this Thursday", "en", "2026-11-26"),
        ("on Monday", "en", "2026-11-30"),
        ("в пятницу", "ru", "2026-11-27"),
        ("в эту пятницу", "ru", "2026-11-27"),
        ("во вторник", "ru", "2026-12-01"),
        ("в среду", "ru", "2026-12-02"),
    ],
)
def test_plain_and_this_weekday_is_the_nearest_from_today_on(text, lang, expected):
    assert only(text, "date", lang) == expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("next Friday", "en", "2026-12-04"),
        ("next Thursday", "en", "2026-12-03"),
        ("next Monday", "en", "2026-11-30"),
        ("next Sunday", "en", "2026-12-06"),
        ("в следующую пятницу", "ru", "2026-12-04"),
        ("в следующий понедельник", "ru", "2026-11-30"),
    ],
)
def test_next_weekday_is_that_day_of_next_week(text, lang, expected):
    assert only(text, "date", lang) == expected


def test_last_weekday_is_the_most_recent_before_today():
    assert only("last Friday", "date") == "2026-11-20"
    assert only("в прошлую среду", "date", "ru") == "2026-11-25"


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("in 3 days", "en", "2026-11-29"),
        ("in two weeks", "en", "2026-12-10"),
        ("in a week", "en", "2026-12-03"),
        ("in a couple of days", "en", "2026-11-28"),
        ("in twenty five days", "en", "2026-12-21"),
        ("in 2 months", "en", "2027-01-26"),
        ("two days ago", "en", "2026-11-24"),
        ("через 3 дня", "ru", "2026-11-29"),
        ("через неделю", "ru", "2026-12-03"),
        ("через пять дней", "ru", "2026-12-01"),
        ("через пару дней", "ru", "2026-11-28"),
        ("через месяц", "ru", "2026-12-26"),
        ("2 дня назад", "ru", "2026-11-24"),
    ],
)
def test_offsets_in_days_weeks_and_months_are_dates(text, lang, expected):
    assert only(text, "date", lang) == expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("on the 5th", "en", "2026-12-05"),
        ("5th", "en", "2026-12-05"),
        ("on the fifth", "en", "2026-12-05"),
        ("on the 26th", "en", "2026-11-26"),
        ("on the 30th", "en", "2026-11-30"),
        ("5-го числа", "ru", "2026-12-05"),
        ("пятого числа", "ru", "2026-12-05"),
    ],
)
def test_day_of_month_alone_is_the_next_such_day(text, lang, expected):
    assert only(text, "date", lang) == expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("3 декабря", "ru", "2026-12-03"),
        ("5 декабря", "ru", "2026-12-05"),
        ("на 5-е декабря", "ru", "2026-12-05"),
        ("двадцать пятого декабря", "ru", "2026-12-25"),
        ("1 марта", "ru", "2027-03-01"),
        ("5 декабря 2027 года", "ru", "2027-12-05"),
        ("December 5", "en", "2026-12-05"),
        ("Dec 5th", "en", "2026-12-05"),
        ("December 3rd", "en", "2026-12-03"),
        ("the 5th of December", "en", "2026-12-05"),
        ("5 December 2027", "en", "2027-12-05"),
        ("December 3rd, 2027", "en", "2027-12-03"),
        ("March 1", "en", "2027-03-01"),
        ("2026-12-03", "en", "2026-12-03"),
        ("03.12.2026", "ru", "2026-12-03"),
        ("03.12.27", "ru", "2027-12-03"),
        ("03.12", "ru", "2026-12-03"),
        ("01.02", "ru", "2027-02-01"),
    ],
)
def test_calendar_dates_without_a_year_prefer_the_future(text, lang, expected):
    assert only(text, "date", lang) == expected


PAST = Slot(name="when", type="date", prefer="past")


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("I lost it on Monday", "en", "2026-11-23"),  # NOW is Thursday 26 November 2026
        ("on Thursday", "en", "2026-11-26"),
        ("on Friday", "en", "2026-11-20"),
        ("on the 30th", "en", "2026-10-30"),
        ("on 28 December", "en", "2025-12-28"),
        ("в пятницу", "ru", "2026-11-20"),
        ("3 марта", "ru", "2026-03-03"),
        ("next Monday", "en", "2026-11-30"),  # said outright, the week is not changed
        ("5 March 2027", "en", "2027-03-05"),
        ("yesterday", "en", "2026-11-25"),
    ],
)
def test_slots_about_the_past_read_incomplete_dates_as_the_last_such_day(text, lang, expected):
    assert only(text, "date", lang, slot=PAST) == expected


def test_a_time_alone_in_a_past_slot_is_its_last_occurrence():
    past = Slot(name="when", type="datetime", prefer="past")
    assert only("at 3pm", "datetime", slot=past) == "2026-11-25T15:00"


def test_dateparser_reads_complete_absolute_dates_the_rules_do_not():
    assert only("flight on 3-Dec-2027 please", "date") == "2027-12-03"


def test_impossible_dates_and_non_dates_are_not_dates():
    assert found("31.02.2027", "date", "ru") == []
    assert found("I need 2 tickets", "date") == []
    assert found("it costs 2.5", "date") == []
    assert found("the second time", "date") == []


def test_date_value_spans_the_words_the_user_said():
    (value,) = extract("I fly on Friday", "date", now=NOW)
    assert (value.text, value.start, value.end) == ("Friday", 9, 15)


# --------------------------------------------------------------------------------------------
# Times and datetimes


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("at 10", "en", "10:00"),
        ("at 10am", "en", "10:00"),
        ("at 10 a.m.", "en", "10:00"),
        ("10 pm", "en", "22:00"),
        ("10:30", "en", "10:30"),
        ("at noon", "en", "12:00"),
        ("at midnight", "en", "00:00"),
        ("12 am", "en", "00:00"),
        ("at ten", "en", "10:00"),
        ("seven o'clock", "en", "07:00"),
        ("half past 7 pm", "en", "19:30"),
        ("quarter to 9", "en", "08:45"),
        ("в 10", "ru", "10:00"),
        ("в 10 утра", "ru", "10:00"),
        ("в 8 вечера", "ru", "20:00"),
        ("в 15:30", "ru", "15:30"),
        ("в 2 часа дня", "ru", "14:00"),
        ("в час ночи", "ru", "01:00"),
        ("в одиннадцать вечера", "ru", "23:00"),
        ("к 10 часам", "ru", "10:00"),
        ("в полдень", "ru", "12:00"),
        ("в полночь", "ru", "00:00"),
    ],
)
def test_clock_times_are_normalised_to_24_hours(text, lang, expected):
    assert only(text, "time", lang) == expected


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("утром", "ru", "09:00"),
        ("днём", "ru", "13:00"),
        ("вечером", "ru", "19:00"),
        ("ночью", "ru", "23:00"),
        ("in the morning", "en", "09:00"),
        ("in the afternoon", "en", "13:00"),
        ("in the evening", "en", "19:00"),
        ("at night", "en", "23:00"),
        ("tonight", "en", "19:00"),
    ],
)
def test_parts_of_the_day_stand_for_documented_default_times(text, lang, expected):
    assert only(text, "time", lang) == expected


def test_hours_one_to_six_without_am_pm_are_afternoon():
    assert only("at 3", "time") == "15:00"
    assert only("в 5", "time", "ru") == "17:00"
    assert only("at 03:00", "time") == "03:00"
    assert only("at 3am", "time") == "03:00"
    assert only("в 5 утра", "time", "ru") == "05:00"


def test_a_part_of_the_day_sets_the_half_of_a_bare_hour():
    assert only("tonight at 8", "datetime") == "2026-11-26T20:00"
    assert only("tomorrow evening at 7", "datetime") == "2026-11-27T19:00"
    assert only("завтра вечером в 8", "datetime", "ru") == "2026-11-27T20:00"


def test_bare_numbers_and_counts_are_not_times():
    assert found("I need 10 tickets", "time") == []
    assert found("в 10 раз больше", "time", "ru") == []
    assert found("at 10 percent", "time") == []
    assert found("at one point", "time") == []


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("послезавтра в 10 утра", "ru", "2026-11-28T10:00"),
        ("в пятницу в 8 вечера", "ru", "2026-11-27T20:00"),
        ("завтра утром", "ru", "2026-11-27T09:00"),
        ("3 декабря в 15:30", "ru", "2026-12-03T15:30"),
        ("tomorrow at 10", "en", "2026-11-27T10:00"),
        ("at 10am tomorrow", "en", "2026-11-27T10:00"),
        ("next Friday at 6:30 pm", "en", "2026-12-04T18:30"),
        ("on the 5th at noon", "en", "2026-12-05T12:00"),
        ("2026-12-03T10:00", "en", "2026-12-03T10:00"),
    ],
)
def test_a_date_next_to_a_time_makes_one_datetime(text, lang, expected):
    assert only(text, "datetime", lang) == expected


def test_datetime_of_a_date_alone_is_a_date():
    assert only("в следующую пятницу", "datetime", "ru") == "2026-12-04"


def test_datetime_of_a_time_alone_is_its_next_occurrence():
    assert only("at 10", "datetime") == "2026-11-26T10:00"
    assert only("at 8am", "datetime") == "2026-11-27T08:00"


def test_offsets_in_hours_and_minutes_are_datetimes():
    assert only("через два часа", "datetime", "ru") == "2026-11-26T11:00"
    assert only("через полчаса", "datetime", "ru") == "2026-11-26T09:30"
    assert only("in 90 minutes", "datetime") == "2026-11-26T10:30"
    assert only("через два часа", "time", "ru") == "11:00"


def test_date_and_time_of_one_phrase_have_separate_spans():
    values = extract_all("послезавтра в 10 утра", ["date", "time"], lang="ru", now=NOW)
    assert [(v.type, v.value, v.text) for v in values] == [
        ("date", "2026-11-28", "послезавтра"),
        ("time", "10:00", "10 утра"),
    ]


def test_now_defaults_to_the_current_time():
    before = datetime.now().date().isoformat()
    (value,) = extract("today", "date")
    assert value.value in {before, datetime.now().date().isoformat()}


# --------------------------------------------------------------------------------------------
# Numbers and money


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("42", "en", 42),
        ("2.5", "en", 2.5),
        ("2,5", "en", 2.5),
        ("2,5", "ru", 2.5),
        ("1,500", "en", 1500),
        ("1 500", "ru", 1500),
        ("-3", "en", -3),
        ("two hundred", "en", 200),
        ("two hundred and fifty", "en", 250),
        ("twenty-five", "en", 25),
        ("a dozen", "en", 12),
        ("three thousand", "en", 3000),
        ("один", "ru", 1),
        ("одну", "ru", 1),
        ("две", "ru", 2),
        ("трёх", "ru", 3),
        ("пяти", "ru", 5),
        ("двадцать", "ru", 20),
        ("двести пятьдесят", "ru", 250),
        ("сто двадцать пять", "ru", 125),
        ("две тысячи пятьсот", "ru", 2500),
        ("полторы тысячи", "ru", 1500),
        ("5 тысяч", "ru", 5000),
    ],
)
def test_numbers_in_digits_and_words_are_normalised(text, lang, expected):
    value = only(text, "number", lang)
    assert value == expected
    assert type(value) is type(expected)


def test_number_words_that_do_not_combine_are_separate_numbers():
    assert found("five six", "number") == [5, 6]
    assert found("one or two tickets", "number") == [1, 2]


def test_integer_slots_take_whole_numbers_only():
    assert found("2.5 or 3", "integer") == [3]
    assert found("двое или трое, скорее три", "integer", "ru") == [3]


def test_numbers_outside_the_slot_range_are_dropped():
    slot = Slot(name="guests", type="integer", min=1, max=10)
    assert found("12 or 4", "integer", slot=slot) == [4]


@pytest.mark.parametrize(
    ("text", "lang", "amount", "currency"),
    [
        ("$50", "en", "50.00", "USD"),
        ("50 dollars", "en", "50.00", "USD"),
        ("fifty bucks", "en", "50.00", "USD"),
        ("USD 1,200.5", "en", "1200.50", "USD"),
        ("€20", "en", "20.00", "EUR"),
        ("20 euros", "en", "20.00", "EUR"),
        ("20€", "en", "20.00", "EUR"),
        ("£3.99", "en", "3.99", "GBP"),
        ("10 pounds", "en", "10.00", "GBP"),
        ("100 рублей", "ru", "100.00", "RUB"),
        ("100 руб.", "ru", "100.00", "RUB"),
        ("100₽", "ru", "100.00", "RUB"),
        ("1 500,50 ₽", "ru", "1500.50", "RUB"),
        ("сто рублей", "ru", "100.00", "RUB"),
        ("пять тысяч рублей", "ru", "5000.00", "RUB"),
        ("20 евро", "ru", "20.00", "EUR"),
        ("30 долларов", "ru", "30.00", "USD"),
    ],
)
def test_money_is_an_amount_with_a_currency(text, lang, amount, currency):
    assert only(text, "money", lang) == {"amount": amount, "currency": currency}


def test_a_number_without_a_currency_is_not_money():
    assert found("I have 50", "money") == []
    assert found("50 штук", "money", "ru") == []


# --------------------------------------------------------------------------------------------
# Identifiers


def test_phone_numbers_are_e164():
    assert only("+7 (916) 123-45-67", "phone", "ru") == "+79161234567"
    assert only("звоните 8 916 123-45-67", "phone", "ru") == "+79161234567"
    assert only("call (650) 253-0000", "phone") == "+16502530000"


def test_phone_region_follows_the_language():
    assert only("916 123 45 67", "phone", "ru") == "+79161234567"
    assert found("916 123 45 67", "phone", "en") != ["+79161234567"]


def test_email_is_lower_cased():
    assert only("write to John.Doe+x@Example.COM.", "email") == "john.doe+x@example.com"
    assert found("not an email: john@", "email") == []


def test_card_numbers_pass_the_luhn_check():
    assert only("my card is 4111 1111 1111 1111", "card_number") == "4111111111111111"
    assert only("5500-0000-0000-0004", "card_number") == "5500000000000004"
    assert found("4111 1111 1111 1112", "card_number") == []
    assert found("4111 1111", "card_number") == []
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_iban_checksum_is_validated():
    assert only("IBAN GB82 WEST 1234 5698 7654 32, thanks", "account_number") == "GB82WEST12345698765432"
    assert only("de89370400440532013000", "account_number") == "DE89370400440532013000"
    assert found("GB82 WEST 1234 5698 7654 33", "account_number") == []
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB83WEST12345698765432")


def test_account_numbers_are_eight_to_twenty_digits():
    assert only("счёт 40817810099910004312", "account_number", "ru") == "40817810099910004312"
    assert only("account 1234 5678", "account_number") == "12345678"
    assert found("account 1234567", "account_number") == []


# --------------------------------------------------------------------------------------------
# Enum, lookup, regex

ACTION = Slot(
    name="action",
    type="enum",
    choices=[
        Choice(value="card", synonyms=["карта", "credit card"]),
        Choice(value="block", synonyms=["заблокировать"]),
    ],
)


def test_enum_matches_values_and_synonyms_case_insensitively():
    assert found("Block my CARD", "enum", slot=ACTION) == ["block", "card"]
    assert found("my credit card", "enum", slot=ACTION) == ["card"]


def test_enum_matches_russian_inflected_forms():
    assert found("заблокировать карту", "enum", "ru", slot=ACTION) == ["block", "card"]
    assert found("заблокируйте, пожалуйста, мою карту", "enum", "ru", slot=ACTION) == ["block", "card"]
    plain = Slot(name="what", type="enum", choices=["карта", "счёт"])
    assert found("нет карты, есть счета", "enum", "ru", slot=plain) == ["карта", "счёт"]


def test_enum_tolerates_typos():
    assert found("blok my cards", "enum", slot=ACTION) == ["block", "card"]
    assert found("I want to cancel it", "enum", slot=ACTION) == []


REISSUE = Slot(
    name="reissue",
    type="enum",
    choices=[
        Choice(value="new card", synonyms=["replacement", "send a new one"]),
        Choice(value="no new card", synonyms=["no replacement", "without a replacement"]),
        Choice(value="перевыпустить", synonyms=["замена"]),
        Choice(value="без перевыпуска", synonyms=["без замены"]),
    ],
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("withuot a replacement", "no new card"),  # a typo inside the longer, negated synonym
        ("without a replacment", "no new card"),
        ("without replacement", "no new card"),  # a dropped article
        ("no replacemnt needed", "no new card"),
        ("a replacement please", "new card"),  # "a" is not "no": an article never stands for a negation
        ("i want a replacment", "new card"),
        ("бех замены", "без перевыпуска"),
        ("замена нужна", "перевыпустить"),
    ],
)
def test_typos_inside_multi_word_synonyms_keep_their_meaning(text, expected):
    assert only(text, "enum", "ru" if text[0] > "z" else "en", slot=REISSUE) == expected


def test_lookup_takes_a_list_or_a_file(tmp_path: Path):
    listed = Slot(name="dish", type="lookup", lookup=["Margherita", "Quattro Formaggi"])
    assert found("one quattro formaggi please", "lookup", slot=listed) == ["Quattro Formaggi"]
    table = tmp_path / "drinks.txt"
    table.write_text("# drinks\nCola\tкола|coke\nOrange juice\n\n", encoding="utf-8")
    from_file = Slot(name="drink", type="lookup", lookup=str(table))
    assert found("a coke and an orange juice", "lookup", slot=from_file) == ["Cola", "Orange juice"]
    assert found("две колы", "lookup", "ru", slot=from_file) == ["Cola"]


def test_a_missing_lookup_file_names_the_slot_and_the_file(tmp_path: Path):
    slot = Slot(name="drink", type="lookup", lookup=str(tmp_path / "missing.txt"))
    with pytest.raises(SourceError, match=r"missing\.txt.*slot 'drink'.*lookup file"):
        extract("cola", "lookup", slot=slot)


def test_regex_slots_return_the_matched_text():
    slot = Slot(name="order", type="regex", pattern=r"[A-Z]{2}-\d{4}")
    assert found("order AB-1234 and CD-5678", "regex", slot=slot) == ["AB-1234", "CD-5678"]


def test_unknown_types_and_missing_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown slot type 'colour'; accepted types: text, city"):
        extract("red", "colour")
    with pytest.raises(ConfigError, match="needs the slot"):
        extract("card", "enum")
    with pytest.raises(ConfigError, match="'pattern'"):
        extract("AB-1234", "regex")


# --------------------------------------------------------------------------------------------
# Cities and roles


def test_cities_get_roles_from_english_prepositions():
    values = extract("from Moscow to Paris", "city")
    assert [(v.value, v.role, v.text) for v in values] == [
        ("Moscow", "origin", "Moscow"),
        ("Paris", "destination", "Paris"),
    ]


def test_cities_in_russian_case_forms_get_roles_from_russian_prepositions():
    values = extract("из Москвы в Санкт-Петербург", "city", lang="ru")
    assert [(v.value, v.role) for v in values] == [("Moscow", "origin"), ("Saint Petersburg", "destination")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("в Москву", "Moscow"),
        ("о Москве", "Moscow"),
        ("из Санкт-Петербурга", "Saint Petersburg"),
        ("в Питер", "Saint Petersburg"),
        ("из Нижнего Новгорода", "Nizhny Novgorod"),
        ("до Ростова-на-Дону", "Rostov-on-Don"),
        ("из Казани", "Kazan"),
        ("в Сочи", "Sochi"),
        ("в Париж", "Paris"),
        ("в Нью-Йорк", "New York"),
        ("из Грозного", "Grozny"),
    ],
)
def test_russian_city_names_are_lemmatised(text, expected):
    assert only(text, "city", "ru") == expected


def test_english_city_names_match_case_insensitively_and_with_typos():
    assert found("flying from new york to são paulo", "city") == ["New York", "Sao Paulo"]
    assert found("from Moscw to Amsterdan", "city") == ["Moscow", "Amsterdam"]
    assert found("amsterdan", "city") == ["Amsterdam"]


def test_ordinary_words_are_not_cities():
    assert found("I want to settle down", "city") == []
    assert found("грозная туча", "city", "ru") == []
    assert found("Грозный", "city", "ru") == ["Grozny"]


def test_location_uses_the_same_gazetteer():
    assert only("I live in Berlin", "location") == "Berlin"


def test_the_gazetteer_has_three_columns_and_unique_canonical_names():
    rows = [line.split("\t") for line in GAZETTEER.read_text(encoding="utf-8").splitlines() if line and line[0] != "#"]
    assert all(len(row) == 3 for row in rows)
    canonical = [row[0] for row in rows]
    assert len(canonical) == len(set(canonical)) >= 230


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("from", "origin"),
        ("origin", "origin"),
        ("source", "origin"),
        ("departure_city", "origin"),
        ("city_from", "origin"),
        ("to", "destination"),
        ("destination", "destination"),
        ("arrival", "destination"),
        ("to_city", "destination"),
        ("date", None),
        ("tomato", None),
    ],
)
def test_default_role_follows_the_slot_name(name, role):
    assert default_role(name) == role


def test_slots_with_a_role_get_roles_for_any_type():
    slot = Slot(name="dates", type="date", role="period")
    values = extract("from Monday to Friday", "date", now=NOW, slot=slot)
    assert [(v.value, v.role) for v in values] == [("2026-11-30", "origin"), ("2026-11-27", "destination")]
    assert [v.role for v in extract("from Monday", "date", now=NOW)] == [None]


# --------------------------------------------------------------------------------------------
# Person, text, extract_all


def test_person_is_read_only_after_an_introduction():
    assert found("My name is John Smith", "person") == ["John Smith"]
    assert found("меня зовут Анна", "person", "ru") == ["Анна"]
    assert found("John Smith called", "person") == []


def test_text_is_the_stripped_utterance():
    (value,) = extract("  hello there \n", "text")
    assert (value.value, value.start, value.end) == ("hello there", 2, 13)
    assert extract("   ", "text") == []


def test_extract_all_does_not_return_overlapping_values():
    values = extract_all("my card 4111 1111 1111 1111", ["card_number", "phone", "number", "account_number"])
    assert [(v.type, v.value) for v in values] == [("card_number", "4111111111111111")]


def test_extract_all_prefers_money_and_dates_over_plain_numbers():
    values = extract_all("5 декабря за 100 рублей, нас 2", ["date", "money", "number"], lang="ru", now=NOW)
    assert [(v.type, v.value) for v in values] == [
        ("date", "2026-12-05"),
        ("money", {"amount": "100.00", "currency": "RUB"}),
        ("number", 2),
    ]


def test_extract_all_fills_a_travel_frame():
    slots = [
        Slot(name="from", type="city"),
        Slot(name="to", type="city"),
        Slot(name="when", type="datetime"),
        Slot(name="seats", type="integer", min=1, max=9),
    ]
    values = extract_all(
        "из Москвы в Санкт-Петербург послезавтра в 10 утра, 2 места",
        [s.type for s in slots],
        lang="ru",
        now=NOW,
        slots=slots,
    )
    assert [(v.type, v.value, v.role) for v in values] == [
        ("city", "Moscow", "origin"),
        ("city", "Saint Petersburg", "destination"),
        ("datetime", "2026-11-28T10:00", None),
        ("integer", 2, None),
    ]


def test_extract_all_uses_text_only_where_nothing_else_matched():
    assert [v.type for v in extract_all("to Paris", ["text", "city"])] == ["city"]
    assert [v.type for v in extract_all("no idea", ["text", "city"])] == ["text"]


def test_values_are_json_serialisable():
    values = extract_all("$50 tomorrow to Paris", ["money", "date", "city"], now=NOW)
    assert json.loads(json.dumps([dataclasses.asdict(v) for v in values]))[0]["value"] == {
        "amount": "50.00",
        "currency": "USD",
    }
