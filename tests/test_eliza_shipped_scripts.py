"""Rejoinder's own DOCTOR scripts (English and Russian): every rule reachable, sensible replies."""

from __future__ import annotations

import pytest

from rejoinder.bots.eliza import create, detect_language
from rejoinder.dialogue import Dialogue, Message

# Inputs that together reach every decomposition, every reassembly, every link and all four
# MEMORY transformations of the shipped scripts (each input is repeated so that cycles come round).
ENGLISH_COVERAGE = [
    "I want to kill myself",
    "I feel suicidal",
    "Suicide",
    "Kill the lights",
    "I want to die",
    "Die",
    "I want to be happy",
    "I want a car",
    "I am not happy",
    "I am sad",
    "I am happy",
    "I am angry",
    "I am worried",
    "I am lonely",
    "I am tired",
    "Like I was saying",
    "I think I should go",
    "I feel you hate me",
    "I am a student",
    "I can't swim",
    "I don't know",
    "I feel bad",
    "I hate you",
    "I see",
    "I'm sad",
    "Im sad",
    "You're mean",
    "Youre mean",
    "Am I crazy",
    "Am",
    "You remind me of Bob",
    "You are smart",
    "You hate me",
    "You talk a lot",
    "Your eyes",
    "Are you there",
    "They are nice",
    "Was I wrong",
    "I was wrong",
    "Were you happy",
    "It was raining",
    "My mother",
    "My mother hates me",
    "My girlfriend left",
    "My teacher is strict",
    "My car",
    "Can you help",
    "Can I go",
    "Can",
    "Computer",
    "Computers",
    "Machine",
    "Machines",
    "Robot",
    "Robots",
    "AI",
    "Chatbot",
    "Bot",
    "My name is Joe",
    "Alike",
    "Same",
    "Similar",
    "He is like a dog",
    "I like it",
    "I remember my dog",
    "Do you remember the war",
    "Remember the war",
    "I recall my dog",
    "I forget things",
    "Did you forget me",
    "Forget it",
    "I dreamt about flying",
    "I dreamed about you",
    "A dream",
    "Dreams",
    "A nightmare",
    "Nightmares",
    "If only things were better",
    "I love you",
    "I love dogs",
    "Love",
    "I hate you so much",
    "I hate mondays",
    "Hate",
    "Job",
    "Work",
    "Boss",
    "School",
    "Friend",
    "Friends",
    "Money",
    "Sleep",
    "Sorry",
    "Apologise",
    "Apologize",
    "Thanks",
    "Thank you",
    "Hello",
    "Hi",
    "Hey",
    "Goodbye",
    "Bye",
    "Deutsch",
    "Francais",
    "Espanol",
    "Italiano",
    "Yes",
    "Yeah",
    "Certainly",
    "Definitely",
    "No",
    "Nope",
    "Perhaps",
    "Maybe",
    "Probably",
    "Because",
    "Cause",
    "Everyone",
    "Everybody",
    "Nobody",
    "Noone",
    "Always",
    "Never",
    "What",
    "How",
    "When",
    "Where",
    "Who",
    "Why don't you help",
    "Why can't I swim",
    "Why",
    "Whatever",
    "My house",
    "My home",
    "My dog",
    "My money",
    "I have been feeling sad lately",
]

RUSSIAN_COVERAGE = [
    "Я думаю о самоубийстве",
    "Самоубийство",
    "Суицид",
    "Я хочу покончить с собой",
    "Покончить с прошлым",
    "Я хочу умереть",
    "Умереть",
    "Я не хочу жить",
    "Жить",
    "Я хочу новую машину",
    "Я не могу забыть её",
    "Я боюсь темноты",
    "Я грущу",
    "Я очень устала",
    "Я несчастна",
    "Я счастлива",
    "Я одинок",
    "Я злюсь",
    "Я думаю, что он меня не любит",
    "Я думаю о ней",
    "Я не знаю",
    "Я верю тебе",
    "Я иду домой",
    "Мне нужна помощь",
    "Мне грустно",
    "Мне хорошо",
    "Мне снились горы",
    "Мне холодно",
    "Меня зовут Иван",
    "Меня обижают",
    "Вы напоминаете мне кого-то",
    "Вы меня не понимаете",
    "Вы умная",
    "Ты глупая",
    "Моя мама",
    "Моя мама меня не любит",
    "Мой парень ушёл",
    "Мой кот заболел",
    "Мою машину украли",
    "Моё детство",
    "Мое сердце",
    "Мои друзья ушли",
    "Моего кота",
    "Моей жизни",
    "Моему другу",
    "Моим делом",
    "Моих проблем",
    "Моём детстве",
    "Моем доме",
    "Моими руками",
    "Ваш голос",
    "Ваша машина",
    "Ваше мнение",
    "Ваши ответы",
    "Вашего ответа",
    "Вашей помощи",
    "Вашему совету",
    "Вашим словам",
    "Ваших слов",
    "Вашу помощь",
    "Твой голос",
    "Твоя машина",
    "Твоё мнение",
    "Твое мнение",
    "Твои ответы",
    "Твоего ответа",
    "Твоей помощи",
    "Твою помощь",
    "Мама",
    "Мамы",
    "Маме",
    "Маму",
    "Мамой",
    "Мать",
    "Матери",
    "Матерью",
    "Папа",
    "Папы",
    "Папе",
    "Папу",
    "Папой",
    "Отец",
    "Отца",
    "Отцу",
    "Отцом",
    "Родители",
    "Родителей",
    "Родителям",
    "Брат",
    "Брата",
    "Брату",
    "Братом",
    "Сестра",
    "Сестры",
    "Сестре",
    "Сестру",
    "Сестрой",
    "Сын",
    "Сына",
    "Сыну",
    "Дочь",
    "Дочери",
    "Дети",
    "Детей",
    "Детям",
    "Муж",
    "Мужа",
    "Мужу",
    "Мужем",
    "Жена",
    "Жены",
    "Жене",
    "Жену",
    "Женой",
    "Бабушка",
    "Дедушка",
    "Семья",
    "Семьи",
    "Семье",
    "Семью",
    "Компьютер",
    "Компьютеры",
    "Компьютера",
    "Компьютером",
    "Робот",
    "Роботы",
    "Робота",
    "Программа",
    "Программой",
    "ИИ",
    "Нейросеть",
    "Бот",
    "Чатбот",
    "Чат-бот",
    "Имя",
    "Имени",
    "Зовут",
    "Похож",
    "Похожа",
    "Похожи",
    "Похоже",
    "Одинаковые",
    "Напоминает",
    "Я помню своё детство",
    "Помню",
    "Вы помните меня",
    "Помните",
    "Мне приснилось, что я лечу",
    "Сон",
    "Сны",
    "Сна",
    "Сне",
    "Снах",
    "Снилось",
    "Приснилось",
    "Снится",
    "Снятся",
    "Кошмар",
    "Кошмары",
    "Если бы он вернулся",
    "Я люблю тебя",
    "Я люблю кошек",
    "Люблю",
    "Я ненавижу тебя",
    "Я ненавижу понедельники",
    "Ненавижу",
    "Работа",
    "Работе",
    "Работу",
    "Работы",
    "Работой",
    "Начальник",
    "Начальника",
    "Начальнику",
    "Начальница",
    "Начальство",
    "Школа",
    "Школе",
    "Школу",
    "Учёба",
    "Учеба",
    "Университет",
    "Университете",
    "Экзамен",
    "Экзамены",
    "Друг",
    "Друга",
    "Друзья",
    "Друзей",
    "Друзьями",
    "Подруга",
    "Подруги",
    "Подругу",
    "Деньги",
    "Денег",
    "Деньгами",
    "Спать",
    "Сплю",
    "Уснуть",
    "Заснуть",
    "Бессонница",
    "Бессонницы",
    "Извините",
    "Простите",
    "Извини",
    "Прости",
    "Извиняюсь",
    "Спасибо",
    "Благодарю",
    "Привет",
    "Здравствуйте",
    "Здравствуй",
    "Добрый",
    "Пока",
    "Пока я спал",
    "До свидания",
    "Прощайте",
    "Hello",
    "English",
    "Да",
    "Конечно",
    "Разумеется",
    "Ага",
    "Нет",
    "Наверное",
    "Наверно",
    "Возможно",
    "Пожалуй",
    "Потому что",
    "Никто",
    "Никому",
    "Никого",
    "Каждый",
    "Всегда",
    "Никогда",
    "Почему я не могу уснуть",
    "Почему я не умею плавать",
    "Почему вы молчите",
    "Почему я такой",
    "Почему",
    "Зачем",
    "Как",
    "Когда",
    "Где",
    "Кто",
    "Ладно",
    "Мой дом",
    "Мой кот",
    "Мой друг",
    "Мои деньги",
]

ENGLISH_SESSION = [
    ("Hello.", "HELLO. WHAT WOULD YOU LIKE TO TALK ABOUT"),
    ("I have been feeling sad lately.", "HOW LONG HAVE YOU FELT SAD"),
    ("My boyfriend says I worry too much.", "HOW ARE THINGS BETWEEN YOU AND YOUR BOYFRIEND"),
    ("He is always busy with his work.", "CAN YOU GIVE ME A PARTICULAR EXAMPLE"),
    ("I am not sure what to do.", "WHAT WOULD IT TAKE FOR YOU TO BE SURE WHAT TO DO"),
    ("Maybe I should talk to him.", "YOU SOUND UNSURE"),
    ("Whatever.", "EARLIER YOU SAID YOUR BOYFRIEND SAYS YOU WORRY TOO MUCH"),
    ("You don't say much, do you?", "WE WERE TALKING ABOUT YOU, NOT ME"),
    ("I want to be happy again.", "WHY DO YOU WANT TO BE HAPPY AGAIN"),
    ("Thanks for listening.", "YOU ARE WELCOME. WHAT ELSE IS ON YOUR MIND"),
]

RUSSIAN_SESSION = [
    ("Здравствуйте.", "ЗДРАВСТВУЙТЕ. О ЧЁМ ВЫ ХОТЕЛИ БЫ ПОГОВОРИТЬ?"),
    ("Мне в последнее время очень грустно.", "МНЕ ЖАЛЬ, ЧТО ВАМ В ПОСЛЕДНЕЕ ВРЕМЯ ОЧЕНЬ ГРУСТНО"),
    ("Мой муж говорит, что я слишком много переживаю.", "РАССКАЖИТЕ ПОДРОБНЕЕ О ВАШЕЙ СЕМЬЕ"),
    ("Он всегда занят на работе.", "МОЖЕТЕ ПРИВЕСТИ КОНКРЕТНЫЙ ПРИМЕР?"),
    ("Я не знаю, что делать.", "ПОЧЕМУ ВЫ НЕ ЗНАЕТЕ ЧТО ДЕЛАТЬ?"),
    ("Наверное, мне стоит с ним поговорить.", "ВЫ, КАЖЕТСЯ, НЕ УВЕРЕНЫ"),
    ("Ладно.", "СВЯЗАНО ЛИ ЭТО С ТЕМ, ЧТО ВАШ МУЖ ГОВОРИТ ЧТО ВЫ СЛИШКОМ МНОГО ПЕРЕЖИВАЕТЕ?"),
    ("Вы меня вообще слушаете?", "ПОЧЕМУ ВЫ ДУМАЕТЕ, ЧТО Я ВАС ВООБЩЕ СЛУШАЮ?"),
    ("Я была рада, когда мы познакомились.", "Я РАДА ЭТО СЛЫШАТЬ. ЧТО ВАС РАДУЕТ?"),
    ("Спасибо, что выслушали.", "ПОЖАЛУЙСТА. ЧТО ЕЩЁ У ВАС НА ДУШЕ?"),
]


def converse(bot, lines: list[str]) -> list[str]:
    dialogue = Dialogue(bot=bot.name)
    bot.greet(dialogue)
    replies = []
    for line in lines:
        dialogue.messages.append(Message("user", line))
        replies.append(bot.respond(dialogue).text)
    return replies


def reply_to(bot, line: str) -> str:
    return converse(bot, [line])[0]


def test_shipped_scripts_parse_and_detect_their_language():
    assert detect_language(create("doctor").script) == "en"
    assert detect_language(create("doctor-ru").script) == "ru"


@pytest.mark.parametrize(("script", "inputs"), [("doctor", ENGLISH_COVERAGE), ("doctor-ru", RUSSIAN_COVERAGE)])
def test_every_rule_and_reassembly_of_the_shipped_scripts_is_reached(script, inputs):
    bot = create(script)
    engine, parsed = bot.engine, bot.script
    state = engine.initial_state()
    used: set[tuple[str, int]] = set()
    fired: set[str] = set()
    for text in inputs:
        for _ in range(9):
            turn = engine.respond(text, state)
            used.update(turn.choices)
            fired.update(turn.rule_ids)
    expected = {
        (rule_id, i)
        for rule_id in parsed.all_transformation_ids()
        for i in range(len(parsed.transformation(rule_id).reassemblies))
    }
    assert expected - used == set()
    assert {f"{k}/=" for k, r in parsed.rules.items() if r.link is not None} - fired == set()
    assert {("MEMORY", i) for i in range(4)} <= used


def test_english_session_is_sensible_and_recalls_a_memory():
    assert converse(create("doctor"), [u for u, _ in ENGLISH_SESSION]) == [e for _, e in ENGLISH_SESSION]


def test_russian_session_is_sensible_and_recalls_a_memory():
    assert converse(create("doctor-ru"), [u for u, _ in RUSSIAN_SESSION]) == [e for _, e in RUSSIAN_SESSION]


def test_russian_verbs_and_pronouns_are_reflected():
    bot = create("doctor-ru")
    assert reply_to(bot, "Я думаю, что он меня не любит") == "ВЫ УВЕРЕНЫ, ЧТО ОН ВАС НЕ ЛЮБИТ?"
    assert reply_to(bot, "Вы меня не понимаете") == "ПОЧЕМУ ВЫ ДУМАЕТЕ, ЧТО Я ВАС НЕ ПОНИМАЮ?"
    assert reply_to(bot, "Я боюсь темноты") == "ДАВНО ЛИ ВЫ БОИТЕСЬ ТЕМНОТЫ?"


def test_russian_morphology_reflects_verbs_the_script_does_not_list():
    bot = create("doctor-ru")
    assert bot.engine.respond("Я мечтаю о море", {}).text == ["ВЫ", "МЕЧТАЕТЕ", "О", "МОРЕ"]
    assert bot.engine.respond("Я была рада", {}).text == ["ВЫ", "БЫЛИ", "РАДЫ"]
    assert bot.engine.respond("Вы были правы", {}).text == ["Я", "БЫЛ", "ПРАВ"]


def test_russian_prepositional_pronouns_are_mended():
    bot = create("doctor-ru")
    assert bot.engine.respond("Он говорит обо мне", {}).text == ["ОН", "ГОВОРИТ", "О", "ВАС"]
    assert bot.engine.respond("Я думаю о вас", {}).text == ["ВЫ", "ДУМАЕТЕ", "ОБО", "МНЕ"]


def test_russian_script_reads_well_without_the_morphology_extra():
    bot = create("doctor-ru", morphology=False)
    assert reply_to(bot, "Я боюсь темноты") == "ДАВНО ЛИ ВЫ БОИТЕСЬ ТЕМНОТЫ?"
    assert bot.engine.respond("Я мечтаю о море", {}).text == ["ВЫ", "МЕЧТАЮ", "О", "МОРЕ"]


def test_russian_comma_before_a_subordinate_clause_does_not_cut_the_sentence():
    bot = create("doctor-ru")
    assert bot.engine.respond("Я знаю, что она права", {}).text == ["ВЫ", "ЗНАЕТЕ", "ЧТО", "ОНА", "ПРАВА"]


def test_talk_of_suicide_gets_a_pointer_to_help_in_both_languages():
    assert "CRISIS LINE" in reply_to(create("doctor"), "I want to kill myself")
    assert "ТЕЛЕФОН ДОВЕРИЯ" in reply_to(create("doctor-ru"), "Я не хочу жить")


def test_friendly_mode_writes_sentences_with_question_marks():
    english = create("doctor", friendly=True)
    assert converse(english, ["I want to be happy again.", "Sorry"]) == [
        "Why do you want to be happy again?",
        "There is no need to apologise here.",
    ]
    russian = create("doctor-ru", friendly=True)
    assert converse(russian, ["Мне очень грустно", "Я боюсь темноты"]) == [
        "Мне жаль, что вам очень грустно.",
        "Давно ли вы боитесь темноты?",
    ]
