"""Language models for every part of Rejoinder: generation backends, constrained decoding, prompting.

The bots (the assistant, the frame bot's LLM NLU and question wording), the ``prompt`` command and
the benchmarks all use the same pieces:

- :mod:`.generation` - sampling parameters, stop sequences, and how a generation ended
  (:class:`~.generation.Finish`: ``stop``, ``length`` or ``cancelled``, tokens, log-probabilities);
- :mod:`.models` - where models come from (the embedded SmolLM2, Gemma 3 270M, any local Hugging
  Face directory or GGUF file) and the cache of dequantised GGUF models;
- :mod:`.backends` - one interface over in-process PyTorch (with batched decoding of concurrent
  chats and reuse of recent prompts' caches), llama.cpp and any OpenAI-compatible server, each
  able to write only JSON of a given schema;
- :mod:`.constrained` - the JSON-schema automaton and token mask that constrain PyTorch's decoding;
- :mod:`.prompting` - zero- and few-shot prompt templates (data files in ``templates/``) run over
  JSONL inputs or scored on labelled data (``rejoinder prompt``).
"""
