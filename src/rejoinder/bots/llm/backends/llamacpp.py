"""llama.cpp through ``llama-cpp-python`` (the ``llamacpp`` extra): fast CPU inference of GGUF files.

The chat template is the one stored in the GGUF file; a file without one (a base model) serves
raw prompts only. Chats and completions go through :class:`LlamaCppEngine`, which decodes
concurrent requests together (continuous batching); grammar-constrained calls use the plain
``llama_cpp.Llama`` object, one at a time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from rejoinder.bots.llm.backends import Backend, Messages
from rejoinder.bots.llm.backends.llamacpp_batch import MAX_BATCH, LlamaCppEngine, _quiet
from rejoinder.bots.llm.generation import Cancel, GenerationParams, cut_at_stops
from rejoinder.bots.llm.models import ModelRef
from rejoinder.errors import ConfigError, InvalidMessage

MAX_CONTEXT = 8192
SINGLE_CONTEXT = 4096
"""Context of the unbatched llama.cpp path (grammar-constrained calls); chats go through the batched engine."""


def default_threads() -> int:
    """Half the cores (at least one): llama.cpp collapses when another process holds a core it uses."""
    return max(1, (os.cpu_count() or 2) // 2)


class LlamaCppBackend(Backend):
    name = "llama.cpp"

    def __init__(
        self,
        ref: ModelRef,
        *,
        threads: int | None = None,
        context_window: int | None = None,
        batching: bool = True,
        max_batch: int = MAX_BATCH,
    ) -> None:
        from llama_cpp import Llama

        self.threads = int(threads or default_threads())
        try:
            with _quiet():
                probe = Llama(model_path=str(ref.path), vocab_only=True, verbose=False)
            trained = int(
                probe.metadata.get(f"{probe.metadata.get('general.architecture', '')}.context_length", 0) or 0
            )
            del probe
            n_ctx = min(int(context_window or trained or MAX_CONTEXT), trained or MAX_CONTEXT, MAX_CONTEXT)
            with _quiet():
                self.llm = Llama(
                    model_path=str(ref.path),
                    n_ctx=min(n_ctx, SINGLE_CONTEXT) if batching else n_ctx,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"model {ref.path}: llama.cpp cannot load it: {exc}") from None
        self.model_name = ref.name
        self.context_window = n_ctx
        self.engine = (
            LlamaCppEngine(self.llm, threads=self.threads, context_per_sequence=n_ctx, max_batch=max_batch)
            if batching
            else None
        )
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.has_chat_template = bool(template)
        self._formatter: Any = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            vocab = self.llm
            eos = vocab.detokenize([vocab.token_eos()]).decode("utf-8", "ignore")
            bos = vocab.detokenize([vocab.token_bos()]).decode("utf-8", "ignore") if vocab.token_bos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._lock = threading.Lock()

    def _chat_prompt(self, messages: Messages) -> str:
        if self._formatter is None:
            raise ConfigError(
                f"model {self.model_name} has no chat template (a base model): prompt it with a template "
                "(rejoinder prompt) or use an instruct model"
            )
        return self._formatter(messages=[dict(m) for m in messages]).prompt

    def count_chat_tokens(self, messages: Messages) -> int:
        return len(self.llm.tokenize(self._chat_prompt(messages).encode(), add_bos=False, special=True))

    def _options(self, params: GenerationParams, prompt_tokens: int) -> dict[str, Any]:
        room = self.context_window - prompt_tokens
        if room < 1:
            raise InvalidMessage(
                f"the prompt takes {prompt_tokens} tokens; {self.model_name} reads at most {self.context_window}"
            )
        return {
            "max_tokens": min(params.max_new_tokens, room),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "repeat_penalty": params.repetition_penalty,
            "seed": params.seed if params.seed is not None else -1,
        }

    def stream_chat(self, messages: Messages, params: GenerationParams, cancel: Cancel | None = None) -> Iterator[str]:
        prompt = self._chat_prompt(messages)
        return self._run(prompt, params, cancel)

    def stream_text(self, prompt: str, params: GenerationParams, cancel: Cancel | None = None) -> Iterator[str]:
        return self._run(prompt, params, cancel)

    def _run(self, prompt: str, params: GenerationParams, cancel: Cancel | None) -> Iterator[str]:
        tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
        options = self._options(params, len(tokens))
        if self.engine is None:
            return self._generate(tokens, options, params.stop, cancel)
        limited = params.with_(max_new_tokens=options["max_tokens"])
        return cut_at_stops(self.engine.stream_text(tokens, limited, cancel or Cancel()), params.stop)

    def _generate(
        self, tokens: list[int], options: dict[str, Any], stops: tuple[str, ...], cancel: Cancel | None
    ) -> Iterator[str]:
        return cut_at_stops(self._completion(tokens, options, cancel), stops)

    def _completion(self, tokens: list[int], options: dict[str, Any], cancel: Cancel | None) -> Iterator[str]:
        """One completion on the unbatched model object, which serves one caller at a time."""
        with self._lock:
            stream = self.llm.create_completion(tokens, stream=True, **options)
            try:
                for chunk in stream:
                    if cancel is not None and cancel.is_set:
                        return
                    yield chunk["choices"][0]["text"]
            finally:
                stream.close()

    def describe(self) -> str:
        threads = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        return f"{self.model_name} on llama.cpp ({threads}, context {self.context_window} tokens)"
