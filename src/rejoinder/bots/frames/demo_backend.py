"""A small real HTTP backend for the example bots (bank, travel), served on loopback.

FastAPI endpoints that accept a filled frame as JSON and answer with a result; every request is
keyed by its ``Idempotency-Key`` header, and a repeated key returns the first answer without
doing the work again (``/_stats`` counts what was really done, for tests and the simulator).

A bot never trusts whatever happens to listen on a port: :func:`serve_in_background` binds the
port itself (port 0: one the system picks), serves there from a daemon thread of this process, and
checks that ``/_identity`` answers with the secret token it gave that server. A port held by
anything else is an error, not a backend.

    python -m rejoinder.bots.frames.demo_backend --port 8765
"""

import argparse
import hashlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from rejoinder.errors import ConfigError

SERVICE = "rejoinder-demo-backend"

BALANCES = {"savings": "8,020.00", "credit": "-312.45", "current": "1,254.30"}
ACCOUNT_WORDS = {"savings": ("saving", "сберегат", "накопит"), "credit": ("credit", "кредит")}


def account_kind(value: object) -> str:
    text = str(value).lower()
    for kind, words in ACCOUNT_WORDS.items():
        if any(word in text for word in words):
            return kind
    return "current"


def create_app(token: str | None = None) -> Any:
    """The demo backend's FastAPI app; ``/_identity`` answers with ``token`` (a random one by default)."""
    from fastapi import FastAPI, Header, HTTPException, Request

    token = token or secrets.token_hex(16)

    app = FastAPI(title="Rejoinder demo backend")
    done: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def once(key: str | None, work: str, make: Any) -> dict[str, Any]:
        with lock:
            if key and key in done:
                return done[key]
            result = make()
            counts[work] = counts.get(work, 0) + 1
            if key:
                done[key] = result
            return result

    def reference(prefix: str, body: dict[str, Any]) -> str:
        digest = hashlib.sha256(repr(sorted(body.get("slots", {}).items())).encode()).hexdigest()
        return f"{prefix}-{digest[:6].upper()}"

    @app.post("/bank/{task}")
    async def bank(task: str, request: Request, idempotency_key: str | None = Header(default=None)) -> dict[str, Any]:
        body = await request.json()
        slots = body.get("slots", {})
        if task == "balance":
            balance = BALANCES[account_kind(slots.get("account", "current"))]
            return once(idempotency_key, task, lambda: {"balance": balance})
        if task == "transfer_status":
            return once(idempotency_key, task, lambda: {"status": "completed on 2026-11-24", "reference": "TR"})
        if task in ("lost_card", "block_card", "dispute"):
            return once(idempotency_key, task, lambda: {"reference": reference(task[:2].upper(), body), "ok": True})
        raise HTTPException(status_code=404, detail=f"unknown task {task}")

    @app.post("/travel/book")
    async def travel(request: Request, idempotency_key: str | None = Header(default=None)) -> dict[str, Any]:
        body = await request.json()
        return once(idempotency_key, "book", lambda: {"booking": reference("TK", body), "price": "120 EUR"})

    @app.get("/_stats")
    def stats() -> dict[str, Any]:
        return {"done": dict(counts), "keys": len(done)}

    @app.get("/_identity")
    def identity() -> dict[str, str]:
        return {"service": SERVICE, "token": token}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class _Running:
    server: Any
    thread: threading.Thread
    port: int
    token: str


_SERVERS: dict[int, _Running] = {}
"""This process's demo backends by the port asked for (0 for "any") and by the port they hold."""
_LOCK = threading.Lock()
START_TIMEOUT_S = 10.0


def answers_as_ours(port: int, token: str, timeout_s: float = 2.0) -> bool:
    """Whether what listens on 127.0.0.1:port is the demo backend that was given ``token``."""
    import httpx

    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/_identity", timeout=timeout_s).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(answer, dict) and answer.get("service") == SERVICE and answer.get("token") == token


def serve_in_background(port: int = 0) -> int:
    """Serve the demo backend on 127.0.0.1:port from a daemon thread; return the port it holds.

    Port 0 takes one the system picks. One server per process and port: a later call gets the same
    server back once it has answered with its token again. A port that another process holds is
    refused with :class:`ConfigError`; a server that does not answer with its token in time too.
    """
    import uvicorn

    with _LOCK:
        running = _SERVERS.get(port)
        if running is not None and running.thread.is_alive() and answers_as_ours(running.port, running.token):
            return running.port
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does; a listener still blocks
        try:
            listener.bind(("127.0.0.1", port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"option demo_backend_port={port}: 127.0.0.1:{port} is taken ({exc.strerror}), and a port held by "
                "another process is never trusted as the demo backend; choose a free port, or 0 for any free one"
            ) from None
        actual = int(listener.getsockname()[1])
        token = secrets.token_hex(16)
        config = uvicorn.Config(create_app(token), host="127.0.0.1", port=actual, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name=f"demo-backend-{actual}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not (server.started and answers_as_ours(actual, token)):
            server.should_exit = True
            raise ConfigError(f"the demo backend on 127.0.0.1:{actual} did not start within {START_TIMEOUT_S:.0f} s")
        running = _Running(server, thread, actual, token)
        _SERVERS[port] = _SERVERS[actual] = running
        return actual


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
