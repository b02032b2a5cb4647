"""The FastAPI application: the served bots, who is calling, limits, and the routes of both APIs.

Every conversation goes through :class:`~rejoinder.chat.ChatSession` on one store; every bot comes
from the store's shared pool, so all conversations with one bot share its instance (one model,
one decoding batch for every concurrent LLM chat). Requests run in worker threads; a streamed
reply is read from its :class:`~rejoinder.chat.TurnStream` off the event loop, and a client that
disconnects cancels it (the partial reply is stored, marked cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from rejoinder.bots import bot_entry, pool_for
from rejoinder.chat import TurnStream, prepare_bot
from rejoinder.dialogue import Bot, PreparingBot, Progress
from rejoinder.errors import RejoinderError
from rejoinder.server.config import ServedBot, ServerConfig, default_bots, is_loopback
from rejoinder.server.errors import ApiError, error_body, from_rejoinder, install
from rejoinder.store import Store, data_dir

log = logging.getLogger("rejoinder.server")


@dataclass(frozen=True)
class Caller:
    """Who is calling: a key's owner, or the anonymous local user."""

    user_id: str | None
    role: str
    key: str | None = None

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@dataclass
class Served:
    """One served bot: its configuration, its shared instance and how far its preparation is."""

    spec: ServedBot
    options: dict[str, Any] = field(default_factory=dict)
    bot: Bot | None = None
    error: str | None = None
    progress: Progress | None = None
    preparing: bool = False

    def ready(self) -> bool:
        if self.bot is None:
            return False
        if isinstance(self.bot, PreparingBot):
            return self.bot.readiness().ready
        return True

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ready": self.ready() and self.error is None}
        if self.error:
            out["error"] = self.error
        elif isinstance(self.bot, PreparingBot):
            readiness = self.bot.readiness()
            out["detail"] = readiness.detail
            out["complete"] = readiness.complete
        if self.progress is not None and not out["ready"]:
            p = self.progress
            out["progress"] = {"stage": p.stage, "done": p.done, "total": p.total, "detail": p.detail}
        return out


class RateLimiter:
    """A sliding window of request times per caller, and a count of open streams."""

    def __init__(self, per_minute: int, streams: int) -> None:
        self.per_minute, self.streams = per_minute, streams
        self.times: dict[str, deque[float]] = {}
        self.open: dict[str, int] = {}
        self.lock = threading.Lock()

    def request(self, who: str) -> None:
        now = time.monotonic()
        with self.lock:
            window = self.times.setdefault(who, deque())
            while window and now - window[0] > 60:
                window.popleft()
            if len(window) >= self.per_minute:
                retry = max(1, int(60 - (now - window[0])) + 1)
                raise ApiError(429, f"rate limit: {self.per_minute} requests a minute", code="rate_limited",
                               headers={"Retry-After": str(retry)})  # fmt: skip
            window.append(now)

    @contextlib.contextmanager
    def stream(self, who: str) -> Iterator[None]:
        with self.lock:
            if self.open.get(who, 0) >= self.streams:
                raise ApiError(429, f"at most {self.streams} streams at once", code="too_many_streams",
                               headers={"Retry-After": "1"})  # fmt: skip
            self.open[who] = self.open.get(who, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                self.open[who] -= 1


class Server:
    """What the routes share: the config, the store, the served bots, the limits."""

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.served = {b.name: Served(b) for b in (config.bots or default_bots())}
        self.limits = RateLimiter(config.requests_per_minute, config.streams_per_caller)
        self.busy: set[str] = set()
        self.busy_lock = threading.Lock()
        self.ignored_fields: set[str] = set()
        self.secret = server_secret()
        self.leaderboard_cache: tuple[Any, Any] | None = None  # (what the votes were, the leaderboard)
        # Bots are built one at a time (two threads importing transformers at once can fail with
        # "cannot import name"), and prepared one at a time in one worker thread (preparations
        # are CPU-bound: side by side they only slow each other and the requests being served).
        self.build_lock = threading.RLock()
        self.preparations: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.preparer: threading.Thread | None = None

    # -- bots ----------------------------------------------------------------------------------------
    def served_bot(self, name: str, param: str = "model") -> Served:
        served = self.served.get(name)
        if served is None:
            names = ", ".join(self.served)
            raise ApiError(404, f"the model {name!r} does not exist; served: {names}", param=param,
                           code="model_not_found")  # fmt: skip
        return served

    def build(self, served: Served) -> Bot:
        if served.bot is not None:
            return served.bot
        with self.build_lock:
            self._build(served)
        return served.bot

    def _build(self, served: Served) -> None:
        if served.bot is None:
            spec = served.spec
            try:
                served.bot, served.options = pool_for(self.store).get(spec.bot, spec.options, where=spec.where,
                                                                      base=spec.base)  # fmt: skip
            except RejoinderError as exc:
                served.error = str(exc)
                raise ApiError(503, f"bot {spec.name} cannot start: {exc}", code="bot_unavailable") from None

    def ready_bot(self, served: Served) -> Bot:
        """The bot, or 503 with its preparation's progress while it is not ready."""
        bot = self.build(served)
        if served.error:
            raise ApiError(503, f"bot {served.spec.name} cannot start: {served.error}", code="bot_unavailable")
        if not served.ready():
            if not served.preparing:
                self.prepare_in_background(served)
            raise ApiError(503, f"bot {served.spec.name} is being prepared; try again shortly", code="bot_preparing",
                           headers={"Retry-After": "2"}, extra={"status": served.status()})  # fmt: skip
        return bot

    def prepare_in_background(self, served: Served) -> None:
        if served.preparing:
            return
        served.preparing = True

        def run() -> None:
            try:
                bot = self.build(served)
                prepare_bot(bot, lambda p: setattr(served, "progress", p))
            except ApiError:
                pass
            except Exception as exc:  # a failed preparation is shown at /api/bots and in 503s
                served.error = f"{type(exc).__name__}: {exc}"
                log.exception("preparing %s failed", served.spec.name)
            finally:
                served.preparing = False

        self.preparations.put(run)
        with self.busy_lock:
            if self.preparer is None:  # a daemon: stopping the server never waits for a preparation
                self.preparer = threading.Thread(target=self._prepare_forever, name="prepare", daemon=True)
                self.preparer.start()

    def _prepare_forever(self) -> None:
        while True:
            self.preparations.get()()

    # -- conversations -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def turn(self, conversation_id: str, *, what: str | None = None) -> Iterator[None]:
        """One turn at a time per conversation: a second one at once gets 409 (``what`` names the
        conversation in the message; an arena side is never named by its id)."""
        with self.busy_lock:
            if conversation_id in self.busy:
                raise ApiError(409, f"{what or 'conversation ' + conversation_id} is answering another message",
                               code="conversation_busy")  # fmt: skip
            self.busy.add(conversation_id)
        try:
            yield
        finally:
            with self.busy_lock:
                self.busy.discard(conversation_id)

    def owned(self, conversation_id: str, caller: Caller) -> Any:
        """The conversation's record, if the caller may see it (others' are 404, as if absent)."""
        try:
            info = self.store.get_conversation(conversation_id)
        except RejoinderError as exc:
            raise from_rejoinder(exc) from None
        if info.user_id != caller.user_id and not caller.admin:
            raise ApiError(404, f"no conversation {conversation_id}", code="not_found")
        battle = self.store.battle_of(conversation_id)
        if battle is not None and battle.vote is None:  # its bot and options would name the contestant
            raise ApiError(404, f"no conversation {conversation_id} (a side of arena battle {battle.id})",
                           code="not_found")  # fmt: skip
        return info

    def note_ignored(self, fields: set[str]) -> None:
        new = fields - self.ignored_fields
        if new:
            self.ignored_fields |= new
            log.info("ignoring request field(s) this server does not use: %s", ", ".join(sorted(new)))


KEY_COOKIE = "rejoinder_key"
"""The API key a browser logged in with (HttpOnly, SameSite=Strict)."""
VISITOR_COOKIE = "rejoinder_visitor"
"""A browser's anonymous identity on a server without keys: its conversations and votes are its own."""
CSRF_COOKIE = "rejoinder_csrf"
"""The double-submit token: a page's script sends it back as the ``X-CSRF-Token`` header."""
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def server_secret() -> bytes:
    """The key this installation signs visitor ids with (``web-secret`` in the data directory,
    created once, readable by its owner only), so that a browser cannot choose its own id."""
    path = data_dir() / "web-secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        return path.read_bytes()


def _signature(secret: bytes, visitor: str) -> str:
    return hmac.new(secret, visitor.encode(), hashlib.sha256).hexdigest()[:32]


def new_visitor_cookie(secret: bytes) -> str:
    visitor = secrets.token_hex(16)
    return f"{visitor}.{_signature(secret, visitor)}"


def visitor_id(value: str | None, secret: bytes) -> str | None:
    """The visitor id a cookie carries, if this installation issued it (the signature matches)."""
    if not value or len(value) > 100 or value.count(".") != 1:
        return None
    visitor, signature = value.split(".")
    if len(visitor) != 32 or not all(c in "0123456789abcdef" for c in visitor):
        return None
    return visitor if hmac.compare_digest(signature.encode(), _signature(secret, visitor).encode()) else None


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing browser request from another site (CSRF).

    A request with an ``Authorization`` header cannot come from a form or a cross-site script
    without the key, so it passes. Otherwise a browser's ``Sec-Fetch-Site`` must say
    ``same-origin`` (or ``none``: typed by the user), its ``Origin`` must be this server's, and a
    request that a cookie identifies must carry the CSRF token of its page.
    """
    if request.method in SAFE_METHODS or request.headers.get("authorization"):
        return
    secret = request.app.state.server.secret if "app" in request.scope else b""
    cookie_auth = bool(request.cookies.get(KEY_COOKIE) or visitor_id(request.cookies.get(VISITOR_COOKIE), secret))
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, f"cross-site request refused (Sec-Fetch-Site: {site})", code="csrf")
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
        raise ApiError(403, f"cross-site request refused (Origin: {origin})", code="csrf")
    if cookie_auth:
        token = request.cookies.get(CSRF_COOKIE, "")
        sent = request.headers.get(CSRF_HEADER, "")
        if not token or not secrets.compare_digest(token.encode(), sent.encode()):
            raise ApiError(403, "the CSRF token is missing or wrong: reload the page", code="csrf")


def caller_of(request: Request) -> Caller:
    """Who sends ``request``: a key (the Authorization header, or the cookie of a browser that
    logged in), a browser's visitor cookie on a server without keys, or the local operator."""
    server: Server = request.app.state.server
    header = request.headers.get("authorization", "")
    secret = header[7:].strip() if header.lower().startswith("bearer ") else ""
    cookie_key = "" if header else request.cookies.get(KEY_COOKIE, "")
    visitor = None if header or cookie_key else visitor_id(request.cookies.get(VISITOR_COOKIE), server.secret)
    secret = secret or cookie_key
    info = server.store.check_key(secret) if secret else None
    if info is not None:
        caller = Caller(info.user_id, info.role, info.name)
    elif cookie_key:
        raise ApiError(401, "the key this browser logged in with is no longer valid: log in again at /login",
                       code="invalid_api_key")  # fmt: skip
    elif server.config.keys_required():
        if not secret:
            raise ApiError(401, "an API key is required: send Authorization: Bearer <key>", code="missing_api_key")
        raise ApiError(401, "the API key is not valid (unknown or revoked)", code="invalid_api_key")
    elif visitor is not None:
        caller = Caller(f"visitor:{visitor}", "user", f"visitor:{visitor}")
    else:
        caller = Caller(None, "admin")  # the local operator
    address = request.client.host if request.client else "local"
    if caller.key is not None or not is_loopback(server.config.host):  # the local operator is not limited
        server.limits.request(caller.key or address)
    if visitor is not None and not is_loopback(server.config.host):  # new visitor ids do not lift the limit
        server.limits.request(f"address:{address}")
    return caller


def check_client_options(bot: str, options: dict[str, Any]) -> None:
    """Refuse options a client may not set (files, URLs, models, threads): only the operator may."""
    entry = bot_entry(bot)
    try:
        entry.check(options, client=True)
    except RejoinderError as exc:
        raise ApiError(400, str(exc), param="options", code="invalid_option") from None


class Deadline:
    """Stops a streamed reply that takes longer than ``seconds`` (the turn is stored as cancelled)."""

    def __init__(self, stream: TurnStream, seconds: float) -> None:
        self.stream, self.seconds, self.fired = stream, seconds, False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self.stream.cancel()

    def __enter__(self) -> Deadline:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()

    def error(self) -> ApiError:
        return ApiError(504, f"the reply took longer than {self.seconds:g} s: it was stopped (kept as cancelled)",
                        code="timeout")  # fmt: skip


async def pieces_of(stream: TurnStream) -> AsyncIterator[str]:
    """The stream's text as the bot produces it.

    One thread reads the stream to its end; what it produced while the previous piece was being
    sent goes out as one piece, so that under load a reply costs fewer events (and less CPU, which
    the decoding shares) while a lone stream still gets every token at once. A reader that goes
    away (a client that disconnected) cancels the stream: the partial reply is committed, marked
    cancelled.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    lock = threading.Lock()
    pending: list[str] = []
    state: dict[str, Any] = {"finished": False, "error": None}

    def read() -> None:
        try:
            for piece in stream:
                with lock:
                    pending.append(piece)
                loop.call_soon_threadsafe(wake.set)
        except BaseException as exc:  # handed to the reader of the generator
            state["error"] = exc
        finally:
            with lock:
                state["finished"] = True
            loop.call_soon_threadsafe(wake.set)

    threading.Thread(target=read, name="rejoinder-stream", daemon=True).start()
    try:
        while True:
            await wake.wait()
            wake.clear()
            with lock:
                text, finished = "".join(pending), state["finished"]
                pending.clear()
            if text:
                yield text
            if finished:
                if state["error"] is not None:
                    raise state["error"]
                return
    finally:
        if not stream.done:
            stream.cancel()  # the reading thread sees it within one step and commits the partial reply


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are read whole (Content-Length or counted)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        response = JSONResponse(
            error_body(413, f"the request body is over {self.limit} bytes", None, "body_too_large"), status_code=413
        )
        await response({"type": "http"}, None, send)


class _TooLarge(Exception):
    pass


class SameOrigin:
    """The CSRF guard (:func:`check_same_origin`) before anything reads the request's body; the
    login and logout forms check their own token."""

    def __init__(self, app: Any, exempt: tuple[str, ...] = ("/login", "/logout")) -> None:
        self.app, self.exempt = app, exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") not in self.exempt:
            try:
                check_same_origin(Request(scope))
            except ApiError as exc:
                response = JSONResponse(error_body(exc.status, exc.message, exc.param, exc.code), status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(config: ServerConfig | None = None, store: Store | None = None) -> FastAPI:
    """The server's ASGI application (``rejoinder serve`` runs it under uvicorn)."""
    from rejoinder.server import arena_api, conversations, openai_api, web

    config = config or ServerConfig()
    config.check()
    store = store or Store()
    server = Server(config, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if config.prepare:
            for served in server.served.values():
                server.prepare_in_background(served)
        yield

    app = FastAPI(
        title="Rejoinder",
        summary="Every Rejoinder bot behind an OpenAI-compatible API and a conversations API.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.server = server
    install(app)

    app.include_router(openai_api.router)
    app.include_router(conversations.router)
    app.include_router(arena_api.router)
    web.install(app)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(SameOrigin)
    if is_loopback(config.host):  # a page elsewhere cannot reach a loopback server by a rebound DNS name
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"])
    return app


def app_from_env() -> FastAPI:
    """The app ``rejoinder serve`` starts in each worker: the config file and the command line's
    overrides come through the environment."""
    import json
    import os

    from rejoinder.server.config import load_server_config

    path = os.environ.get("REJOINDER_SERVER_CONFIG")
    config = load_server_config(path) if path else ServerConfig()
    for key, value in json.loads(os.environ.get("REJOINDER_SERVER_OVERRIDES") or "{}").items():
        setattr(config, key, value)
    return create_app(config)
