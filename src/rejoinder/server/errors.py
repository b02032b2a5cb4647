"""Errors in the OpenAI API's shape - ``{"error": {"message", "type", "param", "code"}}`` - for every
route, with the status that says what went wrong. Nothing a client sends yields a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rejoinder.errors import (
    BattleNotFound,
    ConcurrentUpdate,
    ConfigError,
    ConversationNotFound,
    InvalidMessage,
    MessageNotFound,
    RejoinderError,
    UnknownBot,
)

log = logging.getLogger("rejoinder.server")

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
    500: "server_error",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}  # fmt: skip


def error_response(error: ApiError) -> JSONResponse:
    body = error_body(error.status, error.message, error.param, error.code)
    body["error"].update(error.extra)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def from_rejoinder(exc: RejoinderError) -> ApiError:
    """The API error for one of Rejoinder's own errors."""
    if isinstance(exc, UnknownBot):
        return ApiError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ConversationNotFound | MessageNotFound | BattleNotFound):
        return ApiError(404, str(exc), code="not_found")
    if isinstance(exc, ConcurrentUpdate):
        return ApiError(409, str(exc), code="conversation_busy")
    if isinstance(exc, InvalidMessage):
        text = str(exc)
        if "the limit is" in text or "too long for the model" in text:
            return ApiError(413, text, param="messages", code="message_too_long")
        return ApiError(400, text, param="messages", code="invalid_message")
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc), code="invalid_option")
    return ApiError(400, str(exc))


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RejoinderError)
    async def _ours(_: Request, exc: RejoinderError) -> JSONResponse:
        return error_response(from_rejoinder(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        if first.get("type") == "json_invalid":
            return error_response(
                ApiError(400, f"the body is not valid JSON: {first.get('msg', '')}", code="json_invalid")
            )
        where = _location(tuple(first.get("loc", ())))
        message = "; ".join(f"{_location(tuple(p.get('loc', ()))) or 'body'}: {p.get('msg')}" for p in problems[:5])
        return error_response(ApiError(400, message or "invalid request", param=where or None, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            message = "no such route"
        return error_response(ApiError(exc.status_code, message, headers=dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(ApiError(500, f"the server failed: {type(exc).__name__}", code="server_error"))
