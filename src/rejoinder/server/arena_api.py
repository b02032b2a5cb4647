"""The arena's API under ``/api/arena``: a battle between two anonymous contestants, both sides
streamed side by side, the vote that reveals their names, and the leaderboard.

A battle's sides are ordinary conversations of the voter (kept out of the chat's list); the
contestants' names and the replies' meta (which would give them away) are sent only after the
vote. Pairs are drawn at random among the arena's contestants (``arena`` in the server config,
else every served bot) with positions balanced: over many battles each is shown left as often as
right.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from rejoinder import arena
from rejoinder.chat import ChatSession
from rejoinder.errors import RejoinderError
from rejoinder.server.app import Caller, Deadline, Server, caller_of, pieces_of
from rejoinder.server.errors import ApiError, error_body, from_rejoinder
from rejoinder.server.markdown import render_markdown
from rejoinder.store import ARENA_VOTES, BattleInfo

router = APIRouter(prefix="/api/arena")
log = logging.getLogger("rejoinder.server")
SIDES = ("a", "b")
_rng = random.SystemRandom()


class NewTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class Vote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vote: str = Field(description="a (left better), b (right better), tie, or bad (both bad)")


def contestants(server: Server) -> list[str]:
    return list(server.config.arena or server.served)


def current_leaderboard(server: Server) -> arena.Leaderboard:
    """The leaderboard of every vote so far, refitted only when a vote came in since the last fit."""
    key = server.store.votes_so_far()
    cached = server.leaderboard_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    board = arena.leaderboard(server.store.battles(voted=True), daily_cap=server.config.arena_daily_cap)
    server.leaderboard_cache = (key, board)
    return board


def _battle(server: Server, battle_id: str, caller: Caller) -> BattleInfo:
    try:
        found = server.store.battle(battle_id)
    except RejoinderError as exc:
        raise from_rejoinder(exc) from None
    if found.user_id != caller.user_id and not caller.admin:
        raise ApiError(404, f"no arena battle {battle_id}", code="not_found")
    return found


def _side(server: Server, conversation_id: str, revealed: bool) -> list[dict[str, Any]]:
    """One side's messages; before the vote without meta and without the bot's opening remark,
    either of which could name it."""
    dialogue = server.store.load_dialogue(conversation_id)
    shown = [m for m in dialogue.messages if revealed or m.role == "user" or m.parent_id is not None]
    return [{"id": m.id, "role": m.role, "text": m.text,
             "html": render_markdown(m.text) if m.role == "assistant" else None,
             "finish_reason": m.meta.get("finish_reason", "stop") if m.role == "assistant" else None,
             **({"meta": m.meta} if revealed else {})} for m in shown]  # fmt: skip


def _ready(server: Server, name: str) -> Any:
    """A contestant's bot, or a 503 that does not name it."""
    try:
        return server.ready_bot(server.served_bot(name))
    except ApiError as exc:
        if exc.status != 503:
            raise
        raise ApiError(503, "a contestant is not ready yet; try again shortly", code="arena_unavailable",
                       headers={"Retry-After": "2"}) from None  # fmt: skip


def _view(server: Server, battle: BattleInfo) -> dict[str, Any]:
    revealed = battle.vote is not None
    out: dict[str, Any] = {"id": battle.id, "vote": battle.vote, "created_at": battle.created_at.isoformat(),
                           "a": {"messages": _side(server, battle.conversation_a, revealed)},
                           "b": {"messages": _side(server, battle.conversation_b, revealed)}}  # fmt: skip
    if revealed:
        out["a"]["name"], out["b"]["name"] = battle.contestant_a, battle.contestant_b
        out["voted_at"] = battle.voted_at.isoformat() if battle.voted_at else None
    return out


def _session(server: Server, name: str, conversation_id: str) -> ChatSession:
    return ChatSession.resume(server.store, conversation_id, bot=_ready(server, name))


@router.post("/battles", status_code=201)
def create_battle(request: Request) -> dict[str, Any]:
    """Two contestants drawn at random, positions balanced; their openings (if any) without names."""
    server, caller = request.app.state.server, caller_of(request)
    names = contestants(server)
    ready = [n for n in names if n in server.served and server.served[n].error is None]
    try:
        left, right = arena.pick_pair(ready, server.store.left_counts(), _rng)
    except ValueError as exc:
        raise ApiError(503, f"the arena needs two bots that can start: {exc}", code="arena_unavailable") from None
    bots = [_ready(server, name) for name in (left, right)]  # both ready, or 503 before either is stored
    sides = []
    for name, bot in zip((left, right), bots, strict=True):
        served = server.served_bot(name)
        session, _ = ChatSession.start(server.store, served.spec.bot, served.options, user_id=caller.user_id,
                                       bot=bot, where=served.spec.where, base=served.spec.base)  # fmt: skip
        sides.append(session.conversation_id)
    battle = server.store.create_battle(left, right, sides[0], sides[1], user_id=caller.user_id)
    return _view(server, battle)


@router.get("/battles/{battle_id}")
def get_battle(battle_id: str, request: Request) -> dict[str, Any]:
    server, caller = request.app.state.server, caller_of(request)
    return _view(server, _battle(server, battle_id, caller))


@router.post("/battles/{battle_id}/messages")
def battle_turn(battle_id: str, body: NewTurn, request: Request) -> EventSourceResponse:
    """The same message to both sides; their replies stream at once as ``piece`` events tagged
    with the side, then one ``reply`` per side (or ``error``), then ``done``."""
    server, caller = request.app.state.server, caller_of(request)
    battle = _battle(server, battle_id, caller)
    if len(body.text) > server.config.max_message_chars:
        raise ApiError(413, f"the message is {len(body.text)} characters long; the limit is "
                       f"{server.config.max_message_chars}", param="text", code="message_too_long")  # fmt: skip
    revealed = battle.vote is not None
    pairs = [("a", battle.contestant_a, battle.conversation_a), ("b", battle.contestant_b, battle.conversation_b)]
    who = caller.key or "local"
    for _, _, cid in pairs:
        with server.turn(cid, what="this battle"), server.limits.stream(who):  # 409 or 429 at once
            pass
    streams = []
    for side, name, cid in pairs:
        session = _session(server, name, cid)
        try:
            streams.append((side, cid, session.stream(body.text)))
        except RejoinderError as exc:
            raise from_rejoinder(exc) from None

    async def events() -> Any:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def run(side: str, cid: str, stream: Any) -> None:
            try:
                with (
                    server.limits.stream(who),
                    server.turn(cid, what="this battle"),
                    Deadline(stream, server.config.request_timeout_s) as deadline,
                ):
                    async for piece in pieces_of(stream):
                        await queue.put({"event": "piece", "data": json.dumps({"side": side, "text": piece},
                                                                              ensure_ascii=False)})  # fmt: skip
                    if deadline.fired:
                        raise deadline.error()
                    if stream.reply is not None:
                        message = {"text": stream.reply.text, "html": render_markdown(stream.reply.text),
                                   "finish_reason": stream.reply.finish_reason,
                                   **({"meta": stream.reply.meta} if revealed else {})}  # fmt: skip
                        data = json.dumps({"side": side, "message": message}, ensure_ascii=False, default=str)
                        await queue.put({"event": "reply", "data": data})
            except (ApiError, RejoinderError) as exc:
                error = exc if isinstance(exc, ApiError) else from_rejoinder(exc)
                message = error.message if revealed else "this side could not answer"  # the message may name it
                body = error_body(error.status, message, error.param, error.code)
                await queue.put({"event": "error", "data": json.dumps({"side": side, **body})})
            except Exception:  # a bot that fails: the other side still answers; the failure is logged
                log.exception("an arena side failed in battle %s", battle.id)
                body = error_body(500, "this side could not answer", None, "bot_failed")
                await queue.put({"event": "error", "data": json.dumps({"side": side, **body})})
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(run(side, cid, stream)) for side, cid, stream in streams]
        try:
            finished = 0
            while finished < len(tasks):
                item = await queue.get()
                if item is None:
                    finished += 1
                else:
                    yield item
            yield {"event": "done", "data": json.dumps({"battle": battle.id})}
        finally:
            for task in tasks:
                task.cancel()  # a client gone: each side's stream is cancelled and kept as such

    return EventSourceResponse(events(), ping=15)


@router.post("/battles/{battle_id}/vote")
def vote(battle_id: str, body: Vote, request: Request) -> dict[str, Any]:
    """The battle's one vote; the answer reveals both names."""
    server, caller = request.app.state.server, caller_of(request)
    battle = _battle(server, battle_id, caller)
    if body.vote not in ARENA_VOTES:
        raise ApiError(400, f"vote {body.vote!r}: expected one of {', '.join(ARENA_VOTES)}", param="vote")
    with server.busy_lock:
        if battle.conversation_a in server.busy or battle.conversation_b in server.busy:
            raise ApiError(409, "this battle is still answering: vote when both replies are in", code="battle_busy")
    replies = [[m for m in server.store.load_dialogue(cid).messages if m.role == "assistant" and m.parent_id]
               for cid in (battle.conversation_a, battle.conversation_b)]  # fmt: skip
    if not replies[0] or not replies[1]:
        raise ApiError(409, "send a message first: there is nothing to vote on yet", code="nothing_to_vote_on")
    if len(replies[0]) != len(replies[1]):
        raise ApiError(409, "one side did not answer the last message: send it again, or start a new battle",
                       code="sides_differ")  # fmt: skip
    try:
        battle = server.store.vote_battle(battle.id, body.vote)
    except RejoinderError as exc:
        raise ApiError(409, str(exc), code="already_voted") from None
    return _view(server, battle)


@router.get("/leaderboard")
def leaderboard(request: Request) -> dict[str, Any]:
    server = request.app.state.server
    caller_of(request)
    return current_leaderboard(server).to_json()
