"""The conversations API under ``/api``: the served bots, and stored conversations to create,
continue (whole or streamed), list, fetch (messages with ids and branches, and the bot's state),
regenerate and delete. API keys are listed by admins only."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from rejoinder.bots import bot_entry
from rejoinder.chat import ChatSession
from rejoinder.dialogue import PanelBot
from rejoinder.errors import RejoinderError
from rejoinder.server.app import Caller, Deadline, Server, caller_of, check_client_options, pieces_of
from rejoinder.server.errors import ApiError, error_body, from_rejoinder
from rejoinder.server.markdown import render_markdown

log = logging.getLogger("rejoinder.server")

router = APIRouter(prefix="/api")


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bot: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    stream: bool = False
    after: str | None = None


class Regenerate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: str | None = None
    stream: bool = False


class Switch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(min_length=1, max_length=36)


class NewFeedback(BaseModel):
    """Thumbs up (1) or down (-1), an optional comment, or both."""

    model_config = ConfigDict(extra="forbid")
    rating: int | None = Field(default=None, ge=-1, le=1)
    comment: str | None = Field(default=None, max_length=4000)


def _server(request: Request) -> tuple[Server, Caller]:
    caller = caller_of(request)
    return request.app.state.server, caller


def _message(m: Any, siblings: dict[str | None, list[str]]) -> dict[str, Any]:
    group = siblings.get(m.parent_id, [m.id])
    return {"id": m.id, "parent_id": m.parent_id, "role": m.role, "text": m.text, "bot": m.bot,
            "html": render_markdown(m.text) if m.role == "assistant" else None,
            "created_at": m.created_at.isoformat(), "meta": m.meta, "siblings": group,
            "sibling_index": group.index(m.id) if m.id in group else 0}  # fmt: skip


def _panel(bot: Any, dialogue: Any) -> dict[str, Any] | None:
    """What the bot tracks beyond its replies' meta (the frame bot's slots), for the side panel."""
    if bot is None or not isinstance(bot, PanelBot):
        return None
    try:
        return bot.panel(dialogue)
    except Exception:  # a panel never breaks a reply
        log.exception("the panel of %s failed", getattr(bot, "name", bot))
        return None


def _served_as(server: Server, info: Any) -> tuple[str, Any]:
    """The served name a stored conversation is with: the entry of its bot with its options (two
    names can serve one bot, e.g. ``eliza`` and ``eliza-1966``), else the first entry of its bot."""
    same_bot = [(n, s) for n, s in server.served.items() if s.spec.bot == info.bot]
    for name, served in same_bot:
        if served.bot is not None and served.options == info.bot_options:
            return name, served
    for name, served in sorted(same_bot, key=lambda item: -len(item[1].spec.options)):
        if all(str(info.bot_options.get(k)) == str(v) for k, v in served.spec.options.items()):
            return name, served
    return same_bot[0] if same_bot else (info.bot, None)


def _conversation(server: Server, conversation_id: str) -> dict[str, Any]:
    info = server.store.get_conversation(conversation_id)
    dialogue = server.store.load_dialogue(conversation_id)
    tree = server.store.message_tree(conversation_id)
    siblings: dict[str | None, list[str]] = {}
    for m in tree:
        siblings.setdefault(m.parent_id, []).append(m.id)
    name, served = _served_as(server, info)
    bot = served.bot if served is not None and info.bot_options == served.options else None
    return {"id": info.id, "bot": name, "options": info.bot_options, "created_at": info.created_at.isoformat(),
            "updated_at": info.updated_at.isoformat(), "messages": [_message(m, siblings) for m in dialogue.messages],
            "state": dialogue.state, "version": dialogue.version, "panel": _panel(bot, dialogue)}  # fmt: skip


def _reply(reply: Any, session: ChatSession) -> dict[str, Any]:
    last = session.dialogue.messages[-1]
    siblings = [m.id for m in session.store.siblings(last.id)] if last.parent_id else [last.id]
    return {"conversation_id": session.conversation_id, "message": {"id": last.id, "parent_id": last.parent_id,
            "role": "assistant", "text": reply.text, "html": render_markdown(reply.text), "meta": last.meta,
            "finish_reason": reply.finish_reason, "siblings": siblings, "sibling_index": siblings.index(last.id)
            if last.id in siblings else 0}, "state": session.dialogue.state,
            "panel": _panel(session.bot, session.dialogue)}  # fmt: skip


@router.get("/bots")
def list_bots(request: Request) -> dict[str, Any]:
    server, _ = _server(request)
    out = []
    for name, served in server.served.items():
        entry = bot_entry(served.spec.bot)
        options = [{"name": o.name, "kind": o.kind, "default": o.default, "help": o.help, "client": o.client_settable,
                    "choices": list(o.choices) if o.choices else None} for o in entry.options()]  # fmt: skip
        out.append({"name": name, "bot": served.spec.bot, "description": served.spec.description or entry.description,
                    "options": options, "schema": entry.schema(), **served.status()})  # fmt: skip
    return {"data": out}


@router.post("/conversations", status_code=201)
def create_conversation(body: NewConversation, request: Request) -> dict[str, Any]:
    server, caller = _server(request)
    served = server.served_bot(body.bot, param="bot")
    check_client_options(served.spec.bot, body.options)
    bot = server.ready_bot(served)
    options = {**served.options, **body.options}
    if body.options:
        bot = None  # other options: the pool builds (or shares) the bot for them
    session, _ = ChatSession.start(server.store, served.spec.bot, options, user_id=caller.user_id, bot=bot,
                                         where=served.spec.where, base=served.spec.base)  # fmt: skip
    return _conversation(server, session.conversation_id)


@router.get("/conversations")
def list_conversations(request: Request, limit: int = 20, before: datetime | None = None) -> dict[str, Any]:
    server, caller = _server(request)
    if not 1 <= limit <= 200:
        raise ApiError(400, "limit: 1 to 200", param="limit")
    found = server.store.list_conversations(limit=limit, user_id=caller.user_id, before=before,
                                            anonymous=caller.user_id is None)  # fmt: skip
    data = [{"id": c.id, "bot": _served_as(server, c)[0], "created_at": c.created_at.isoformat(),
             "updated_at": c.updated_at.isoformat(),
             "messages": c.message_count} for c in found]  # fmt: skip
    return {"data": data, "next_before": found[-1].updated_at.isoformat() if len(found) == limit else None}


@router.get("/conversations/{conversation_id}")
def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    server, caller = _server(request)
    server.owned(conversation_id, caller)
    return _conversation(server, conversation_id)


@router.delete("/conversations/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, request: Request) -> Response:
    server, caller = _server(request)
    server.owned(conversation_id, caller)
    with server.turn(conversation_id):
        server.store.delete_conversation(conversation_id)
    return Response(status_code=204)


def _session(server: Server, conversation_id: str, caller: Caller) -> ChatSession:
    info = server.owned(conversation_id, caller)
    _, served = _served_as(server, info)
    if served is not None and info.bot_options == served.options:
        return ChatSession.resume(server.store, conversation_id, bot=server.ready_bot(served))
    return ChatSession.resume(server.store, conversation_id)


@router.post("/conversations/{conversation_id}/messages", response_model=None)
def send_message(conversation_id: str, body: NewMessage, request: Request) -> Any:
    server, caller = _server(request)
    if len(body.text) > server.config.max_message_chars:
        raise ApiError(413, f"the message is {len(body.text)} characters long; the limit is "
                       f"{server.config.max_message_chars}", param="text", code="message_too_long")  # fmt: skip
    session = _session(server, conversation_id, caller)
    if not body.stream:
        with server.turn(conversation_id):
            reply = session.send(body.text, after=body.after)
        return _reply(reply, session)
    with server.turn(conversation_id), server.limits.stream(caller.key or "local"):  # 409 or 429 at once
        pass
    return _streamed(server, conversation_id, session, session.stream(body.text, after=body.after),
                     caller.key or "local")  # fmt: skip


def _streamed(server: Server, conversation_id: str, session: ChatSession, stream: Any,
              who: str) -> EventSourceResponse:  # fmt: skip
    """A turn as server-sent events: ``piece`` (text as it comes), then ``reply`` or ``error``;
    each caller has at most ``streams_per_caller`` open at once."""

    async def events() -> Any:
        try:
            with (
                server.limits.stream(who),
                server.turn(conversation_id),
                Deadline(stream, server.config.request_timeout_s) as deadline,
            ):
                async for piece in pieces_of(stream):
                    yield {"event": "piece", "data": json.dumps({"text": piece}, ensure_ascii=False)}
                if deadline.fired:
                    raise deadline.error()
                if stream.reply is not None:
                    yield {"event": "reply", "data": json.dumps(_reply(stream.reply, session), ensure_ascii=False,
                                                                default=str)}  # fmt: skip
        except (ApiError, RejoinderError) as exc:
            error = exc if isinstance(exc, ApiError) else from_rejoinder(exc)
            yield {"event": "error", "data": json.dumps(error_body(error.status, error.message, error.param,
                                                                   error.code))}  # fmt: skip

    return EventSourceResponse(events(), ping=15)


@router.post("/conversations/{conversation_id}/regenerate", response_model=None)
def regenerate(conversation_id: str, body: Regenerate, request: Request) -> Any:
    """Answer the last user message again (or the one before ``message_id``): the new reply is a
    sibling of the old one; both are kept."""
    server, caller = _server(request)
    session = _session(server, conversation_id, caller)
    if body.stream:
        with server.turn(conversation_id), server.limits.stream(caller.key or "local"):
            pass
        try:
            stream = session.regenerate_stream(body.message_id)
        except RejoinderError as exc:
            raise from_rejoinder(exc) from None
        return _streamed(server, conversation_id, session, stream, caller.key or "local")
    with server.turn(conversation_id):
        reply = session.regenerate(body.message_id)
    return _reply(reply, session)


@router.post("/conversations/{conversation_id}/switch")
def switch(conversation_id: str, body: Switch, request: Request) -> dict[str, Any]:
    """Continue from another version of a reply (a sibling); which one the user kept is recorded
    (feedback of kind ``choice``), the data regenerate preferences are exported from."""
    server, caller = _server(request)
    server.owned(conversation_id, caller)
    if server.store.message_conversation(body.message_id) != conversation_id:
        raise ApiError(404, f"no message {body.message_id} in conversation {conversation_id}", param="message_id",
                       code="not_found")  # fmt: skip
    with server.turn(conversation_id):
        session = _session(server, conversation_id, caller)
        session.switch_branch(body.message_id)
        siblings = server.store.siblings(body.message_id)
        if len(siblings) > 1:
            server.store.add_feedback(body.message_id, "choice", {"kept": body.message_id,
                                      "of": [m.id for m in siblings]}, user_id=caller.user_id)  # fmt: skip
    return _conversation(server, conversation_id)


@router.post("/messages/{message_id}/feedback", status_code=201)
def feedback(message_id: str, body: NewFeedback, request: Request) -> dict[str, Any]:
    """Thumbs up or down on a reply, with an optional comment."""
    server, caller = _server(request)
    conversation_id = server.store.message_conversation(message_id)
    server.owned(conversation_id, caller)
    comment = (body.comment or "").strip()
    if body.rating is None and not comment:
        raise ApiError(400, "send a rating (1 or -1), a comment, or both", param="rating")
    if body.rating == 0:
        raise ApiError(400, "rating: 1 (good) or -1 (bad)", param="rating")
    saved = []
    if body.rating is not None:
        saved.append(server.store.add_feedback(message_id, "rating", {"score": body.rating}, user_id=caller.user_id))
    if comment:
        value = {"text": comment, **({"score": body.rating} if body.rating is not None else {})}
        saved.append(server.store.add_feedback(message_id, "comment", value, user_id=caller.user_id))
    return {"data": [{"id": f.id, "kind": f.kind, "value": f.value, "created_at": f.created_at.isoformat()}
                     for f in saved]}  # fmt: skip


@router.get("/keys")
def list_keys(request: Request) -> dict[str, Any]:
    server, caller = _server(request)
    if not caller.admin:
        raise ApiError(403, "only an admin key may list keys", code="forbidden")
    return {"data": [{"id": k.id, "name": k.name, "role": k.role, "prefix": k.prefix,
                      "created_at": k.created_at.isoformat(), "revoked": k.revoked_at is not None}
                     for k in server.store.list_keys()]}  # fmt: skip
