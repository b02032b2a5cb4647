"""The conversations API under ``/api``: the served bots, and stored conversations to create,
continue (whole or streamed), list, fetch (messages with ids and branches, and the bot's state),
regenerate and delete. API keys are listed by admins only."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from rejoinder.bots import bot_entry
from rejoinder.chat import ChatSession
from rejoinder.errors import RejoinderError
from rejoinder.server.app import Caller, Server, caller_of, check_client_options, pieces_of
from rejoinder.server.errors import ApiError, error_body, from_rejoinder

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


def _server(request: Request) -> tuple[Server, Caller]:
    caller = caller_of(request)
    return request.app.state.server, caller


def _message(m: Any, siblings: dict[str | None, list[str]]) -> dict[str, Any]:
    group = siblings.get(m.parent_id, [m.id])
    return {"id": m.id, "parent_id": m.parent_id, "role": m.role, "text": m.text, "bot": m.bot,
            "created_at": m.created_at.isoformat(), "meta": m.meta, "siblings": group,
            "sibling_index": group.index(m.id) if m.id in group else 0}  # fmt: skip


def _conversation(server: Server, conversation_id: str) -> dict[str, Any]:
    info = server.store.get_conversation(conversation_id)
    dialogue = server.store.load_dialogue(conversation_id)
    tree = server.store.message_tree(conversation_id)
    siblings: dict[str | None, list[str]] = {}
    for m in tree:
        siblings.setdefault(m.parent_id, []).append(m.id)
    served = next((n for n, s in server.served.items() if s.spec.bot == info.bot), info.bot)
    return {"id": info.id, "bot": served, "options": info.bot_options, "created_at": info.created_at.isoformat(),
            "updated_at": info.updated_at.isoformat(), "messages": [_message(m, siblings) for m in dialogue.messages],
            "state": dialogue.state, "version": dialogue.version}  # fmt: skip


def _reply(reply: Any, session: ChatSession) -> dict[str, Any]:
    last = session.dialogue.messages[-1]
    return {"conversation_id": session.conversation_id, "message": {"id": last.id, "parent_id": last.parent_id,
            "role": "assistant", "text": reply.text, "meta": last.meta, "finish_reason": reply.finish_reason},
            "state": session.dialogue.state}  # fmt: skip


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
    data = [{"id": c.id, "bot": c.bot, "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat(),
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
    served = next((s for s in server.served.values() if s.spec.bot == info.bot), None)
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
    with server.turn(conversation_id):  # 409 at once when a turn is under way
        pass
    stream = session.stream(body.text, after=body.after)

    async def events() -> Any:
        try:
            with server.turn(conversation_id):
                async for piece in pieces_of(stream):
                    yield {"event": "piece", "data": json.dumps({"text": piece}, ensure_ascii=False)}
                if stream.reply is not None:
                    yield {"event": "reply", "data": json.dumps(_reply(stream.reply, session), ensure_ascii=False,
                                                                default=str)}  # fmt: skip
        except (ApiError, RejoinderError) as exc:
            error = exc if isinstance(exc, ApiError) else from_rejoinder(exc)
            yield {"event": "error", "data": json.dumps(error_body(error.status, error.message, error.param,
                                                                   error.code))}  # fmt: skip

    return EventSourceResponse(events(), ping=15)


@router.post("/conversations/{conversation_id}/regenerate")
def regenerate(conversation_id: str, body: Regenerate, request: Request) -> dict[str, Any]:
    server, caller = _server(request)
    session = _session(server, conversation_id, caller)
    with server.turn(conversation_id):
        reply = session.regenerate(body.message_id)
    return _reply(reply, session)


@router.get("/keys")
def list_keys(request: Request) -> dict[str, Any]:
    server, caller = _server(request)
    if not caller.admin:
        raise ApiError(403, "only an admin key may list keys", code="forbidden")
    return {"data": [{"id": k.id, "name": k.name, "role": k.role, "prefix": k.prefix,
                      "created_at": k.created_at.isoformat(), "revoked": k.revoked_at is not None}
                     for k in server.store.list_keys()]}  # fmt: skip
