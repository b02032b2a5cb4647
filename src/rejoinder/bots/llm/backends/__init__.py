"""Generation backends behind one interface.

Every backend streams text for a chat (a list of ``{"role", "content"}`` messages, formatted by
the model's own chat template) or for a raw prompt (base models), honours
:class:`~rejoinder.bots.llm.generation.GenerationParams` and stop sequences, and stops early when
its :class:`~rejoinder.bots.llm.generation.Cancel` is set or the caller stops reading.

- ``torch``: in-process transformers model (any local Hugging Face directory, or a GGUF file
  dequantised once and cached); concurrent requests share a batched decoding loop;
- ``llama.cpp``: ``llama-cpp-python`` (the optional ``llamacpp`` extra) running a GGUF file;
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) by base URL.

``auto`` picks llama.cpp when it is installed and the model is a GGUF file (fastest on a CPU),
otherwise PyTorch.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from rejoinder.bots.llm.generation import Cancel, GenerationParams
from rejoinder.errors import ConfigError

Messages = Sequence[dict[str, str]]

BACKENDS = ("auto", "torch", "llama.cpp", "openai")


class Backend(ABC):
    """A language model that streams text."""

    name: str = "backend"
    model_name: str = "model"
    context_window: int = 2048
    has_chat_template: bool = True

    @abstractmethod
    def stream_chat(self, messages: Messages, params: GenerationParams, cancel: Cancel | None = None) -> Iterator[str]:
        """The assistant's reply to ``messages``, in pieces."""

    @abstractmethod
    def stream_text(self, prompt: str, params: GenerationParams, cancel: Cancel | None = None) -> Iterator[str]:
        """The continuation of ``prompt`` (no chat template), in pieces."""

    @abstractmethod
    def count_chat_tokens(self, messages: Messages) -> int:
        """How many tokens ``messages`` take once formatted by the chat template."""

    def chat(self, messages: Messages, params: GenerationParams | None = None) -> str:
        return "".join(self.stream_chat(messages, params or GenerationParams()))

    def complete(self, prompt: str, params: GenerationParams | None = None) -> str:
        return "".join(self.stream_text(prompt, params or GenerationParams()))

    def describe(self) -> str:
        return f"{self.model_name} on {self.name} (context {self.context_window} tokens)"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model (threads, files)."""


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
    """The backend named ``backend`` serving ``model`` (a shipped model's name or a local path)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    dtype = options.pop("dtype", None)
    if dtype and backend not in ("torch", "auto"):
        raise ConfigError(f"dtype={dtype} applies to the torch backend, not {backend!r}")
    if backend == "openai" or (backend == "auto" and base_url):
        if not base_url:
            raise ConfigError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from rejoinder.bots.llm.backends.openai import OpenAIBackend

        return OpenAIBackend(base_url, model=model, api_key=api_key, context_window=context_window, **options)
    if base_url:
        raise ConfigError(f"--base-url is for the openai backend, not {backend!r}")
    from rejoinder.bots.llm.models import resolve_model

    ref = resolve_model(model)
    if backend == "auto":
        backend = "llama.cpp" if ref.is_gguf and llama_cpp_available() and not dtype else "torch"
    if backend == "llama.cpp":
        if not ref.is_gguf:
            raise ConfigError(f"the llama.cpp backend runs GGUF files; {ref.path} is a model directory")
        if not llama_cpp_available():
            raise ConfigError("the llama.cpp backend needs llama-cpp-python: pip install 'rejoinder[llamacpp]'")
        from rejoinder.bots.llm.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(ref, threads=threads, context_window=context_window, **options)
    from rejoinder.bots.llm.backends.torch import TorchBackend

    if dtype:
        options["dtype"] = dtype
    return TorchBackend(ref, threads=threads, context_window=context_window, **options)
