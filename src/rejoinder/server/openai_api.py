"""The OpenAI-compatible API: ``GET /v1/models`` and ``POST /v1/chat/completions``.

``model`` names a served bot. OpenAI clients send the whole history every time, while ELIZA's
memory, a frame's slots and the retrieval bot's context live in the bot's state: the request's
history is looked up among the caller's stored conversations by its digest (every stored message
carries the digest of the history up to it), and the conversation continues from the longest
stored prefix - as a new branch when the client edited an earlier turn. What is not stored yet is
replayed through the bot (which rebuilds its state) and stored as the client sent it. A
conversation id (the ``X-Rejoinder-Conversation`` header or a ``conversation_id`` field) skips the
matching; every response carries it.

Fields the server does not use are accepted and ignored (and logged once); fields it cannot honour
for a bot (a JSON schema for a rule-based bot, log-probabilities, tools) are refused with 400.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from rejoinder.chat import ChatSession, clean_message
from rejoinder.dialogue import ROOT_DIGEST, Reply, StreamingBot, TurnOptions, chain_digest
from rejoinder.errors import RejoinderError
from rejoinder.server.app import Caller, Deadline, Server, caller_of, pieces_of
from rejoinder.server.errors import ApiError, error_body, from_rejoinder

router = APIRouter()
CONVERSATION_HEADER = "X-Rejoinder-Conversation"


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "reply"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None
    conversation_id: str | None = None
    user: str | None = None


HONOURED = set(ChatCompletionRequest.model_fields) - {"tools", "logprobs"}


@router.get("/v1/models")
def list_models(request: Request) -> dict[str, Any]:
    caller_of(request)
    server: Server = request.app.state.server
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "rejoinder", "bot": s.spec.bot,
             "description": s.spec.description, **s.status()}
            for name, s in server.served.items()
        ],
    }  # fmt: skip


def _text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise ApiError(400, f"messages[{index}].content: only text parts are supported, not {part.type!r}",
                           param=f"messages[{index}].content", code="unsupported_content")  # fmt: skip
        texts.append(part.text)
    return "\n".join(texts)


def _history(body: ChatCompletionRequest, limit: int) -> tuple[str | None, list[tuple[str, str]], str]:
    """The request's system prompt, its earlier turns (role, text) and the new user message."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(body.messages):
        if message.role in ("tool", "function"):
            raise ApiError(400, f"messages[{i}]: role {message.role!r} is not supported (no tools here)",
                           param=f"messages[{i}].role", code="unsupported_role")  # fmt: skip
        text = _text(message, i)
        if message.role in ("system", "developer"):
            system.append(text)
            continue
        role = message.role
        try:
            text = clean_message(text, limit) if role == "user" else text.strip()
        except RejoinderError as exc:
            error = from_rejoinder(exc)
            error.message, error.param = f"messages[{i}]: {error.message}", f"messages[{i}].content"
            raise error from None
        if turns and turns[-1][0] == role == "user":  # consecutive user messages are one turn
            turns[-1] = ("user", turns[-1][1] + "\n\n" + text)
        elif turns and turns[-1][0] == role == "assistant":
            turns[-1] = ("assistant", turns[-1][1] + "\n\n" + text)
        else:
            turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's (the one to answer)", param="messages",
                       code="invalid_messages")  # fmt: skip
    return ("\n\n".join(system) if system else None), turns[:-1], turns[-1][1]


def _turn_options(body: ChatCompletionRequest, system: str | None, bot: Any, bot_name: str) -> TurnOptions:
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > 4 or any(not s for s in stop):
        raise ApiError(400, "stop: up to 4 non-empty sequences", param="stop", code="invalid_value")
    schema = None
    honoured = getattr(bot, "turn_options", frozenset())
    if body.response_format is not None and body.response_format.type != "text":
        if "json_schema" not in honoured:
            raise ApiError(400, f"response_format: the bot {bot_name} cannot constrain its replies to JSON",
                           param="response_format", code="unsupported_for_bot")  # fmt: skip
        if body.response_format.type == "json_object":
            schema = {"type": "object"}
        else:
            given = body.response_format.json_schema
            if given is None or given.schema_ is None:
                raise ApiError(400, "response_format.json_schema.schema is required", param="response_format")
            schema = given.schema_
    if body.logprobs:
        raise ApiError(400, "logprobs are not offered by this server", param="logprobs", code="unsupported")
    if body.tools:
        raise ApiError(400, "tools are not offered by this server (no function calling)", param="tools",
                       code="unsupported")  # fmt: skip
    return TurnOptions(
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
        json_schema=schema,
        system=system if "system" in honoured else None,
    )


def _session(server: Server, caller: Caller, served: Any, bot: Any, body: ChatCompletionRequest, request: Request,
             earlier: list[tuple[str, str]]) -> tuple[ChatSession, str | None]:  # fmt: skip
    """The conversation this request continues (and the message to branch below, if not its leaf),
    with everything in the request's history that it lacks replayed into it."""
    store = server.store
    explicit = request.headers.get(CONVERSATION_HEADER) or body.conversation_id
    if explicit:
        info = server.owned(explicit, caller)
        if info.bot != served.spec.bot:
            raise ApiError(400, f"conversation {explicit} is with {info.bot}, not {served.spec.name}",
                           param="conversation_id")  # fmt: skip
        return ChatSession.resume(store, explicit, bot=bot), None
    digests = [ROOT_DIGEST]
    for role, text in earlier:
        digests.append(chain_digest(digests[-1], role, text))
    found = store.find_history(digests[::-1], bot=served.spec.bot, user_id=caller.user_id)
    after = None
    if found is not None:
        conversation_id, message_id, digest = found
        session = ChatSession.resume(store, conversation_id, bot=bot)
        matched = digests.index(digest)
        if session.dialogue.messages and session.dialogue.messages[-1].id != message_id:
            after = message_id
        rest = earlier[matched:]
    else:
        session, _ = ChatSession.start(store, served.spec.bot, served.options, user_id=caller.user_id, bot=bot)
        rest = earlier
    i = 0
    while i < len(rest):
        role, text = rest[i]
        if role == "assistant":  # an assistant message with no user message before it: nothing to answer
            i += 1
            continue
        reply = rest[i + 1][1] if i + 1 < len(rest) and rest[i + 1][0] == "assistant" else None
        if after is not None:
            session.switch_branch(after)
            after = None
        session.replay(text, reply)
        i += 2 if reply is not None else 1
    return session, after


def _usage(replies: list[Reply], last: str) -> dict[str, int]:
    completion = sum(int(r.meta.get("tokens") or len(r.text.split())) for r in replies)
    prompt = int(replies[0].meta.get("prompt_tokens") or len(last.split())) if replies else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(reply: Reply) -> str:
    return "length" if reply.finish_reason == "length" else "stop"


@router.post("/v1/chat/completions", response_model=None)
def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    caller = caller_of(request)
    server: Server = request.app.state.server
    server.note_ignored(set(body.model_extra or {}) | ({"user"} if body.user else set()))
    served = server.served_bot(body.model)
    if body.n > server.config.max_n:
        raise ApiError(400, f"n: at most {server.config.max_n}", param="n", code="invalid_value")
    system, earlier, last = _history(body, server.config.max_message_chars)
    bot = server.ready_bot(served)
    turn = _turn_options(body, system, bot, served.spec.name)
    session, after = _session(server, caller, served, bot, body, request, earlier)
    cid = session.conversation_id
    headers = {CONVERSATION_HEADER: cid}
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    base = {"id": completion_id, "created": created, "model": served.spec.name, "system_fingerprint": None,
            "conversation_id": cid}  # fmt: skip
    if body.stream:
        return _streamed(server, caller, session, body, last, after, turn, base, headers)
    with server.turn(cid):
        if body.n == 1 and isinstance(bot, StreamingBot):  # a streamed turn read whole, so that it can time out
            stream = session.stream(last, after=after, turn=turn)
            with Deadline(stream, server.config.request_timeout_s) as deadline:
                for _ in stream:
                    pass
            if deadline.fired:
                raise deadline.error()
            replies = [stream.reply] if stream.reply is not None else []
        else:
            replies = session.send_many(last, body.n, after=after, turn=turn)
    choices = [
        {"index": i, "message": {"role": "assistant", "content": r.text}, "finish_reason": _finish(r),
         "logprobs": None}
        for i, r in enumerate(replies)
    ]  # fmt: skip
    payload = {**base, "object": "chat.completion", "choices": choices, "usage": _usage(replies, last)}
    return JSONResponse(payload, headers=headers)


def _streamed(server: Server, caller: Caller, session: ChatSession, body: ChatCompletionRequest, last: str,
              after: str | None, turn: TurnOptions, base: dict[str, Any], headers: dict[str, str]) -> Any:  # fmt: skip
    cid = session.conversation_id
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    who = caller.key or "local"

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> str:
        out = {**base, "object": "chat.completion.chunk", "choices": choices}
        if include_usage:
            out["usage"] = usage
        return json.dumps(out, ensure_ascii=False)

    async def events() -> Any:
        try:
            async for event in _events():
                yield event
        except (ApiError, RejoinderError) as exc:  # after the stream began: an error event, then the end
            error = exc if isinstance(exc, ApiError) else from_rejoinder(exc)
            yield {"data": json.dumps(error_body(error.status, error.message, error.param, error.code))}
            yield {"data": "[DONE]"}

    async def _events() -> Any:
        import anyio

        with server.limits.stream(who), server.turn(cid):
            if body.n == 1:
                stream = await anyio.to_thread.run_sync(lambda: session.stream(last, after=after, turn=turn))
                yield {"data": chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None, "logprobs": None}])}  # fmt: skip
                with Deadline(stream, server.config.request_timeout_s) as deadline:
                    async for piece in pieces_of(stream):
                        yield {"data": chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None,
                                               "logprobs": None}])}  # fmt: skip
                if deadline.fired:
                    raise deadline.error()
                replies = [stream.reply] if stream.reply is not None else []
            else:  # n candidates are decoded together and sent whole, one chunk each
                replies = await anyio.to_thread.run_sync(lambda: session.send_many(last, body.n, after=after,
                                                                                    turn=turn))  # fmt: skip
                for i, r in enumerate(replies):
                    yield {"data": chunk([{"index": i, "delta": {"role": "assistant", "content": r.text},
                                           "finish_reason": None, "logprobs": None}])}  # fmt: skip
            for i, r in enumerate(replies):
                yield {"data": chunk([{"index": i, "delta": {}, "finish_reason": _finish(r), "logprobs": None}])}
            if include_usage:
                yield {"data": json.dumps({**base, "object": "chat.completion.chunk", "choices": [],
                                           "usage": _usage(replies, last)})}  # fmt: skip
            yield {"data": "[DONE]"}

    with server.turn(cid), server.limits.stream(who):  # refuse at once (409, 429) before the stream starts
        pass
    return EventSourceResponse(events(), headers=headers, ping=15)
