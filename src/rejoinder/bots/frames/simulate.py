"""An agenda-based user simulator for the frame bot (after Schatzmann et al., 2007), English and Russian.

A simulated user has a **goal** (a frame and the slot values it wants submitted) and an **agenda**, a
stack of user acts: inform the intent (often volunteering some slots in the same utterance), answer
what the bot asks, confirm a read-back that matches the goal, correct one that does not ("no, to
Paris" / "нет, в Париже"), now and then change their mind about a value already given, volunteer a
slot before it is asked, or ask an unrelated question (opening hours, baggage) and carry on. The
bot's reply pushes acts onto the agenda; each turn the user pops the top act (sometimes two) and
says it with a template, paraphrased and made noisy (typos, lower case, missing punctuation,
filler words).

The user reads the bot's act from its reply (``meta["action"]``: ``ask:<slot>``, ``confirm``,
``submitted`` ...) and, for a read-back, the values the read-back template shows, as a person reads
them off the screen; values the bot keeps but does not read back stay unseen. Goals hold the
*normalised* values the bot should store (``values.extract``'s normal forms: ISO dates computed
against the dialogue's clock, canonical city and enum values, money objects), so a dialogue
succeeds when the bot submits the goal's frame with exactly the goal's values.

    >>> report = simulate(bot, n=100, seed=1)          # doctest: +SKIP
    >>> report.success_rate, report.mean_turns, report.wrong_submissions   # doctest: +SKIP

Everything is drawn from one seeded :class:`random.Random` per dialogue, so a seed gives the same
dialogues (given the same bot).
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from rejoinder.bots.frames import values as typed
from rejoinder.bots.frames.schema import Frame, Slot
from rejoinder.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Value pools: (normalised value, surface forms) per slot type and language

EN_MONTHS = ("January February March April May June July August September October November December").split()
RU_MONTHS_GEN = ("января февраля марта апреля мая июня июля августа сентября октября ноября декабря").split()
EN_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
RU_WEEKDAYS_ACC = "понедельник вторник среду четверг пятницу субботу воскресенье".split()
RU_LAST = ("прошлый", "прошлый", "прошлую", "прошлый", "прошлую", "прошлую", "прошлое")
EN_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}
RU_NUMBERS = {2: "два", 3: "три", 4: "четыре", 5: "пять"}


def _ru_days(n: int) -> str:
    return "дня" if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14) else "дней"


def past_dates(today: date, lang: str) -> list[tuple[str, str]]:
    """Phrases for a day in the past ("yesterday", "last Friday", "3 дня назад") with their ISO dates."""
    out: list[tuple[str, date]] = []
    last = {wd: today - timedelta(days=(today.weekday() - wd - 1) % 7 + 1) for wd in range(7)}
    plain = {wd: today - timedelta(days=(today.weekday() - wd) % 7) for wd in range(7)}
    if lang == "ru":
        out += [("сегодня", today), ("вчера", today - timedelta(1)), ("позавчера", today - timedelta(2))]
        for n in (2, 3, 4, 5):
            out.append((f"{n} {_ru_days(n)} назад", today - timedelta(n)))
        out += [(f"{RU_NUMBERS[n]} {_ru_days(n)} назад", today - timedelta(n)) for n in (2, 3)]
        out.append(("неделю назад", today - timedelta(7)))
        out += [(f"в {RU_LAST[wd]} {RU_WEEKDAYS_ACC[wd]}", last[wd]) for wd in range(7)]
        out += [(f"{'во' if wd == 1 else 'в'} {RU_WEEKDAYS_ACC[wd]}", plain[wd]) for wd in range(7)]
        for back in (6, 11, 19, 33):
            d = today - timedelta(back)
            out.append((f"{d.day} {RU_MONTHS_GEN[d.month - 1]} {d.year} года", d))
            out.append((d.strftime("%d.%m.%Y"), d))
    else:
        out += [
            ("today", today),
            ("yesterday", today - timedelta(1)),
            ("the day before yesterday", today - timedelta(2)),
        ]
        for n in (2, 3, 4, 5):
            out.append((f"{n} days ago", today - timedelta(n)))
        out += [(f"{EN_NUMBERS[n]} days ago", today - timedelta(n)) for n in (2, 3)]
        out.append(("a week ago", today - timedelta(7)))
        out += [(f"last {EN_WEEKDAYS[wd]}", last[wd]) for wd in range(7)]
        out += [(f"on {EN_WEEKDAYS[wd]}", plain[wd]) for wd in range(7)]
        for back in (6, 11, 19, 33):
            d = today - timedelta(back)
            out.append((f"on {d.day} {EN_MONTHS[d.month - 1]} {d.year}", d))
            out.append((f"on {d.strftime('%d.%m.%Y')}", d))
    return [(phrase, d.isoformat()) for phrase, d in out]


def future_dates(today: date, lang: str) -> list[tuple[str, str]]:
    """Phrases for a day ahead ("tomorrow", "on Friday", "next Friday", "on 5 December") with ISO dates."""
    out: list[tuple[str, date]] = []
    ahead = {wd: today + timedelta(days=(wd - today.weekday()) % 7) for wd in range(7)}
    following = {}
    for wd in range(7):
        d = today + timedelta(days=(wd - today.weekday() - 1) % 7 + 1)
        following[wd] = d + timedelta(7) if d.isocalendar()[:2] == today.isocalendar()[:2] else d
    days = [today + timedelta(n) for n in (9, 16, 23, 40)]
    if lang == "ru":
        out += [("завтра", today + timedelta(1)), ("послезавтра", today + timedelta(2))]
        out += [(f"через {n} {_ru_days(n)}", today + timedelta(n)) for n in (3, 4, 5)]
        out += [(f"в {RU_WEEKDAYS_ACC[wd]}", ahead[wd]) for wd in range(7) if wd != today.weekday()]
        nxt = ("следующий", "следующий", "следующую", "следующий", "следующую", "следующую", "следующее")
        out += [(f"в {nxt[wd]} {RU_WEEKDAYS_ACC[wd]}", following[wd]) for wd in range(7)]
        out += [(f"{d.day} {RU_MONTHS_GEN[d.month - 1]}", d) for d in days]
        out += [(d.strftime("%d.%m.%Y"), d) for d in days[:2]]
    else:
        out += [("tomorrow", today + timedelta(1)), ("the day after tomorrow", today + timedelta(2))]
        out += [(f"in {n} days", today + timedelta(n)) for n in (3, 4, 5)]
        out += [(f"on {EN_WEEKDAYS[wd]}", ahead[wd]) for wd in range(7) if wd != today.weekday()]
        out += [(f"next {EN_WEEKDAYS[wd]}", following[wd]) for wd in range(7)]
        out += [(f"on {d.day} {EN_MONTHS[d.month - 1]}", d) for d in days]
        out += [(f"{EN_MONTHS[d.month - 1]} {d.day}{_en_suffix(d.day)}", d) for d in days[:2]]
        out += [(f"on {d.strftime('%d.%m.%Y')}", d) for d in days[:2]]
    return [(phrase, d.isoformat()) for phrase, d in out]


def _en_suffix(day: int) -> str:
    if 10 <= day % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def money_pool(lang: str) -> list[tuple[str, dict[str, str]]]:
    """Amounts with a currency as a user writes them, with the normalised money object."""

    def obj(amount: str, currency: str) -> dict[str, str]:
        return {"amount": amount, "currency": currency}

    if lang == "ru":
        return [
            ("500 рублей", obj("500.00", "RUB")),
            ("1 200 ₽", obj("1200.00", "RUB")),
            ("3000 руб.", obj("3000.00", "RUB")),
            ("4 990 рублей", obj("4990.00", "RUB")),
            ("299 ₽", obj("299.00", "RUB")),
            ("12 000 руб.", obj("12000.00", "RUB")),
            ("750 рублей", obj("750.00", "RUB")),
            ("50 долларов", obj("50.00", "USD")),
            ("20 евро", obj("20.00", "EUR")),
            ("12,50 евро", obj("12.50", "EUR")),
        ]
    return [
        ("50 pounds", obj("50.00", "GBP")),
        ("£49.99", obj("49.99", "GBP")),
        ("£12.50", obj("12.50", "GBP")),
        ("£1,200", obj("1200.00", "GBP")),
        ("35 pounds", obj("35.00", "GBP")),
        ("$120", obj("120.00", "USD")),
        ("80 dollars", obj("80.00", "USD")),
        ("300 euros", obj("300.00", "EUR")),
        ("€75", obj("75.00", "EUR")),
        ("260 GBP", obj("260.00", "GBP")),
    ]


MERCHANTS = {
    "en": [
        "Amazon", "Fresh Basket", "StreamFlix", "Cafe Aroma", "City Fuel", "Skyline Hotels", "FitLife Gym",
        "Travelo", "Gadget World", "Tesco", "Pizza Planet", "Bookworm Books", "Green Grocer", "Uber",
    ],
    "ru": [
        "Озон", "Техномир", "Свежий рынок", "КиноПлюс", "Аромат", "Городское топливо", "Атлет", "Пятёрочка",
        "Спортмастер", "Лента", "Книжный дом", "Вкусная пицца",
    ],
}  # fmt: skip


def reference(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return rng.choice(letters) + rng.choice(letters) + "".join(rng.choice(string.digits) for _ in range(6))


CITY_ROLES = ("to", "from", "where")


@lru_cache(maxsize=4)
def city_pool(lang: str) -> tuple[tuple[str, str, dict[str, str]], ...]:
    """Gazetteer cities as (canonical, name, {"to": "to Paris", "from": "from Paris", "where": "in Paris"}).

    Russian forms are inflected with pymorphy3 ("в Париж", "из Парижа", "в Париже"). A city is kept
    when ``values.extract`` reads every form, capitalised and lower-cased, as that city alone.
    """
    pool = []
    for line in typed.GAZETTEER.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        canonical, en, ru = (c.strip() for c in line.split("\t"))
        if lang == "ru":
            name = ru.split("|")[0]
            if " " in name or "-" in name:
                continue
            cases = {
                role: _ru_inflect(name, case) for role, case in (("to", "accs"), ("from", "gent"), ("where", "loct"))
            }
            if any(form is None for form in cases.values()):
                continue
            forms = {"to": f"в {cases['to']}", "from": f"из {cases['from']}", "where": f"в {cases['where']}"}
        else:
            name = en.split("|")[0]
            if not name.isascii():
                continue
            forms = {"to": f"to {name}", "from": f"from {name}", "where": f"in {name}"}
        texts = [name, *forms.values()]
        if all(_reads_back(text, canonical, lang) for form in texts for text in (form, form.lower())):
            pool.append((canonical, name, forms))
    return tuple(pool)


def _ru_inflect(name: str, case: str) -> str | None:
    morph = typed._analyzer()
    if morph is None:  # pragma: no cover - pymorphy3 is part of the [ru] extra
        return None
    parses = [p for p in morph.parse(name) if "Geox" in str(p.tag) and "nomn" in str(p.tag)]
    parses = parses or [p for p in morph.parse(name) if "Geox" in str(p.tag)]
    if not parses:
        return None
    inflected = parses[0].inflect({case})
    if inflected is None:
        return None
    return inflected.word[:1].upper() + inflected.word[1:]


def _reads_back(text: str, canonical: str, lang: str) -> bool:
    found = typed.extract(text, "city", lang=lang, now=datetime(2026, 1, 1))
    return [v.value for v in found] == [canonical]


# --------------------------------------------------------------------------------------------
# What users say: per language, templates for acts and slots

# Enum surfaces per (frame, slot): canonical value -> (answers, mentions). Answers reply to the slot's
# question; mentions go inside a sentence (Russian mentions are in the case the templates need).
ENUMS: dict[str, dict[tuple[str, str], dict[str, tuple[list[str], list[str]]]]] = {
    "en": {
        ("*", "card"): {
            "debit": (["debit card", "visa", "visa debit", "debit"], ["debit card", "visa", "visa debit"]),
            "credit": (["credit card", "mastercard", "credit"], ["credit card", "mastercard"]),
        },
        ("block_card", "reason"): {
            "lost": ([], ["I lost it", "I misplaced it", "I can't find it"]),
            "stolen": ([], ["it was stolen", "I was pickpocketed", "I got robbed"]),
            "suspicious": ([], ["I see strange payments", "I think it's fraud", "I think it was skimmed"]),
            "travel": ([], ["I'm travelling", "I'm going abroad", "I'm on holiday"]),
            "other": ([], ["just in case"]),
        },
        ("lost_card", "reissue"): {
            "new card": ([], ["please send me a new card", "I need a replacement card", "please reissue it"]),
            "no new card": ([], ["without a replacement please", "I want it without a new card",
                                 "don't send a new one"]),
        },
        ("balance", "account"): {
            "current": (["current account", "checking account", "main account", "current"],
                        ["current account", "checking account", "everyday account"]),
            "savings": (["savings account", "savings", "deposit account"], ["savings account", "saver", "savings"]),
            "credit card": (["credit card", "mastercard", "credit account"], ["credit card", "mastercard"]),
        },
    },
    "ru": {
        ("*", "card"): {
            "дебетовая карта": (["дебетовую", "дебетовую карту", "дебетовку", "зарплатную карту", "визу"],
                                ["дебетовую карту", "дебетовку", "зарплатную карту", "визу"]),
            "кредитная карта": (["кредитную", "кредитную карту", "кредитку", "мастеркард"],
                                ["кредитную карту", "кредитку", "золотую карту"]),
        },
        ("block_card", "reason"): {
            "потеря": ([], ["я её потерял", "найти не могу", "где-то её выронил"]),
            "кража": ([], ["её украли", "её вытащили в метро", "карточку стащили"]),
            "подозрительные операции": ([], ["вижу подозрительные операции", "были странные списания",
                                             "звонили мошенники"]),
            "поездка": ([], ["уезжаю в командировку", "еду в отпуск", "уезжаю за границу"]),
            "другое": ([], ["на всякий случай", "просто так"]),
        },
        ("lost_card", "reissue"): {
            "перевыпустить": ([], ["нужна новая карта", "перевыпустите её", "пришлите новую"]),
            "без перевыпуска": ([], ["без перевыпуска", "новая не нужна", "без замены"]),
        },
        ("balance", "account"): {
            "текущий счёт": (["текущий", "текущий счёт", "основной счёт", "зарплатная карта"],
                             ["текущем счёте", "основном счёте", "зарплатной карте"]),
            "сберегательный счёт": (["сберегательный", "накопительный счёт", "вклад"],
                                    ["сберегательном счёте", "накопительном счёте", "вкладе"]),
            "кредитная карта": (["кредитная карта", "кредитка", "кредитный"], ["кредитной карте", "кредитке"]),
        },
    },
}  # fmt: skip


@dataclass(frozen=True)
class Speech:
    """How users of one language say one slot: answers to its question, clauses that mention it."""

    answers: tuple[str, ...] = ("{v}",)
    clauses: tuple[str, ...] = ("{m}",)
    inline: str = "{m}"


# Keys: slot type, or "frame.slot" for a slot that needs its own words. {v}: the answer surface
# (e.g. "Paris", "visa"); {m}: the mention surface ("in Paris", "visa").
SPEECH: dict[str, dict[str, Speech]] = {
    "en": {
        "city": Speech(("{v}", "{m}", "{m} please"), ("{m}",)),
        "lost_card.where": Speech(("{m}",), ("{m}", "it happened {m}", "I was {m}")),
        "date": Speech(("{v}", "it was {v}", "I think {v}", "{v} I think"), ("{m}",)),
        "travel.date": Speech(("{v}", "{v} please", "I'd like to go {v}", "I want to travel {v}"), ("{m}",)),
        "enum": Speech(("{v}", "the {v}", "my {v}", "{v} please"), ("my {m}", "it's my {m}")),
        "block_card.reason": Speech(("{m}",), ("{m}", "because {m}")),
        "lost_card.reissue": Speech(("{m}",), ("{m}",)),
        "money": Speech(("{v}", "it was {v}", "{v} I think", "about {v}"), ("it was {m}", "the amount was {m}")),
        "regex": Speech(("{v}", "it's {v}", "the reference is {v}", "{v} I think"), ("reference {m}", "ref {m}")),
        "text": Speech(("{v}",), ("the shop was {m}", "it was {m}")),
    },
    "ru": {
        "city": Speech(("{v}", "{m}"), ("{m}",)),
        "lost_card.where": Speech(("{m}",), ("{m}", "это было {m}", "я был {m}")),
        "date": Speech(("{v}", "это было {v}", "кажется, {v}", "{v}, по-моему"), ("{m}",)),
        "enum": Speech(("{v}", "{v}, пожалуйста", "мою {v}"), ("{m}",)),
        "balance.account": Speech(("{v}", "{v}, пожалуйста", "давайте {v}"), ("на {m}",), "на {m}"),
        "block_card.reason": Speech(("{m}",), ("{m}", "потому что {m}")),
        "lost_card.reissue": Speech(("{m}",), ("{m}",)),
        "money": Speech(("{v}", "было {v}", "{v}, кажется", "примерно {v}"), ("сумма {m}", "было {m}")),
        "regex": Speech(("{v}", "номер {v}", "номер перевода {v}", "вот номер: {v}"), ("номер {m}", "перевод {m}")),
        "text": Speech(("{v}",), ("магазин {m}", "это был {m}")),
    },
}

# Intent utterances per frame: placeholders are slot mentions; a template is used when its
# placeholders are all volunteered, and the other volunteered slots are appended as clauses.
INTENTS: dict[str, dict[str, list[str]]] = {
    "en": {
        "lost_card": [
            "I lost my card", "I've lost my card", "my card is missing", "I need to report a lost card",
            "someone stole my card", "my card was stolen", "I can't find my card anywhere",
            "I lost my {card}", "someone stole my {card}", "I can't find my {card}", "my {card} was stolen",
            "I lost my card {when}", "my card was stolen {when}", "I lost my {card} {when}",
            "my {card} got stolen {when}", "I lost my card {where}", "my card was stolen {where} {when}",
            "I lost my {card} {where} {when}",
        ],
        "block_card": [
            "block my card", "please freeze my card", "I want to block my card", "can you lock my card",
            "I need to put a temporary block on my card", "please block my {card}", "freeze my {card} please",
            "can you lock my {card}", "I want to temporarily block my {card}", "block my card, {reason}",
            "please block my {card}, {reason}",
        ],
        "balance": [
            "what's my balance", "how much money do I have", "can I check my balance",
            "I'd like to know my balance please", "balance please", "what's the balance on my {account}",
            "how much is in my {account}", "check my {account} balance", "how much money is on my {account}",
        ],
        "transfer_status": [
            "where is my transfer", "my transfer hasn't arrived yet", "what's the status of my transfer",
            "I want to check on a transfer", "check transfer {reference}", "where is my transfer {reference}",
            "has my transfer {reference} gone through?", "I sent {amount} and it hasn't arrived",
            "I sent money {date} and it still hasn't arrived", "I sent {amount} {date}, where is it",
            "payment {reference} sent {date} for {amount} is missing",
        ],
        "dispute": [
            "I want to dispute a payment", "there's a charge I don't recognise", "I'd like to dispute a transaction",
            "I need to raise a chargeback", "I want to dispute a payment of {amount}",
            "there's a {amount} charge I don't recognise", "I was charged twice by {merchant}",
            "{merchant} charged me {amount} for something I never bought",
            "I want to dispute a charge of {amount} {date}", "{merchant} took {amount} twice {date}",
        ],
        "travel": [
            "I want to book a ticket", "book me a flight please", "I need a plane ticket",
            "can you book a ticket for me", "I want to fly {to}", "book a ticket {to}", "I need a flight {to}",
            "I want to fly {to} {date}", "book me a ticket {to} {date}", "I want to fly {from} {to}",
            "get me a ticket {from} {to} {date}", "I need a ticket {date}", "I want to travel {from} {to}",
        ],
    },
    "ru": {
        "lost_card": [
            "я потерял карту", "я потеряла карту", "у меня украли карту", "хочу сообщить о потере карты",
            "карта пропала, что делать", "нигде не могу найти карту", "я потерял {card}", "у меня украли {card}",
            "нигде не могу найти {card}", "я потерял карту {when}", "карту украли {when}", "потерял {card} {when}",
            "у меня {when} украли {card}", "потерял карту {where}", "я потеряла {card} {where} {when}",
        ],
        "block_card": [
            "заблокируйте карту", "хочу заблокировать карту", "заморозьте мою карту, пожалуйста",
            "надо срочно заблокировать карту", "заблокируйте {card}", "хочу временно заморозить {card}",
            "прошу заблокировать {card}", "заблокируйте карту, {reason}", "заблокируйте {card}, {reason}",
        ],
        "balance": [
            "какой у меня баланс", "сколько денег на счету", "хочу узнать баланс", "проверить баланс, пожалуйста",
            "сколько денег {account}", "какой баланс {account}", "покажите остаток {account}",
        ],
        "transfer_status": [
            "где мой перевод", "перевод так и не пришёл", "какой статус перевода", "хочу проверить перевод",
            "проверьте перевод {reference}", "статус перевода {reference}", "отправил {amount}, а они не дошли",
            "отправил деньги {date}, а они до сих пор не дошли", "отправила {amount} {date}, где деньги?",
            "платёж {reference} на {amount}, отправленный {date}, пропал",
        ],
        "dispute": [
            "хочу оспорить операцию", "хочу оспорить списание", "на карте списание, которого я не делал",
            "хочу оспорить платёж", "хочу оспорить списание на {amount}", "{merchant} списал деньги дважды",
            "{merchant} списал {amount} за то, что я не покупал", "с карты {date} списали {amount}, хочу оспорить",
            "{merchant} {date} списал {amount}, хочу оспорить",
        ],
    },
}  # fmt: skip

ACTS = {
    "en": {
        "affirm": ["yes", "yes please", "yeah that's right", "correct", "yep, go ahead", "yes, do it", "sure"],
        "deny": ["no", "no, that's wrong", "nope, that's not right"],
        "correct": ["no, {c}", "no no, {c}", "that's wrong, {c}", "not quite, {c}"],
        "change": ["actually, {c}", "sorry, I meant {c}", "wait, {c}", "oh, actually {c}"],
        "restart": ["start over", "let's start again"],
        "cancel": ["cancel", "cancel that, that's not what I want"],
        "fillers": ["um", "well", "so", "hmm", "ok so"],
        "tails": ["please", "thanks"],
    },
    "ru": {
        "affirm": ["да", "да, всё верно", "верно", "подтверждаю", "да, правильно", "ага", "да, давайте"],
        "deny": ["нет", "нет, неверно", "нет, это неправильно"],
        "correct": ["нет, {c}", "нет-нет, {c}", "неправильно, {c}", "нет, ошибка: {c}"],
        "change": ["ой, вообще-то {c}", "извините, я ошибся: {c}", "поправка: {c}", "хотя нет, {c}"],
        "restart": ["начать заново", "давайте сначала"],
        "cancel": ["отмена", "отмените, я не это имел в виду"],
        "fillers": ["ну", "эм", "слушайте", "короче", "так вот"],
        "tails": ["пожалуйста", "спасибо"],
    },
}

UNRELATED = {
    "en": {
        "opening_hours": ["what are your opening hours?", "when are you open?",
                          "by the way, what time do you close today?", "what time does the branch open?"],
        "baggage": ["how much luggage can I take?", "what's the baggage allowance?", "is hand luggage included?"],
        "refund_policy": ["is my ticket refundable?", "how do refunds work?", "can I get a refund later?"],
    },
    "ru": {
        "opening_hours": ["а какие у вас часы работы?", "во сколько вы закрываетесь?", "до скольки работает отделение?",
                          "когда работает горячая линия?"],
    },
}  # fmt: skip

ACTS["en"]["also"] = ["also, {c}", "oh and {c}", "one more thing: {c}"]
ACTS["ru"]["also"] = ["и ещё: {c}", "забыл сказать: {c}", "кстати, {c}"]

_PROTECTED_TYPES = frozenset({"regex", "text", "money"})
"""Values the noise leaves alone: references and shop names are copied, amounts are digits."""


def _speech(lang: str, frame: str, slot: Slot) -> Speech:
    table = SPEECH[lang]
    return table.get(f"{frame}.{slot.name}") or table.get(slot.type) or table["text"]


# --------------------------------------------------------------------------------------------
# Goals


@dataclass(frozen=True)
class Said:
    """One slot value: the normalised value the bot should store and how the user words it."""

    value: Any
    answer: str
    mention: str


def sample_value(lang: str, frame: Frame, slot: Slot, today: date, rng: random.Random) -> Said:
    """Draw a value of ``slot`` with its surface forms, for a user whose local date is ``today``."""
    if slot.type == "enum":
        table = ENUMS[lang].get((frame.name, slot.name)) or ENUMS[lang].get(("*", slot.name))
        if table is None:
            raise ConfigError(f"the simulator has no {lang} words for the enum slot {frame.name}.{slot.name}")
        value = rng.choice(sorted(table))
        answers, mentions = table[value]
        mention = rng.choice(mentions)
        return Said(value, rng.choice(answers) if answers else mention, mention)
    if slot.type in ("city", "location"):
        canonical, name, forms = rng.choice(city_pool(lang))
        role = slot.role or typed.default_role(slot.name)
        return Said(canonical, name, forms[{"origin": "from", "destination": "to"}.get(role or "", "where")])
    if slot.type == "date":
        future = slot.prefer == "future"  # a loss or a payment happened; a trip is ahead
        phrase, iso = rng.choice((future_dates if future else past_dates)(today, lang))
        return Said(iso, phrase, phrase)
    if slot.type == "money":
        pool = [
            (text, value) for text, value in money_pool(lang) if slot.min is None or float(value["amount"]) >= slot.min
        ]
        text, value = rng.choice(pool)
        return Said(value, text, text)
    if slot.type == "regex":
        code = reference(rng)
        if not slot.pattern or not re.search(slot.pattern, code):
            raise ConfigError(f"the simulator only makes references like AB123456, not {slot.pattern!r}")
        return Said(code, code, code)
    if slot.type == "text":
        name = rng.choice(MERCHANTS[lang])
        return Said(name, name, name)
    raise ConfigError(f"the simulator has no values for slot type {slot.type!r} ({frame.name}.{slot.name})")


@dataclass
class Goal:
    """What the simulated user wants: a frame and the values it should be submitted with."""

    frame: str
    said: dict[str, Said]
    """Every slot the user will give, with its final value."""
    values: dict[str, Any]
    """What a correct submission holds: the slots' defaults, then the said values."""
    volunteer: list[str] = field(default_factory=list)
    """Slots said in the first utterance, with the intent."""
    stale: dict[str, Said] = field(default_factory=dict)
    """Slots first given another value, changed later in the dialogue (a change of mind)."""

    def as_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "values": self.values, "stale": {k: v.value for k, v in self.stale.items()}}


@dataclass
class SimConfig:
    """How the simulated users behave; rates are probabilities."""

    max_turns: int = 20
    typos: float = 0.03
    """Chance of a typo (swap, drop or doubled letter) in each word of four or more letters."""
    lowercase: float = 0.3
    no_punctuation: float = 0.5
    fillers: float = 0.15
    optional: float = 0.5
    """Chance that the goal holds each optional slot."""
    volunteer: float = 0.35
    """Chance of saying a slot with the intent, or with the answer to another slot, before it is asked."""
    change_mind: float = 0.15
    unrelated: float = 0.1


def sample_goal(lang: str, frame: Frame, today: date, rng: random.Random, config: SimConfig) -> Goal:
    said: dict[str, Said] = {}
    for slot in frame.slots:
        if slot.is_required or rng.random() < config.optional:
            said[slot.name] = sample_value(lang, frame, slot, today, rng)
    values = {s.name: s.default for s in frame.slots if s.default is not None}
    values.update({name: item.value for name, item in said.items()})
    required = [s.name for s in frame.slots if s.is_required and s.default is None]
    volunteer = [name for name in said if rng.random() < (config.volunteer if name in required else 0.6)]
    if not frame.confirmation.is_required and all(name in volunteer for name in required):
        volunteer = list(said)  # no read-back: whatever is left unsaid would never be submitted
    goal = Goal(frame.name, said, values, volunteer)
    changeable = [name for name in said if frame.slot(name).type not in ("text", "regex")]
    if frame.confirmation.is_required and changeable and rng.random() < config.change_mind:
        name = rng.choice(changeable)
        for _ in range(10):
            other = sample_value(lang, frame, frame.slot(name), today, rng)
            if other.value != said[name].value:
                goal.stale[name] = other
                break
    return goal


# --------------------------------------------------------------------------------------------
# Utterances: segments of text, protected or not from noise

Segment = tuple[str, bool]
_FIELD = re.compile(r"\{(\w+)\}")


def _render(template: str, fields: dict[str, list[Segment]]) -> list[Segment]:
    out: list[Segment] = []
    position = 0
    for match in _FIELD.finditer(template):
        if match.start() > position:
            out.append((template[position : match.start()], False))
        out.extend(fields[match.group(1)])
        position = match.end()
    if position < len(template):
        out.append((template[position:], False))
    return out


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


_WORD = re.compile(r"[^\W\d_]{4,}")


def noisy(segments: list[Segment], lang: str, rng: random.Random, config: SimConfig, *, bare: bool = False) -> str:
    """Join segments into an utterance with typos, lower case, fillers and dropped punctuation.

    Protected segments (references, shop names, amounts) are kept as they are; a ``bare`` utterance (the
    answer to a free-text question, stored whole by the bot) gets no noise at all.
    """
    if bare:
        return "".join(text for text, _ in segments).strip()
    lower = rng.random() < config.lowercase
    parts = []
    for text, protected in segments:
        if not protected:
            text = _WORD.sub(lambda m: _typo(m.group(), rng) if rng.random() < config.typos else m.group(), text)
            if lower:
                text = text.lower().replace("ё", "е")
        parts.append(text)
    text = " ".join("".join(parts).split())
    if rng.random() < config.fillers:
        filler = rng.choice(ACTS[lang]["fillers"])
        text = f"{filler}, {text}" if not lower else f"{filler} {text}"
    if rng.random() < config.no_punctuation:
        text = text.rstrip(".!?")
    elif text[-1:].isalnum():
        text += rng.choice(".!") if not text.endswith(tuple(string.digits)) or rng.random() < 0.5 else ""
    return text


# --------------------------------------------------------------------------------------------
# The simulated user: an agenda of acts, pushed by the bot's acts and popped one turn at a time


@dataclass
class Act:
    kind: str  # intent, inform, affirm, correct, change, also, unrelated, cancel, restart
    slot: str | None = None


@dataclass
class BotAct:
    """What the user gathers from a bot reply: the act, the open task, and the values read back."""

    action: str
    frame: str | None
    phase: str | None
    asked: str | None
    shown: dict[str, Any]


class User:
    """One simulated user with a goal; :meth:`first` opens the dialogue, :meth:`react` answers a bot act."""

    def __init__(self, goal: Goal, frame: Frame, lang: str, responses: Sequence[str], rng: random.Random,
                 config: SimConfig) -> None:  # fmt: skip
        self.goal, self.frame, self.lang, self.rng, self.config = goal, frame, lang, rng, config
        self.told: dict[str, Any] = {}  # slot -> value the user has said (what they think the bot has)
        self.agenda: list[Act] = []
        self.stale_pending = dict(goal.stale)  # change-of-mind slots whose first value is still to be said
        self.change_due: list[str] = []
        unrelated = [intent for intent in UNRELATED.get(lang, {}) if intent in responses]
        self.unrelated_intent = rng.choice(unrelated) if unrelated and rng.random() < config.unrelated else None
        self.unrelated_turn = rng.randrange(1, 4)
        self.restarts = self.cancels = self.turn = 0
        self.last_corrected: str | None = None
        self.last_acts: list[Act] = []
        self.corrected: Counter[str] = Counter()
        self.avoid: set[str] = set()  # slots not to volunteer again (they were misread)
        self.events: Counter[str] = Counter()

    # -- the agenda ------------------------------------------------------------------------------
    def _reset_agenda(self, volunteer: Sequence[str]) -> None:
        """A fresh task: the intent on top, informs for every other slot of the goal beneath it."""
        self.told = {}
        rest = [name for name in self.goal.said if name not in volunteer]
        self.agenda = [Act("inform", name) for name in reversed(rest)] + [Act("intent")]
        self.intent_slots = list(volunteer)

    def _pending_informs(self) -> list[str]:
        return [act.slot for act in reversed(self.agenda) if act.kind == "inform" and act.slot]

    def _take(self, kind: str, slot: str | None = None) -> None:
        self.agenda = [a for a in self.agenda if not (a.kind == kind and a.slot == slot)]

    def _push(self, act: Act) -> None:
        self._take(act.kind, act.slot)
        self.agenda.append(act)

    def _repeat_last(self) -> None:
        """The last utterance went to the wrong task: what it told is to be said again."""
        for act in self.last_acts:
            if act.slot is not None and act.slot in self.told:
                del self.told[act.slot]
                self._push(Act("change" if act.kind == "change" else "inform", act.slot))

    def _said(self, name: str) -> Said:
        return self.stale_pending.get(name) or self.goal.said[name]

    def _tell(self, name: str) -> None:
        said = self._said(name)
        self.told[name] = said.value
        self.last_acts.append(
            Act("change" if name in self.goal.stale and name not in self.stale_pending else "inform", name)
        )
        self._take("inform", name)
        if name in self.stale_pending:
            del self.stale_pending[name]
            self.change_due.append(name)

    # -- turns -------------------------------------------------------------------------------------
    def first(self) -> str:
        self._reset_agenda(self.goal.volunteer)
        return self._speak()

    def react(self, bot: BotAct) -> str | None:
        """The next utterance, or None when the user gives up."""
        action = bot.action
        if action.startswith("answer:"):
            self.events[
                "unrelated_answered" if action == f"answer:{self.unrelated_intent}" else "unrelated_missed"
            ] += 1
        if bot.frame is None:
            if self.cancels + self.restarts > 3:
                self.events["gave_up"] += 1
                return None
            self.events["restated"] += 1 if self.turn else 0
            volunteer = [n for n in self.goal.said if self.rng.random() < self.config.volunteer and n not in self.avoid]
            self._reset_agenda(volunteer)
        elif bot.frame != self.goal.frame:
            self.events["wrong_frame"] += 1
            self.cancels += 1
            if self.cancels > 3:
                return None
            self._repeat_last()
            self._push(Act("cancel"))
        elif bot.phase == "confirming":
            self._confirm(bot)
        elif action == "ask:change":
            name = self.last_corrected or next(iter(self._pending_informs()), None)
            if name is not None:
                self._push(Act("inform", name))
        elif bot.asked in self.goal.said:
            self._push(Act("inform", bot.asked))
        elif bot.asked:  # a question the goal has no answer to: not the task the user is after
            self.events["wrong_frame"] += 1
            self.cancels += 1
            self._repeat_last()
            self._push(Act("cancel"))
        if self.agenda and self.agenda[-1].kind == "restart" and self.restarts > 1:
            return None
        if self.change_due and bot.frame == self.goal.frame:
            self._push(Act("change", self.change_due[0]))  # on top until it is said
        if self.unrelated_intent and self.turn >= self.unrelated_turn and not self.events["unrelated_asked"]:
            self.events["unrelated_asked"] += 1
            self._push(Act("unrelated"))
        return self._speak()

    def _confirm(self, bot: BotAct) -> None:
        said = self.goal.said
        wrong = [n for n, v in bot.shown.items() if n in said and n not in self.change_due and v != self._said(n).value]
        spurious = [
            name
            for name, value in bot.shown.items()
            if name not in self.goal.said and value is not None and value != self.goal.values.get(name)
        ]  # a default the user never said, read back as wanted, is fine
        pending = [name for name in self._pending_informs() if name not in wrong]
        for name in [a.slot for a in self.agenda if a.kind == "change"]:
            if name in wrong or (name in bot.shown and name not in self.change_due):
                self._take("change", name)  # the read-back shows the slot: correct it or leave it
        if wrong and self.corrected[wrong[0]] >= 2:
            self.events["restarts"] += 1  # the correction does not take: start again (a second time: give up)
            self.restarts += 1
            self.corrected.clear()
            self.avoid.add(wrong[0])
            self._push(Act("restart"))
        elif wrong:
            self.events["corrections"] += 1
            self.corrected[wrong[0]] += 1
            self.last_corrected = wrong[0]
            self._push(Act("correct", wrong[0]))
        elif redo := next((a for a in reversed(self.agenda) if a.kind == "change"), None):
            self._push(redo)  # a change that went astray (to another task) is said again first
        elif spurious:
            self.events["spurious"] += 1
            self.restarts += 1
            self._push(Act("restart"))
        elif pending:
            self._push(Act("also", pending[0]))
        else:
            self._push(Act("affirm"))

    def _speak(self) -> str:
        self.turn += 1
        self.last_acts = []
        if not self.agenda:
            self.agenda.append(Act("affirm"))
        act = self.agenda.pop()
        lang, rng, acts = self.lang, self.rng, ACTS[self.lang]
        if act.kind == "intent":
            return noisy(self._intent(), lang, rng, self.config)
        if act.kind == "unrelated":
            assert self.unrelated_intent is not None
            return noisy([(rng.choice(UNRELATED[lang][self.unrelated_intent]), False)], lang, rng, self.config)
        if act.kind in ("affirm", "restart", "cancel"):
            if act.kind == "restart":
                self.agenda = []
            return noisy([(rng.choice(acts[act.kind]), False)], lang, rng, self.config)
        assert act.slot is not None
        if act.kind in ("correct", "change", "also"):
            clause = self._clause(act.slot)
            self._tell(act.slot)
            segments = _render(rng.choice(acts[act.kind]), {"c": clause})
            if act.kind == "change" and act.slot in self.change_due:
                self.change_due.remove(act.slot)
                self.events["changed_mind"] += 1
            return noisy(segments, lang, rng, self.config)
        # inform: the answer to the slot asked, maybe with other slots volunteered before they are asked
        name = act.slot
        slot = self.frame.slot(name)
        segments = self._answer(name)
        self._tell(name)
        bare = slot.type == "text"
        extra = [n for n in self._pending_informs() if self.frame.slot(n).type != "text"]
        optional = [n for n in extra if not self.frame.slot(n).is_required]
        required_left = [s.name for s in self.frame.slots if s.is_required and s.name not in self.told]
        joins = [", ", ", and "] if lang == "en" else [", ", " и "]
        for other in extra:
            if (
                other in optional and (not required_left or rng.random() < 0.5)
            ) or rng.random() < self.config.volunteer:
                if bare:
                    break  # a free-text answer is stored whole, so it is said alone
                segments = [*segments, (rng.choice(joins), False), *self._clause(other)]
                self._tell(other)
                self.events["volunteered"] += 1
        return noisy(segments, lang, rng, self.config, bare=bare and len(segments) == 1)

    def _value_segments(self, name: str, template: str) -> list[Segment]:
        said = self._said(name)
        protected = self.frame.slot(name).type in _PROTECTED_TYPES
        return _render(template, {"v": [(said.answer, protected)], "m": [(said.mention, protected)]})

    def _answer(self, name: str) -> list[Segment]:
        speech = _speech(self.lang, self.frame.name, self.frame.slot(name))
        return self._value_segments(name, self.rng.choice(speech.answers))

    def _clause(self, name: str) -> list[Segment]:
        speech = _speech(self.lang, self.frame.name, self.frame.slot(name))
        return self._value_segments(name, self.rng.choice(speech.clauses))

    def _intent(self) -> list[Segment]:
        templates = INTENTS[self.lang].get(self.frame.name)
        if not templates:
            raise ConfigError(f"the simulator has no {self.lang} sentences for the frame {self.frame.name!r}")
        wanted = set(self.intent_slots)
        fitting = [t for t in templates if set(_FIELD.findall(t)) <= wanted]
        weights = [1 + 3 * len(set(_FIELD.findall(t))) for t in fitting]
        template = self.rng.choices(fitting, weights)[0]
        inline = set(_FIELD.findall(template))
        fields = {}
        for name in inline:
            speech = _speech(self.lang, self.frame.name, self.frame.slot(name))
            fields[name] = self._value_segments(name, speech.inline)
            self._tell(name)
        segments = _render(template.rstrip("?") if inline != wanted else template, fields)
        for name in self.intent_slots:
            if name not in inline:
                segments = [*segments, (", ", False), *self._clause(name)]
                self._tell(name)
        self.events["volunteered"] += len(self.intent_slots)
        return segments


# --------------------------------------------------------------------------------------------
# Dialogues and the report


@dataclass
class DialogueResult:
    index: int
    frame: str
    goal: dict[str, Any]
    success: bool
    turns: int
    wrong_submission: bool = False
    incomplete_submission: bool = False
    reason: str | None = None
    """Why it failed: ``wrong_frame``, ``wrong_value:<slot>``, ``missing_value:<slot>``,
    ``max_turns:<last action>``, ``gave_up``, ``handoff`` or ``submit_failed``."""
    detail: str | None = None
    submitted: dict[str, Any] | None = None
    events: dict[str, int] = field(default_factory=dict)
    transcript: list[tuple[str, str, str]] = field(default_factory=list)
    """(speaker, text, bot action) per message."""

    def format(self) -> str:
        lines = [f"#{self.index} {self.frame} goal={self.goal['values']} -> {self.reason}: {self.detail or ''}"]
        for speaker, text, action in self.transcript:
            lines.append(f"  {speaker:>4}: {text}" + (f"   [{action}]" if action else ""))
        return "\n".join(lines)


def _bot_act(bot: Any, dialogue: Any, action: str) -> BotAct:
    from rejoinder.bots.frames import tracker

    current = dialogue.state.get("current")
    if current is None:
        return BotAct(action, None, None, None, {})
    frame = bot.domain.frame(current["frame"])
    shown: dict[str, Any] = {}
    if current["phase"] == "confirming":
        values = tracker.values_with_defaults(frame, current)
        for name in dict.fromkeys(_FIELD.findall(frame.confirmation.prompt or "")):
            shown[name] = values.get(name)
    return BotAct(action, current["frame"], current["phase"], current.get("asked"), shown)


def run_dialogue(
    bot: Any, goal: Goal, *, now: datetime, rng: random.Random, config: SimConfig, index: int = 0,
    conversation_id: str | None = None,
) -> DialogueResult:  # fmt: skip
    """Play one dialogue between ``bot`` and a user with ``goal``; every message is dated ``now``."""
    from rejoinder.bots.frames import tracker
    from rejoinder.dialogue import Dialogue, Message

    frame = bot.domain.frame(goal.frame)
    dialogue = Dialogue(bot=bot.name, conversation_id=conversation_id or f"sim-{index}")
    result = DialogueResult(index, goal.frame, goal.as_dict(), success=False, turns=0)
    greeting = bot.greet(dialogue)
    if greeting is not None:
        dialogue.messages.append(Message("assistant", greeting.text, meta=greeting.meta, created_at=now))
        result.transcript.append(("bot", greeting.text, str(greeting.meta.get("action", ""))))
    user = User(goal, frame, bot.domain.language, list(bot.domain.responses), rng, config)
    text: str | None = user.first()
    action = ""
    while text is not None:
        dialogue.messages.append(Message("user", text, created_at=now))
        result.transcript.append(("user", text, ""))
        result.turns += 1
        reply = bot.respond(dialogue)
        action = str(reply.meta.get("action", ""))
        dialogue.messages.append(Message("assistant", reply.text, meta=reply.meta, created_at=now))
        result.transcript.append(("bot", reply.text, action))
        if action == "submitted":
            last = dialogue.state["last"]
            submitted = tracker.values_with_defaults(bot.domain.frame(last["frame"]), last)
            result.submitted = {"frame": last["frame"], "values": submitted}
            _judge(result, goal, last["frame"], submitted)
            break
        if action in ("submit_failed", "handoff"):
            result.reason = action
            break
        if result.turns >= config.max_turns:
            result.reason = f"max_turns:{action}"
            break
        text = user.react(_bot_act(bot, dialogue, action))
        if text is None:
            result.reason = "gave_up"
            result.detail = f"after {action}"
    result.events = dict(user.events)
    return result


def _judge(result: DialogueResult, goal: Goal, frame: str, submitted: dict[str, Any]) -> None:
    if frame != goal.frame:
        result.wrong_submission = True
        result.reason, result.detail = "wrong_frame", f"submitted {frame} with {submitted}"
        return
    wrong = sorted(name for name, value in submitted.items() if goal.values.get(name) != value)
    missing = sorted(name for name in goal.values if name not in submitted)
    if wrong:
        result.wrong_submission = True
        result.reason = f"wrong_value:{wrong[0]}"
        result.detail = "; ".join(f"{n}={submitted.get(n)!r} (goal {goal.values.get(n)!r})" for n in wrong)
    elif missing:
        result.incomplete_submission = True
        result.reason = f"missing_value:{missing[0]}"
        result.detail = "; ".join(f"{n} not submitted (goal {goal.values[n]!r})" for n in missing)
    else:
        result.success = True


@dataclass
class Report:
    bot: str
    language: str
    seed: int
    results: list[DialogueResult]
    keep_failed: int = 5

    @property
    def dialogues(self) -> int:
        return len(self.results)

    @property
    def successes(self) -> int:
        return sum(r.success for r in self.results)

    @property
    def success_rate(self) -> float:
        return self.successes / self.dialogues if self.results else 0.0

    @property
    def mean_turns(self) -> float:
        return sum(r.turns for r in self.results) / self.dialogues if self.results else 0.0

    @property
    def wrong_submissions(self) -> int:
        return sum(r.wrong_submission for r in self.results)

    @property
    def incomplete_submissions(self) -> int:
        return sum(r.incomplete_submission for r in self.results)

    @property
    def failure_reasons(self) -> dict[str, int]:
        return dict(Counter(r.reason for r in self.results if not r.success and r.reason).most_common())

    @property
    def per_frame(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for frame in dict.fromkeys(r.frame for r in self.results):
            rows = [r for r in self.results if r.frame == frame]
            out[frame] = {
                "dialogues": len(rows),
                "success_rate": sum(r.success for r in rows) / len(rows),
                "mean_turns": sum(r.turns for r in rows) / len(rows),
                "wrong_submissions": sum(r.wrong_submission for r in rows),
                "incomplete_submissions": sum(r.incomplete_submission for r in rows),
            }
        return out

    @property
    def events(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for r in self.results:
            total.update(r.events)
        return dict(sorted(total.items()))

    @property
    def failed(self) -> list[DialogueResult]:
        return [r for r in self.results if not r.success][: self.keep_failed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "bot": self.bot,
            "language": self.language,
            "seed": self.seed,
            "dialogues": self.dialogues,
            "success_rate": self.success_rate,
            "mean_turns": self.mean_turns,
            "wrong_submissions": self.wrong_submissions,
            "incomplete_submissions": self.incomplete_submissions,
            "per_frame": self.per_frame,
            "failure_reasons": self.failure_reasons,
            "events": self.events,
            "failed": [asdict(r) for r in self.failed],
            "dialogue_results": [{k: v for k, v in asdict(r).items() if k != "transcript"} for r in self.results],
        }


START = datetime(2026, 1, 5, tzinfo=UTC)


def simulate(
    bot: Any,
    *,
    frames: Sequence[str] | None = None,
    language: str | None = None,
    n: int = 100,
    seed: int = 0,
    config: SimConfig | None = None,
    keep_failed: int = 5,
    progress: Callable[[int, DialogueResult], None] | None = None,
) -> Report:
    """Simulate ``n`` dialogues with ``bot`` (a frame bot, or a function that builds one).

    Goals cycle through ``frames`` (default: all the domain's frames) in a seeded order. Each dialogue
    gets its own clock: a working-hours moment in 2026, the same for all its messages.
    """
    from zoneinfo import ZoneInfo

    if callable(bot) and not hasattr(bot, "respond"):
        bot = bot()
    domain = bot.domain
    if language is not None and language != domain.language:
        raise ConfigError(f"the bot speaks {domain.language!r}, not {language!r}")
    names = list(frames or [f.name for f in domain.frames])
    for name in names:
        try:
            domain.frame(name)
        except KeyError:
            raise ConfigError(
                f"the domain has no frame {name!r}; it has {', '.join(f.name for f in domain.frames)}"
            ) from None
    config = config or SimConfig()
    zone = ZoneInfo(domain.timezone)
    order_rng = random.Random(seed)
    order: list[str] = []
    results = []
    for index in range(n):
        if not order:
            order = names[:]
            order_rng.shuffle(order)
        frame = domain.frame(order.pop())
        rng = random.Random(seed * 1_000_003 + index)
        now = START + timedelta(days=rng.randrange(340), hours=rng.randrange(9, 17), minutes=rng.randrange(60))
        goal = sample_goal(domain.language, frame, now.astimezone(zone).date(), rng, config)
        result = run_dialogue(bot, goal, now=now, rng=rng, config=config, index=index,
                              conversation_id=f"sim-{seed}-{index}")  # fmt: skip
        results.append(result)
        if progress is not None:
            progress(index, result)
    return Report(getattr(bot, "name", "bot"), domain.language, seed, results, keep_failed)
