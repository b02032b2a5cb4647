"""Generation backends behind one interface.

Every backend streams text for a chat (a list of ``{"role", "content"}`` messages, formatted by
the model's own chat template) or for a raw prompt (base models) as a
:data:`~rejoinder.llm.generation.TextStream` that returns a :class:`~rejoinder.llm.generation.Finish`
(``stop``, ``length`` or ``cancelled``, and the tokens made); honours
:class:`~rejoinder.llm.generation.GenerationParams` and stop sequences; stops within one decoding
step when its :class:`~rejoinder.dialogue.Cancel` is set, from any thread, or the caller stops
reading; and, given ``json_schema``, writes only a JSON document of that schema (constrained
decoding: a token mask on PyTorch, a JSON-schema grammar on llama.cpp, ``response_format`` on
servers). :meth:`Backend.close` stops and joins the backend's threads; a backend that owns
threads also closes itself when the interpreter exits, so a process can end at any moment.

``threads`` (PyTorch and llama.cpp) defaults to :data:`DEFAULT_THREADS`: one thread never
collapses when another process holds a core, while two do (see the README's figures).

- ``torch``: in-process transformers model (any local Hugging Face directory, or a GGUF file
  dequantised once and cached); concurrent requests share a batched decoding loop;
- ``llama.cpp``: ``llama-cpp-python`` (the optional ``llamacpp`` extra) running a GGUF file;
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) by base URL.

``auto`` picks llama.cpp when it is installed and the model is a GGUF file (fastest on a CPU),
otherwise PyTorch.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from rejoinder.dialogue import Cancel
from rejoinder.errors import ConfigError
from rejoinder.llm.generation import GenerationParams, TextStream, drain

Messages = Sequence[dict[str, str]]
JsonSchema = dict[str, Any]

BACKENDS = ("auto", "torch", "llama.cpp", "openai")
DEFAULT_THREADS = 1
"""Threads of the in-process backends unless ``threads`` says otherwise (see the module docstring)."""


class Backend(ABC):
    """A language model that streams text."""

    name: str = "backend"
    model_name: str = "model"
    context_window: int = 2048
    has_chat_template: bool = True

    @abstractmethod
    def stream_chat(
        self,
        messages: Messages,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        """The assistant's reply to ``messages``, in pieces; returns how it ended.

        ``json_schema``: the reply is a JSON document of this schema. ``logprobs``: the Finish
        carries each token's log-probability where the backend can tell (PyTorch).
        """

    @abstractmethod
    def stream_text(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        """The continuation of ``prompt`` (no chat template), in pieces; returns how it ended."""

    @abstractmethod
    def count_chat_tokens(self, messages: Messages) -> int:
        """How many tokens ``messages`` take once formatted by the chat template."""

    def chat(
        self, messages: Messages, params: GenerationParams | None = None, *, json_schema: JsonSchema | None = None
    ) -> str:
        """The whole reply to ``messages``."""
        return drain(self.stream_chat(messages, params or GenerationParams(), json_schema=json_schema))[0]

    def complete(
        self, prompt: str, params: GenerationParams | None = None, *, json_schema: JsonSchema | None = None
    ) -> str:
        """The whole continuation of ``prompt``."""
        return drain(self.stream_text(prompt, params or GenerationParams(), json_schema=json_schema))[0]

    def describe(self) -> str:
        return f"{self.model_name} on {self.name} (context {self.context_window} tokens)"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop any generation in flight, join the backend's threads and release the model."""


_OPEN: weakref.WeakSet[Any] = weakref.WeakSet()
_OPEN_LOCK = threading.Lock()
_HOOKED = False


def close_at_exit(engine: Any) -> None:
    """Close ``engine`` (anything with ``close()``: a decoding loop's owner) when the interpreter exits.

    A decoding thread still inside PyTorch or llama.cpp while the interpreter tears down aborts the
    process (``terminate called without an active exception``); closing joins it first. Engines
    are held weakly: one collected before the exit is simply gone.
    """
    global _HOOKED
    with _OPEN_LOCK:
        _OPEN.add(engine)
        if not _HOOKED:
            atexit.register(_close_open)
            _HOOKED = True


def _close_open() -> None:
    for engine in list(_OPEN):
        engine.close()


_SHARED: dict[str, Backend] = {}
_SHARED_LOCK = threading.Lock()


def shared_backend(**spec: Any) -> Backend:
    """The process's one backend for ``spec`` (the arguments of :func:`load_backend`), loaded on first use.

    Bots that differ only in how they sample (temperature, system prompt, length) share one model
    and its decoding loop this way, so their conversations are decoded together.
    """
    key = json.dumps(spec, sort_keys=True, default=str)
    with _SHARED_LOCK:
        backend = _SHARED.get(key)
        if backend is None:
            backend = _SHARED[key] = load_backend(**spec)
        return backend


def forget_shared(backend: Backend) -> None:
    """Drop ``backend`` from the shared ones (it was closed)."""
    with _SHARED_LOCK:
        for key in [k for k, v in _SHARED.items() if v is backend]:
            del _SHARED[key]


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def load_backend(
    backend: str = "auto",
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    threads: int | None = None,
    context_window: int | None = None,
    **options: Any,
) -> Backend:
    """The backend named ``backend`` serving ``model`` (a shipped model's name or a local path).

    ``threads`` (PyTorch, llama.cpp): how many CPU threads decode; :data:`DEFAULT_THREADS` when None.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    dtype = options.pop("dtype", None)
    if dtype and backend not in ("torch", "auto"):
        raise ConfigError(f"dtype={dtype} applies to the torch backend, not {backend!r}")
    if backend == "openai" or (backend == "auto" and base_url):
        if not base_url:
            raise ConfigError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from rejoinder.llm.backends.openai import OpenAIBackend

        return OpenAIBackend(base_url, model=model, api_key=api_key, context_window=context_window, **options)
    if base_url:
        raise ConfigError(f"--base-url is for the openai backend, not {backend!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads={threads}: expected at least 1")
    from rejoinder.llm.models import resolve_model

    ref = resolve_model(model)
    if backend == "auto":
        backend = "llama.cpp" if ref.is_gguf and llama_cpp_available() and not dtype else "torch"
    if backend == "llama.cpp":
        if not ref.is_gguf:
            raise ConfigError(f"the llama.cpp backend runs GGUF files; {ref.path} is a model directory")
        if not llama_cpp_available():
            raise ConfigError("the llama.cpp backend needs llama-cpp-python: pip install 'rejoinder[llamacpp]'")
        from rejoinder.llm.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(ref, threads=threads, context_window=context_window, **options)
    from rejoinder.llm.backends.torch import TorchBackend

    if dtype:
        options["dtype"] = dtype
    return TorchBackend(ref, threads=threads, context_window=context_window, **options)
