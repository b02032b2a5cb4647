"""The assistant bot: an instruction-following model answering in conversation.

Each turn the dialogue's messages become a chat (the system prompt first), formatted by the
model's own chat template. When the chat does not fit the context window with room for the
reply, the oldest turns are left out (the system prompt always stays); a single message too long
for the window is refused with a clear error. Replies stream token by token
(:meth:`AssistantBot.stream` returns the whole :class:`~rejoinder.dialogue.Reply` at the end, with
which model answered, how fast, and ``finish_reason``: ``length`` when ``max_new_tokens`` cut the
reply); setting the turn's Cancel from any thread (Ctrl-C in the terminal, a client that went
away) stops the generation within one decoding step. One bot serves any number of conversations
at once: nothing a turn produces is kept on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rejoinder.dialogue import (
    Cancel,
    Dialogue,
    FinishReason,
    Progress,
    ProgressFn,
    Readiness,
    Reply,
    ReplyPieces,
    collect,
)
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.llm.backends import BACKENDS, Backend, forget_shared, shared_backend
from rejoinder.llm.generation import Finish, GenerationParams
from rejoinder.llm.models import SHIPPED
from rejoinder.options import Option, declare

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, honest assistant. Answer clearly and briefly, in the language the user writes in."
)


def fit_history(
    system: str | None, turns: list[dict[str, str]], count: Any, budget: int
) -> tuple[list[dict[str, str]], int]:
    """The chat to send: the system prompt and as many of the latest ``turns`` as fit ``budget`` tokens.

    Turns are dropped from the oldest; the chat never starts with an assistant message. Returns the
    messages and how many turns were dropped. ``count`` gives the tokens of a list of messages.
    """
    head = [{"role": "system", "content": system}] if system else []
    start = 0
    while start < len(turns):
        kept = turns[start:]
        while kept and kept[0]["role"] != "user":
            kept = kept[1:]
        if kept and count(head + kept) <= budget:
            return head + kept, len(turns) - len(kept)
        start += 1
    last = turns[-1:] if turns else []
    needed = count(head + last) if last else 0
    raise InvalidMessage(
        f"the message is too long for the model: {needed} tokens with the system prompt, "
        f"and {budget} fit beside the reply"
    )


class AssistantBot:
    """Answers with a language model; see the module docstring.

    ``backend`` is a loaded backend, or a function that loads one: then building the bot costs
    nothing, and :meth:`prepare` (or the first turn) loads the model - converting it once on the
    first start.
    """

    def __init__(
        self,
        backend: Backend | Callable[[], Backend],
        *,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        params: GenerationParams | None = None,
        name: str = "assistant",
        greeting: str | None = None,
        model_label: str = "",
    ) -> None:
        self._backend: Backend | None = None
        self._load: Callable[[], Backend] | None = None
        if isinstance(backend, Backend):
            self._backend = self._checked(backend)
        else:
            self._load = backend
        self._loading = threading.Lock()
        self.model_label = model_label
        self.system_prompt = system_prompt or None
        self.params = params or GenerationParams()
        self.name = name
        self.greeting = greeting
        self.turn_options = frozenset({"max_tokens", "temperature", "top_p", "seed", "stop", "json_schema", "system"})
        self.stateless = True  # the state is the messages: a history is replayed without generating again

    @staticmethod
    def _checked(backend: Backend) -> Backend:
        if not backend.has_chat_template:
            raise ConfigError(
                f"model {backend.model_name} has no chat template (a base model); the assistant needs an "
                "instruct model - base models are for prompting with templates (rejoinder prompt)"
            )
        return backend

    # -- preparation: loading the model ------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The model's backend, loaded on first use if :meth:`prepare` did not load it."""
        if self._backend is None:
            self.prepare()
        assert self._backend is not None
        return self._backend

    def readiness(self) -> Readiness:
        if self._backend is not None:
            return Readiness(True, True, "model loaded")
        return Readiness(False, False, f"the model ({self.model_label or 'default'}) is not loaded yet")

    def prepare(self, progress: ProgressFn | None = None, cancel: Cancel | None = None) -> None:
        """Load the model (the first start of a GGUF model converts it once for PyTorch)."""
        with self._loading:
            if self._backend is not None or self._load is None:
                return
            if progress:
                progress(Progress("model", 0, 1, f"loading {self.model_label or 'the default model'}"))
            self._backend = self._checked(self._load())
            if progress:
                progress(Progress("model", 1, 1, self._backend.describe()))

    def describe(self) -> str:
        """Which model answers, on which backend (shown when a chat starts)."""
        return self.backend.describe()

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return Reply(self.greeting) if self.greeting else None

    def chat_messages(self, dialogue: Dialogue) -> tuple[list[dict[str, str]], int]:
        turns = [
            {"role": m.role, "content": m.text}
            for m in dialogue.messages
            if m.role in ("user", "assistant") and m.text and not _was_cancelled(m.meta)
        ]
        while turns and turns[0]["role"] == "assistant" and self.greeting and turns[0]["content"] == self.greeting:
            turns = turns[1:]
        params = self.turn_params(dialogue)
        budget = self.backend.context_window - params.max_new_tokens
        if budget < 16:
            raise ConfigError(
                f"max_new_tokens={params.max_new_tokens} leaves no room for the chat in a "
                f"{self.backend.context_window}-token context"
            )
        turn = dialogue.turn
        system = turn.system if turn is not None and turn.system is not None else self.system_prompt
        return fit_history(system or None, turns, self.backend.count_chat_tokens, budget)

    def turn_params(self, dialogue: Dialogue) -> GenerationParams:
        """The bot's sampling parameters with what this turn's request asks instead."""
        turn = dialogue.turn
        if turn is None:
            return self.params
        return self.params.with_(
            max_new_tokens=turn.max_tokens,
            temperature=turn.temperature,
            top_p=turn.top_p,
            seed=turn.seed,
            stop=(*self.params.stop, *turn.stop) if turn.stop else None,
        )

    def stream(self, dialogue: Dialogue, cancel: Cancel | None = None) -> ReplyPieces:
        """Yield the reply in pieces; return the Reply (see the module docstring)."""
        cancel = cancel or Cancel()
        messages, dropped = self.chat_messages(dialogue)
        started, first = time.perf_counter(), None
        pieces: list[str] = []
        finish = Finish("stop")
        schema = dialogue.turn.json_schema if dialogue.turn is not None else None
        extra = {"json_schema": schema} if schema is not None else {}
        source = self.backend.stream_chat(messages, self.turn_params(dialogue), cancel, **extra)
        try:
            while not cancel.is_set:
                try:
                    piece = next(source)
                except StopIteration as end:
                    finish = end.value if isinstance(end.value, Finish) else finish
                    break
                if cancel.is_set:
                    break  # the piece came after the cancel: it is not shown
                if first is None:
                    first = time.perf_counter() - started
                pieces.append(piece)
                yield piece
        finally:
            source.close()
        reason: FinishReason = "cancelled" if cancel.is_set else finish.reason
        meta = {
            "backend": self.backend.name,
            "model": self.backend.model_name,
            "dropped_turns": dropped,
            "first_piece_s": round(first, 3) if first is not None else None,
            "seconds": round(time.perf_counter() - started, 3),
            "tokens": finish.tokens,
            "prompt_tokens": self.backend.count_chat_tokens(messages),
            "finish_reason": reason,
        }
        return Reply("".join(pieces).strip(), meta=meta, finish_reason=reason)

    def respond(self, dialogue: Dialogue) -> Reply:
        return collect(self.stream(dialogue))

    def close(self) -> None:
        """Stop the backend's generations and join its threads (also done when the interpreter exits)."""
        if self._backend is not None:
            forget_shared(self._backend)
            self._backend.close()


def _was_cancelled(meta: dict[str, Any]) -> bool:
    """A reply that was stopped before its end (left out of later prompts)."""
    return bool(meta.get("cancelled")) or meta.get("finish_reason") == "cancelled"


@declare(
    Option("model", "model", "", "a local Hugging Face directory, a GGUF file, or a shipped model (default smollm2)",
           choices=tuple(SHIPPED)),
    Option("backend", "choice", "auto", "auto: llama.cpp for GGUF files when installed, else torch", choices=BACKENDS,
           client=False),
    Option("base_url", "url", "", "an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (backend openai)"),
    Option("system_prompt", "text", DEFAULT_SYSTEM_PROMPT, "the system prompt"),
    Option("temperature", "float", 0.6, "sampling temperature (0: greedy)", minimum=0, maximum=5),
    Option("top_p", "float", 0.9, "nucleus sampling: the smallest set of tokens reaching this probability",
           minimum=0, maximum=1),
    Option("top_k", "int", 0, "sample among the k likeliest tokens (0: off)", minimum=0),
    Option("repetition_penalty", "float", 1.1, "penalty on tokens already in the chat (1: off)", minimum=0.01,
           maximum=10),
    Option("max_new_tokens", "int", 256, "the longest reply, in tokens", minimum=1, maximum=32768),
    Option("stop", "text", "", "stop sequences, separated by |"),
    Option("seed", "int", None, "seed of the sampling (unset: a fresh draw every time)"),
    Option("threads", "int", None, "CPU threads of the in-process backends (default 1)", minimum=1, client=False),
    Option("context_window", "int", None, "tokens of context (default: the model's own)", minimum=32, client=False),
    Option("dtype", "choice", None, "torch backend: float32 (default) or bfloat16", choices=("float32", "bfloat16"),
           client=False),
)  # fmt: skip
def create(
    model: str = "",
    backend: str = "auto",
    base_url: str = "",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    temperature: float = 0.6,
    top_p: float = 0.9,
    top_k: int = 0,
    repetition_penalty: float = 1.1,
    max_new_tokens: int = 256,
    stop: str = "",
    seed: int | None = None,
    threads: int | None = None,
    context_window: int | None = None,
    dtype: str | None = None,
) -> AssistantBot:
    """An instruction-following LLM assistant (default: SmolLM2-135M-Instruct, in-process, offline).

    Building it is cheap: the model is loaded by ``prepare()`` (or on the first turn) and shared by
    every assistant with the same model and backend options. The API key of an OpenAI-compatible
    server comes from ``REJOINDER_API_KEY`` or ``OPENAI_API_KEY``, never from options (options are
    stored with the conversation)."""
    import os

    params = GenerationParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        stop=tuple(s for s in stop.split("|") if s),
        seed=seed,
    )
    spec = {
        "backend": backend,
        "model": model or None,
        "base_url": base_url or None,
        "api_key": os.environ.get("REJOINDER_API_KEY") or os.environ.get("OPENAI_API_KEY") or None,
        "threads": threads,
        "context_window": context_window,
        **({"dtype": dtype} if dtype else {}),
    }
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    label = base_url or model or "smollm2"
    return AssistantBot(lambda: shared_backend(**spec), system_prompt=system_prompt, params=params, model_label=label)
