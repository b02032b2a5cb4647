"""A small real HTTP backend for the example bots (bank, travel), served on loopback.

FastAPI endpoints that accept a filled frame as JSON and answer with a result; every request is
keyed by its ``Idempotency-Key`` header, and a repeated key returns the first answer without
doing the work again (``/_stats`` counts what was really done, for tests and the simulator).

    python -m rejoinder.bots.frames.demo_backend --port 8765
"""

import argparse
import hashlib
import socket
import threading
import time
from typing import Any

BALANCES = {"savings": "8,020.00", "credit": "-312.45", "current": "1,254.30"}
ACCOUNT_WORDS = {"savings": ("saving", "сберегат", "накопит"), "credit": ("credit", "кредит")}


def account_kind(value: object) -> str:
    text = str(value).lower()
    for kind, words in ACCOUNT_WORDS.items():
        if any(word in text for word in words):
            return kind
    return "current"


def create_app() -> Any:
    from fastapi import FastAPI, Header, HTTPException, Request

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

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


_SERVERS: dict[int, Any] = {}


def serve_in_background(port: int) -> int:
    """Start the demo backend on 127.0.0.1:port in a daemon thread (once per process); return the port."""
    import uvicorn

    if port in _SERVERS or port_open(port):
        return port
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"demo-backend-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    _SERVERS[port] = server
    return port


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
