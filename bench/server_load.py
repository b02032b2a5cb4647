"""Load on ``rejoinder serve``: many concurrent conversations across ELIZA, the bank bot, the
retrieval bot and the assistant over HTTP on loopback.

Each conversation is created through ``/api/conversations`` and sends ``--turns`` messages, all
conversations at once (one asyncio task each, one HTTP connection pool). Afterwards every
conversation is fetched back and checked: the user's messages in the order sent, each followed by
one reply (nothing lost, nothing misordered). Printed: errors, lost or misordered messages, p50/p99
latency of a turn per bot, and turns per second.

Bots: ``eliza``, ``bank`` (its NLU trained on first start, cached after), ``retrieval`` with the
hashing embedder (the MiniLM embeddings of its corpus take ~20 minutes on two cores in the
background, which would load the machine during the run), ``assistant`` (SmolLM2-135M-Instruct,
its default backend, ``max_new_tokens`` 32).

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/server_load.py [--conversations 50] [--turns 4]``
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from common import SHARED, WORK, percentile, print_table, write_record

LINES = {
    "eliza": ["I am sad", "My mother takes care of me", "I need some help", "Perhaps I could learn to get along",
              "You are not very aggressive", "Men are all alike"],
    "bank": ["I lost my card", "Block my card please", "What is my balance?", "I want to transfer money",
             "Hello", "Thanks, that is all"],
    "retrieval": ["Hi, how are you?", "What do you like to do?", "Do you have any pets?", "I love music",
                  "Where are you from?", "Good night"],
    "assistant": ["What is the capital of France?", "Give me a tip for sleeping better.", "Name a fruit.",
                  "Say hello in Spanish.", "What is 2 plus 2?", "Tell me a short joke."],
}  # fmt: skip
SHARES = {"eliza": 0.3, "bank": 0.3, "retrieval": 0.2, "assistant": 0.2}


def start_server(port: int, db: Path, log: Path) -> subprocess.Popen:
    config = WORK / "server-load.yaml"
    config.write_text(
        "bots:\n  - eliza\n  - bank\n  - {name: retrieval, bot: retrieval, options: {embedder: hashing}}\n"
        "  - {name: assistant, bot: assistant, options: {max_new_tokens: 32}}\n"
        "requests_per_minute: 100000\nstreams_per_caller: 1000\n",
        encoding="utf-8",
    )
    env = {**os.environ, "REJOINDER_DB_URL": f"sqlite:///{db}", "HF_HUB_OFFLINE": "1",
           "REJOINDER_SHARED_DATA": str(SHARED / "data")}  # fmt: skip
    command = [sys.executable, "-m", "rejoinder.cli", "serve", "--config", str(config), "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parents[1])  # fmt: skip


async def wait_ready(url: str, server: subprocess.Popen, timeout: float) -> float:
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.perf_counter() - started < timeout:
            if server.poll() is not None:
                raise SystemExit("the server exited; see bench/work/server-load.log")
            try:
                bots = (await client.get(url + "/api/bots")).json()["data"]
                if all(b["ready"] for b in bots):
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1)
    raise SystemExit("the bots did not become ready in time")


async def conversation(client: httpx.AsyncClient, bot: str, turns: int, rng: random.Random, out: dict) -> None:
    created = await client.post("/api/conversations", json={"bot": bot})
    if created.status_code != 201:
        out["errors"].append(f"{bot} create: {created.status_code} {created.text[:200]}")
        return
    cid = created.json()["id"]
    sent = []
    for _ in range(turns):
        text = rng.choice(LINES[bot])
        started = time.perf_counter()
        reply = await client.post(f"/api/conversations/{cid}/messages", json={"text": text})
        out["latency"][bot].append(time.perf_counter() - started)
        if reply.status_code != 200:
            out["errors"].append(f"{bot} turn: {reply.status_code} {reply.text[:200]}")
            continue
        sent.append(text)
    out["conversations"].append((cid, bot, sent))


async def check(client: httpx.AsyncClient, cid: str, sent: list[str]) -> int:
    """Messages lost or out of order in one conversation (0 when all is well)."""
    messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    while messages and messages[0]["role"] == "assistant":
        messages = messages[1:]  # the greeting
    users = [m["text"] for m in messages if m["role"] == "user"]
    roles = [m["role"] for m in messages]
    bad = sum(a != b for a, b in zip(users, sent, strict=False)) + abs(len(users) - len(sent))
    return bad + (roles != ["user", "assistant"] * len(sent))


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    db = WORK / "server-load.db"
    if db.exists() and args.fresh:
        db.unlink()
    url = f"http://127.0.0.1:{args.port}"
    server = start_server(args.port, db, WORK / "server-load.log")
    try:
        ready_s = await wait_ready(url, server, args.ready_timeout)
        rng = random.Random(args.seed)
        bots = [b for b, share in SHARES.items() for _ in range(round(share * args.conversations))]
        out: dict[str, Any] = {"errors": [], "latency": {b: [] for b in SHARES}, "conversations": []}
        limits = httpx.Limits(max_connections=args.conversations + 10, max_keepalive_connections=args.conversations)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
            started = time.perf_counter()
            await asyncio.gather(*(conversation(client, b, args.turns, random.Random(rng.random()), out) for b in bots))
            wall = time.perf_counter() - started
            bad = sum(await asyncio.gather(*(check(client, c, s) for c, _, s in out["conversations"])))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    turns = sum(len(v) for v in out["latency"].values())
    per_bot = {b: {"turns": len(v), "p50_s": round(percentile(v, 50), 3), "p99_s": round(percentile(v, 99), 3)}
               for b, v in out["latency"].items()}  # fmt: skip
    return {"conversations": len(bots), "turns": turns, "errors": len(out["errors"]), "error_examples":
            out["errors"][:5], "lost_or_misordered": bad, "wall_s": round(wall, 2), "turns_per_s":
            round(turns / wall, 2), "ready_s": round(ready_s, 1), "per_bot": per_bot}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ready-timeout", type=float, default=1800)
    parser.add_argument("--fresh", action="store_true", help="start from an empty database")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    rows = [[b, r["turns"], r["p50_s"], r["p99_s"]] for b, r in result["per_bot"].items()]
    print_table(f"{result['conversations']} concurrent conversations x {args.turns} turns over HTTP "
                f"({result['turns_per_s']} turns/s, {result['errors']} errors, {result['lost_or_misordered']} lost or "
                "misordered)", ["bot", "turns", "p50 s", "p99 s"], rows)  # fmt: skip
    write_record("server_load", {"args": vars(args), "result": result})


if __name__ == "__main__":
    main()
