"""The web pages: the chat (``/``), the arena (``/arena``), the leaderboard (``/leaderboard``) and
the login of a server with keys (``/login``).

Pages are rendered on the server (Jinja2, autoescaped) and driven by one small script per page
(``static/``), which talks to the JSON APIs. Nothing is loaded from elsewhere. Each page sets the
double-submit CSRF cookie its script sends back, and on a server without keys a visitor cookie,
the browser's anonymous identity (its conversations, its votes).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from rejoinder.server.app import CSRF_COOKIE, KEY_COOKIE, VISITOR_COOKIE, Server, new_visitor_cookie, visitor_id
from rejoinder.server.errors import ApiError

HERE = Path(__file__).parent
LANGUAGES = ("en", "ru")
LANG_COOKIE = "rejoinder_lang"
YEAR = 365 * 24 * 3600

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "chat": "Chat", "arena": "Arena", "leaderboard": "Leaderboard", "login": "Log in", "logout": "Log out",
        "new": "New conversation", "history": "Conversations", "bot": "Bot", "options": "Options",
        "send": "Send", "stop": "Stop", "placeholder": "Write a message (Enter sends, Shift+Enter breaks the line)",
        "regenerate": "Regenerate", "good": "Good reply", "bad": "Bad reply", "comment": "Comment (optional)",
        "save": "Save", "thanks": "Thank you", "previous": "Previous version", "next": "Next version",
        "panel": "What the bot tracks", "nothing": "Nothing yet", "rule": "Rule", "keyword": "Keywords",
        "memory": "Memory", "matched": "Matched context", "confidence": "Confidence", "model": "Model",
        "backend": "Backend", "speed": "Speed", "tokens_s": "tokens/s", "first_piece": "First piece",
        "frame": "Frame", "filled": "Filled", "missing": "Missing", "confirm": "Waiting for confirmation",
        "asked": "Asking for", "intent": "Intent", "action": "Action", "preparing": "is being prepared",
        "error": "Error", "cancelled": "stopped", "empty": "No conversations yet", "you": "You",
        "arena_intro": "Two anonymous bots answer the same message side by side. Vote for the better one; "
                       "their names are shown after the vote.",
        "a": "A", "b": "B", "a_better": "A is better", "b_better": "B is better", "tie": "Tie",
        "both_bad": "Both are bad", "new_battle": "New battle", "voted": "Your vote", "prompt": "Your message",
        "rank": "Rank", "contestant": "Contestant", "rating": "Rating", "interval": "95% interval",
        "votes": "Votes", "wins": "Wins", "losses": "Losses", "ties": "Ties", "no_votes": "No votes yet.",
        "counted": "Votes counted", "capped": "over a voter's daily cap (kept, not counted)",
        "leaderboard_note": "Bradley–Terry ratings (Elo scale) with bootstrap 95% intervals; a contestant's rank "
                            "is one plus the number of contestants surely better.",
        "key": "API key", "login_note": "This server needs an API key (rejoinder keys create).",
        "language": "Language", "sidebar": "Sidebar", "messages": "Messages", "menu": "Menu",
        "preliminary": "preliminary", "preliminary_note": "Few votes yet: the rating and its interval may move a lot.",
    },
    "ru": {
        "chat": "Чат", "arena": "Арена", "leaderboard": "Рейтинг", "login": "Войти", "logout": "Выйти",
        "new": "Новый разговор", "history": "Разговоры", "bot": "Бот", "options": "Настройки",
        "send": "Отправить", "stop": "Стоп", "placeholder": "Сообщение (Enter — отправить, Shift+Enter — новая строка)",
        "regenerate": "Ответить заново", "good": "Хороший ответ", "bad": "Плохой ответ",
        "comment": "Комментарий (необязательно)", "save": "Сохранить", "thanks": "Спасибо",
        "previous": "Предыдущий вариант", "next": "Следующий вариант", "panel": "Что отслеживает бот",
        "nothing": "Пока ничего", "rule": "Правило", "keyword": "Ключевые слова", "memory": "Память",
        "matched": "Найденный контекст", "confidence": "Уверенность", "model": "Модель", "backend": "Движок",
        "speed": "Скорость", "tokens_s": "токенов/с", "first_piece": "Первый фрагмент", "frame": "Фрейм",
        "filled": "Заполнено", "missing": "Не хватает", "confirm": "Ждёт подтверждения", "asked": "Спрашивает",
        "intent": "Намерение", "action": "Действие", "preparing": "готовится", "error": "Ошибка",
        "cancelled": "остановлено", "empty": "Разговоров пока нет", "you": "Вы",
        "arena_intro": "Два анонимных бота отвечают на одно сообщение рядом. Проголосуйте за лучший ответ; "
                       "имена откроются после голосования.",
        "a": "A", "b": "B", "a_better": "A лучше", "b_better": "B лучше", "tie": "Ничья",
        "both_bad": "Оба плохи", "new_battle": "Новый бой", "voted": "Ваш голос", "prompt": "Ваше сообщение",
        "rank": "Место", "contestant": "Участник", "rating": "Рейтинг", "interval": "95% интервал",
        "votes": "Голоса", "wins": "Победы", "losses": "Поражения", "ties": "Ничьи", "no_votes": "Голосов пока нет.",
        "counted": "Учтено голосов", "capped": "сверх дневного лимита голосующего (сохранены, не учтены)",
        "leaderboard_note": "Рейтинги Брэдли–Терри (шкала Эло) с бутстреп-интервалами 95%; место участника — "
                            "единица плюс число участников, которые точно лучше.",
        "key": "API-ключ", "login_note": "Этому серверу нужен API-ключ (rejoinder keys create).",
        "language": "Язык", "sidebar": "Боковая панель", "messages": "Сообщения", "menu": "Меню",
        "preliminary": "предварительно",
        "preliminary_note": "Голосов пока мало: рейтинг и интервал могут сильно измениться.",
    },
}  # fmt: skip

router = APIRouter(include_in_schema=False)
_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def language_of(request: Request) -> str:
    """``?lang=``, then the language cookie, then the browser's Accept-Language; English otherwise."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGUAGES:
        return asked
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


def page(request: Request, template: str, *, title: str, data: dict[str, Any] | None = None,
         status: int = 200) -> HTMLResponse:  # fmt: skip
    """A page with its cookies: the CSRF token (reused while it lasts), the visitor id on a server
    without keys, and the language chosen with ``?lang=``."""
    server: Server = request.app.state.server
    lang = language_of(request)
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    logged_in = bool(request.cookies.get(KEY_COOKIE))
    keys = server.config.keys_required()
    html = _templates.get_template(template).render(
        t=STRINGS[lang],
        lang=lang,
        title=title,
        csrf=token,
        data=data or {},
        page=template.removesuffix(".html"),
        logged_in=logged_in,
        keys=keys,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["content-security-policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    )
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["referrer-policy"] = "same-origin"
    secure = request.url.scheme == "https"  # behind a TLS proxy that says so; loopback http otherwise
    response.set_cookie(CSRF_COOKIE, token, max_age=YEAR, samesite="strict", httponly=False, secure=secure)
    if not keys and not logged_in and visitor_id(request.cookies.get(VISITOR_COOKIE), server.secret) is None:
        response.set_cookie(VISITOR_COOKIE, new_visitor_cookie(server.secret), max_age=YEAR, samesite="strict",
                            httponly=True, secure=secure)  # fmt: skip
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=YEAR, samesite="lax")
    return response


def _needs_login(request: Request) -> bool:
    server: Server = request.app.state.server
    if not server.config.keys_required():
        return False
    secret = request.cookies.get(KEY_COOKIE, "")
    return not secret or server.store.check_key(secret) is None


@router.get("/")
def chat_page(request: Request) -> Response:
    if _needs_login(request):
        return RedirectResponse("/login?next=/", status_code=303)
    return page(request, "chat.html", title="Rejoinder")


@router.get("/arena")
def arena_page(request: Request) -> Response:
    if _needs_login(request):
        return RedirectResponse("/login?next=/arena", status_code=303)
    return page(request, "arena.html", title="Rejoinder arena")


@router.get("/leaderboard")
def leaderboard_page(request: Request) -> Response:
    if _needs_login(request):
        return RedirectResponse("/login?next=/leaderboard", status_code=303)
    from rejoinder.server.arena_api import current_leaderboard

    board = current_leaderboard(request.app.state.server)
    return page(request, "leaderboard.html", title="Rejoinder leaderboard", data={"board": board})


@router.get("/login")
def login_page(request: Request) -> Response:
    return page(request, "login.html", title="Rejoinder login", data={"next": _next(request.query_params.get("next"))})


def _next(target: str | None) -> str:
    """Only a path on this server (never ``//elsewhere`` or a URL) is followed after logging in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.post("/login")
def login(request: Request, key: str = Form(...), csrf: str = Form(...), next: str = Form("/")) -> Response:
    token = request.cookies.get(CSRF_COOKIE, "")
    if not token or not secrets.compare_digest(token.encode(), csrf.encode()):
        raise ApiError(403, "the CSRF token is missing or wrong: reload the page", code="csrf")
    server: Server = request.app.state.server
    info = server.store.check_key(key.strip())
    if info is None:
        return page(request, "login.html", title="Rejoinder login", data={"next": _next(next), "failed": True},
                    status=401)  # fmt: skip
    response = RedirectResponse(_next(next), status_code=303)
    response.set_cookie(KEY_COOKIE, key.strip(), max_age=30 * 24 * 3600, samesite="strict", httponly=True,
                        secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(...)) -> Response:
    token = request.cookies.get(CSRF_COOKIE, "")
    if not token or not secrets.compare_digest(token.encode(), csrf.encode()):
        raise ApiError(403, "the CSRF token is missing or wrong: reload the page", code="csrf")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(KEY_COOKIE)
    return response


def install(app: Any) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
