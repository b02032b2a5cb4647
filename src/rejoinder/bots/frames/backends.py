"""Submitting a filled frame: over HTTP (httpx) or to a Python callable.

A submission carries an idempotency key derived from the conversation, the frame instance and
its values, sent as the ``Idempotency-Key`` header and in the body. The bot remembers the
outcome under that key in the dialogue state, so a repeated confirmation ("yes", "yes") is
answered from memory; a retried request (after a timeout or a 5xx) reuses the key, so a backend
that honours it never books twice. Retries back off exponentially (0.2 s, 0.4 s, 0.8 s, ...).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rejoinder.bots.frames.schema import Submit
from rejoinder.errors import ConfigError

BACKOFF_S = 0.2


@dataclass
class Outcome:
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "result": self.result, "error": self.error, "attempts": self.attempts}


def idempotency_key(conversation_id: str | None, frame: str, instance: int, values: dict[str, Any]) -> str:
    payload = json.dumps([conversation_id, frame, instance, values], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def submit(
    spec: Submit, frame: str, values: dict[str, Any], key: str, *, sleep: Callable[[float], None] = time.sleep
) -> Outcome:
    """Send a filled frame to its backend; never raises for backend failures (see ``Outcome.error``)."""
    body = {"frame": frame, "slots": values, "idempotency_key": key}
    if spec.callable:
        return _call(spec.callable, body)
    return _http(spec, body, key, sleep)


def _call(target: str, body: dict[str, Any]) -> Outcome:
    module_name, _, attr = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"submit.callable {target!r} cannot be imported: {exc}") from None
    try:
        result = function(body)
    except Exception as exc:  # the backend's own failure is reported to the user, not raised
        return Outcome(False, error=f"{type(exc).__name__}: {exc}", attempts=1)
    return Outcome(True, result if isinstance(result, dict) else {"value": result}, attempts=1)


def _http(spec: Submit, body: dict[str, Any], key: str, sleep: Callable[[float], None]) -> Outcome:
    import httpx

    headers = {"Idempotency-Key": key, **spec.headers}
    error = "no attempt made"
    for attempt in range(1, spec.retries + 2):
        try:
            with httpx.Client(timeout=spec.timeout_s) as client:
                if spec.method == "GET":
                    response = client.get(spec.url, params={"frame": body["frame"], **body["slots"]}, headers=headers)
                else:
                    response = client.request(spec.method, spec.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 500:
                try:
                    result = response.json()
                except ValueError:
                    result = {"text": response.text}
                if response.is_success:
                    return Outcome(True, result if isinstance(result, dict) else {"value": result}, attempts=attempt)
                # 4xx: the request itself is wrong; retrying will not help.
                return Outcome(
                    False, result if isinstance(result, dict) else {}, f"HTTP {response.status_code}", attempt
                )
            error = f"HTTP {response.status_code}"
        if attempt <= spec.retries:
            sleep(BACKOFF_S * 2 ** (attempt - 1))
    return Outcome(False, error=error, attempts=spec.retries + 1)
