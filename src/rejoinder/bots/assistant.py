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

import time
from typing import Any

from rejoinder.dialogue import Cancel, Dialogue, FinishReason, Reply, ReplyPieces, collect
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.llm.backends import Backend, load_backend
from rejoinder.llm.generation import Finish, GenerationParams

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
    """Answers with a language model; see the module docstring."""

    def __init__(
        self,
        backend: Backend,
        *,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        params: GenerationParams | None = None,
        name: str = "assistant",
        greeting: str | None = None,
    ) -> None:
        if not backend.has_chat_template:
            raise ConfigError(
                f"model {backend.model_name} has no chat template (a base model); the assistant needs an "
                "instruct model - base models are for prompting with templates (rejoinder prompt)"
            )
        self.backend = backend
        self.system_prompt = system_prompt or None
        self.params = params or GenerationParams()
        self.name = name
        self.greeting = greeting

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
        budget = self.backend.context_window - self.params.max_new_tokens
        if budget < 16:
            raise ConfigError(
                f"max_new_tokens={self.params.max_new_tokens} leaves no room for the chat in a "
                f"{self.backend.context_window}-token context"
            )
        return fit_history(self.system_prompt, turns, self.backend.count_chat_tokens, budget)

    def stream(self, dialogue: Dialogue, cancel: Cancel | None = None) -> ReplyPieces:
        """Yield the reply in pieces; return the Reply (see the module docstring)."""
        cancel = cancel or Cancel()
        messages, dropped = self.chat_messages(dialogue)
        started, first = time.perf_counter(), None
        pieces: list[str] = []
        finish = Finish("stop")
        source = self.backend.stream_chat(messages, self.params, cancel)
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
            "finish_reason": reason,
        }
        return Reply("".join(pieces).strip(), meta=meta, finish_reason=reason)

    def respond(self, dialogue: Dialogue) -> Reply:
        return collect(self.stream(dialogue))

    def close(self) -> None:
        """Stop the backend's generations and join its threads (also done when the interpreter exits)."""
        self.backend.close()


def _was_cancelled(meta: dict[str, Any]) -> bool:
    """A reply that was stopped before its end (left out of later prompts)."""
    return bool(meta.get("cancelled")) or meta.get("finish_reason") == "cancelled"


def create(
    model: str = "",
    backend: str = "auto",
    base_url: str = "",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    temperature: float | str = 0.6,
    top_p: float | str = 0.9,
    top_k: int | str = 0,
    repetition_penalty: float | str = 1.1,
    max_new_tokens: int | str = 256,
    stop: str = "",
    seed: int | str = "",
    threads: int | str = "",
    context_window: int | str = "",
    dtype: str = "",
) -> AssistantBot:
    """An instruction-following LLM assistant (default: SmolLM2-135M-Instruct, in-process, offline).

    The API key of an OpenAI-compatible server comes from ``REJOINDER_API_KEY`` or ``OPENAI_API_KEY``,
    never from options (options are stored with the conversation)."""
    import os

    from rejoinder.bots import as_number

    params = GenerationParams(
        max_new_tokens=as_number("max_new_tokens", max_new_tokens, int),
        temperature=as_number("temperature", temperature, float),
        top_p=as_number("top_p", top_p, float),
        top_k=as_number("top_k", top_k, int),
        repetition_penalty=as_number("repetition_penalty", repetition_penalty, float),
        stop=tuple(s for s in str(stop).split("|") if s) if stop else (),
        seed=as_number("seed", seed, int) if str(seed) != "" else None,
    )
    loaded = load_backend(
        backend,
        model=model or None,
        base_url=base_url or None,
        api_key=os.environ.get("REJOINDER_API_KEY") or os.environ.get("OPENAI_API_KEY") or None,
        threads=as_number("threads", threads, int) if str(threads) != "" else None,
        context_window=as_number("context_window", context_window, int) if str(context_window) != "" else None,
        **({"dtype": dtype} if dtype else {}),
    )
    return AssistantBot(loaded, system_prompt=system_prompt, params=params)
