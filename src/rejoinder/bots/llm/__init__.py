"""The instruction-following assistant: generation backends, prompting, the assistant bot.

- :mod:`.generation` - sampling parameters, stop sequences, cancellation, shared by every backend;
- :mod:`.models` - where models come from (the embedded SmolLM2, Gemma 3 270M, any local Hugging
  Face directory or GGUF file) and the cache of dequantised GGUF models;
- :mod:`.backends` - one interface over in-process PyTorch (with batched decoding of concurrent
  chats), llama.cpp and any OpenAI-compatible server;
- :mod:`.assistant` - the assistant bot: chat template, system prompt, history fitted to the
  context window, streaming;
- :mod:`.prompting` - zero- and few-shot prompt templates (data files in ``templates/``) run over
  JSONL inputs or scored on labelled data (``rejoinder prompt``).
"""
