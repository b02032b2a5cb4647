"""llama.cpp through ``llama-cpp-python`` (the ``llamacpp`` extra): fast CPU inference of GGUF files.

The chat template is the one stored in the GGUF file; a file without one (a base model) serves
raw prompts only. Every generation goes through :class:`LlamaCppEngine`, which decodes concurrent
requests together (continuous batching); a JSON schema becomes a GBNF grammar (llama-cpp-python's
converter) that the engine's sampler chain applies first. The ``llama_cpp.Llama`` object only
loads the model and tokenizes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Sequence
from typing import Any

from rejoinder.dialogue import Cancel, FinishReason
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.llm.backends import DEFAULT_THREADS, Backend, JsonSchema, Messages
from rejoinder.llm.backends.llamacpp_batch import MAX_BATCH, LlamaCppEngine, _quiet
from rejoinder.llm.constrained import schema_key
from rejoinder.llm.generation import GenerationParams, TextStream, cut_at_stops
from rejoinder.llm.models import ModelRef

MAX_CONTEXT = 8192
LOADER_CONTEXT = 64
"""Context of the ``Llama`` object itself, which decodes nothing (the engine has its own)."""


class LlamaCppBackend(Backend):
    """A GGUF model in llama.cpp; ``threads`` defaults to :data:`DEFAULT_THREADS`."""

    name = "llama.cpp"

    def __init__(
        self,
        ref: ModelRef,
        *,
        threads: int | None = None,
        context_window: int | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        from llama_cpp import Llama

        self.threads = int(threads or DEFAULT_THREADS)
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
                    n_ctx=LOADER_CONTEXT,
                    n_batch=LOADER_CONTEXT,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"model {ref.path}: llama.cpp cannot load it: {exc}") from None
        self.model_name = ref.name
        self.context_window = n_ctx
        self.engine = LlamaCppEngine(self.llm, threads=self.threads, context_per_sequence=n_ctx, max_batch=max_batch)
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.has_chat_template = bool(template)
        self._formatter: Any = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            vocab = self.llm
            eos = vocab.detokenize([vocab.token_eos()]).decode("utf-8", "ignore")
            bos = vocab.detokenize([vocab.token_bos()]).decode("utf-8", "ignore") if vocab.token_bos() >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._grammars: dict[str, str] = {}
        self._lock = threading.Lock()

    def chat_prompt(self, messages: Messages) -> str:
        """``messages`` formatted by the model's chat template, ready to complete."""
        if self._formatter is None:
            raise ConfigError(
                f"model {self.model_name} has no chat template (a base model): prompt it with a template "
                "(rejoinder prompt) or use an instruct model"
            )
        return self._formatter(messages=[dict(m) for m in messages]).prompt

    def tokenize(self, prompt: str) -> list[int]:
        return self.llm.tokenize(prompt.encode(), add_bos=True, special=True)

    def count_chat_tokens(self, messages: Messages) -> int:
        return len(self.llm.tokenize(self.chat_prompt(messages).encode(), add_bos=False, special=True))

    def stream_chat(
        self,
        messages: Messages,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        return self.stream_text(self.chat_prompt(messages), params, cancel, json_schema=json_schema)

    def stream_text(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        tokens = self.tokenize(prompt)
        limited = self._limited(params, len(tokens))
        grammar = self._grammar(json_schema) if json_schema is not None else None
        return cut_at_stops(self.engine.stream_text(tokens, limited, cancel or Cancel(), grammar), params.stop)

    def stream_ids(
        self, ids: Sequence[int], params: GenerationParams, cancel: Cancel | None = None
    ) -> Generator[int, None, FinishReason]:
        """Token ids of the continuation of ``ids`` (stop sequences are text: not applied here)."""
        return self.engine.submit(ids, self._limited(params, len(ids)), cancel or Cancel())

    def close(self) -> None:
        self.engine.close()

    def _limited(self, params: GenerationParams, prompt_tokens: int) -> GenerationParams:
        room = self.context_window - prompt_tokens
        if room < 1:
            raise InvalidMessage(
                f"the prompt takes {prompt_tokens} tokens; {self.model_name} reads at most {self.context_window}"
            )
        return params.with_(max_new_tokens=min(params.max_new_tokens, room))

    def _grammar(self, json_schema: JsonSchema) -> str:
        """The GBNF grammar of ``json_schema`` (converted once per schema)."""
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        key = schema_key(json_schema)
        with self._lock:
            grammar = self._grammars.get(key)
            if grammar is None:
                try:
                    grammar = json_schema_to_gbnf(json.dumps(json_schema))
                except Exception as exc:  # the converter raises plain exceptions for what it cannot do
                    raise ConfigError(f"JSON schema: llama.cpp cannot turn it into a grammar: {exc}") from None
                self._grammars[key] = grammar
            return grammar

    def describe(self) -> str:
        threads = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        return f"{self.model_name} on llama.cpp ({threads}, context {self.context_window} tokens)"
