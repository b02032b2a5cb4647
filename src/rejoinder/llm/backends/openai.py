"""Any OpenAI-compatible server (vLLM, llama.cpp's server, llama-cpp-python's server, a hosted API).

Streams ``/chat/completions`` and ``/completions`` over server-sent events with httpx. Stop
sequences are also applied on this side, so servers that ignore some of them still stop where the
caller asked. A JSON schema goes to the server as ``response_format`` (``json_schema``, strict,
as OpenAI, vLLM and llama.cpp's server take it; a server that refuses that form, such as
llama-cpp-python's, is asked again with ``{"type": "json_object", "schema": ...}``). The server's
``finish_reason`` says whether a reply was cut at the length limit; the tokens counted are the
streamed chunks (one token each on vLLM and llama.cpp's servers). A cancel is seen at the next
chunk, and the connection is closed then.
Token counts for fitting the history are estimated (about 3.5 characters per token plus the
template's few tokens per message); set ``context_window`` to the server model's window.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from rejoinder.dialogue import Cancel, FinishReason
from rejoinder.errors import ConfigError, RejoinderError
from rejoinder.llm.backends import Backend, JsonSchema, Messages
from rejoinder.llm.generation import GenerationParams, TextStream, Tokens, cut_at_stops

DEFAULT_CONTEXT = 4096


class ServerError(RejoinderError):
    """The server answered with an error or could not be reached."""


def _schema_refused(body: dict[str, Any], error: str) -> dict[str, Any] | None:
    """The request again with ``{"type": "json_object", "schema": ...}`` when a server refused the
    ``json_schema`` form of ``response_format`` (llama-cpp-python's takes only that one); else None."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") != "json_schema" or "response_format" not in error:
        return None
    schema = response_format["json_schema"]["schema"]
    return {**body, "response_format": {"type": "json_object", "schema": schema}}


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        context_window: int | None = None,
        timeout_s: float = 120.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--base-url {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10)
        )
        self.context_window = int(context_window or DEFAULT_CONTEXT)
        self.extra_body = dict(extra_body or {})
        self._schema_as_json_object = False  # set once a server refuses the json_schema form
        self.model_name = model or self._first_model()

    def _first_model(self) -> str:
        data = self._json("GET", "/models")
        models = [m.get("id") for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
        if not models:
            raise ServerError(f"{self.base_url}/models lists no model; name one with --model")
        return str(models[0])

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the OpenAI-compatible server at {self.base_url}: {exc}") from None
        if response.status_code >= 400:
            raise ServerError(f"{self.base_url}{path} answered {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{self.base_url}{path} did not answer JSON: {response.text[:200]!r}") from None

    def _body(self, params: GenerationParams, json_schema: JsonSchema | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "stream": True,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            body["stop"] = list(params.stop[:4])  # the API accepts up to four
        if params.seed is not None:
            body["seed"] = params.seed
        if json_schema is not None and self._schema_as_json_object:
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        elif json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": json_schema, "strict": True},
            }
        body.update(self.extra_body)  # e.g. {"repetition_penalty": 1.1, "top_k": 40} for vLLM
        return body

    def _events(self, path: str, body: dict[str, Any], cancel: Cancel | None) -> Iterator[dict[str, Any]]:
        import httpx

        try:
            with self.client.stream("POST", path, json=body) as response:
                retry = None
                if response.status_code >= 400:
                    response.read()
                    retry = _schema_refused(body, response.text)
                    if retry is None:
                        status = response.status_code
                        raise ServerError(f"{self.base_url}{path} answered {status}: {response.text[:300]}")
                else:
                    yield from self._lines(path, response, cancel)
            if retry is not None:  # the older form of a JSON schema, which llama-cpp-python's server takes
                self._schema_as_json_object = True
                yield from self._events(path, retry, cancel)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the OpenAI-compatible server at {self.base_url}: {exc}") from None

    def _lines(self, path: str, response: Any, cancel: Cancel | None) -> Iterator[dict[str, Any]]:
        """The events of a streamed response, up to ``[DONE]`` or a cancel."""
        for line in response.iter_lines():
            if cancel is not None and cancel.is_set:
                return
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except ValueError:
                raise ServerError(f"{self.base_url}{path} sent an event that is not JSON: {data[:200]!r}") from None
            if "error" in event:
                raise ServerError(f"{self.base_url}{path} reported: {event['error']}")
            yield event

    @staticmethod
    def _texts(events: Iterator[dict[str, Any]], key: str, cancel: Cancel | None) -> Tokens:
        """The text of each streamed choice, returning why the reply ended; closes the event stream."""
        reason: FinishReason = "stop"
        try:
            for event in events:
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if key == "delta" else choice.get("text")
                    if piece:
                        yield piece, None
                    if choice.get("finish_reason") == "length":
                        reason = "length"
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        return "cancelled" if cancel is not None and cancel.is_set else reason

    def stream_chat(
        self,
        messages: Messages,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        body = {**self._body(params, json_schema), "messages": [dict(m) for m in messages]}
        events = self._events("/chat/completions", body, cancel)
        return cut_at_stops(self._texts(events, "delta", cancel), params.stop)

    def stream_text(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        body = {**self._body(params, json_schema), "prompt": prompt}
        return cut_at_stops(self._texts(self._events("/completions", body, cancel), "text", cancel), params.stop)

    def count_chat_tokens(self, messages: Messages) -> int:
        return sum(4 + int(len(m.get("content", "")) / 3.5 + 1) for m in messages) + 3

    def describe(self) -> str:
        return f"{self.model_name} at {self.base_url} (OpenAI-compatible; context {self.context_window} tokens)"

    def close(self) -> None:
        self.client.close()
