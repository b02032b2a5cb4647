"""Continuous batching on llama.cpp: many conversations share each ``llama_decode`` call.

One thread owns a llama.cpp context with a key/value cache shared by up to ``max_batch``
sequences. A new request's prompt is decoded as its own sequence; from then on every step sends
one token per active sequence in a single batch, and each sequence samples with its own llama.cpp
sampler chain (repetition penalty, top-k, top-p, temperature, seeded draw - the native samplers
that ``llama-cpp-python`` itself uses). A finished or cancelled sequence frees its cache cells at
once and its slot goes to the next request.
"""

from __future__ import annotations

import codecs
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from rejoinder.bots.llm.generation import Cancel, GenerationParams

MAX_BATCH = 16
PROMPT_CHUNK = 512
POOL_CELLS = 16384
"""Cache cells shared by all sequences (a cell holds one token of one sequence)."""


def _quiet() -> Any:
    """Silences what llama.cpp prints on stderr while reading a file's metadata."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr

        return suppress_stdout_stderr(disable=False)
    except ImportError:  # pragma: no cover - older or newer llama-cpp-python
        import contextlib

        return contextlib.nullcontext()


class _Sequence:
    def __init__(self, tokens: Sequence[int], params: GenerationParams, cancel: Cancel) -> None:
        self.tokens = list(tokens)
        self.params = params
        self.cancel = cancel
        self.out: queue.Queue[Any] = queue.Queue()
        self.seq_id = -1
        self.position = 0
        self.next_token = 0
        self.generated = 0
        self.sampler: Any = None
        self.finished = False

    def finish(self, error: BaseException | None = None) -> None:
        if not self.finished:
            self.finished = True
            self.out.put(error)


class LlamaCppEngine:
    """Decodes up to ``max_batch`` sequences together on one llama.cpp model."""

    def __init__(self, llm: Any, *, threads: int, context_per_sequence: int, max_batch: int = MAX_BATCH) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        self.lib = llama_cpp
        self.llm = llm
        self.max_batch = max_batch
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = min(context_per_sequence * max_batch, POOL_CELLS)
        params.n_batch = PROMPT_CHUNK
        params.n_ubatch = PROMPT_CHUNK
        params.n_seq_max = max_batch
        params.n_threads = threads
        params.n_threads_batch = threads
        if hasattr(params, "kv_unified"):
            params.kv_unified = True  # one pool of cache cells: faster here than a stream per sequence
        with _quiet():  # llama.cpp notes that the pool is larger than one sequence's trained context
            self.ctx = LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = LlamaBatch(n_tokens=max(PROMPT_CHUNK, max_batch), embd=0, n_seq_max=1, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.n_vocab = llm.n_vocab()
        self._pieces: dict[int, bytes] = {}  # token -> its bytes, filled as tokens are first seen
        self.peak_batch = 0
        self.pending: queue.Queue[_Sequence] = queue.Queue()
        self.free_ids = list(range(max_batch))
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- the caller's side ------------------------------------------------------------------------
    def submit(self, tokens: Sequence[int], params: GenerationParams, cancel: Cancel) -> Iterator[int]:
        sequence = _Sequence(tokens, params, cancel)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rejoinder-llama-cpp", daemon=True)
                self._thread.start()
        self.pending.put(sequence)
        try:
            while True:
                item = sequence.out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if cancel.is_set:
                    return
                yield item
        finally:
            cancel.set()

    def stream_text(self, tokens: Sequence[int], params: GenerationParams, cancel: Cancel) -> Iterator[str]:
        """The continuation as text: each token's bytes through an incremental UTF-8 decoder."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces = self._pieces
        for token in self.submit(tokens, params, cancel):
            piece = pieces.get(token)
            if piece is None:
                piece = pieces[token] = self.llm.detokenize([token])
            text = decoder.decode(piece)
            if text:
                yield text
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest

    # -- the decoding thread ----------------------------------------------------------------------
    def _run(self) -> None:
        active: list[_Sequence] = []
        while True:
            try:
                self._admit(active)
                for sequence in [s for s in active if s.cancel.is_set]:
                    self._release(active, sequence)
                if active:
                    self._step(active)
            except Exception as exc:  # a llama.cpp error fails the sequences in flight, not the thread
                for sequence in list(active):
                    sequence.finish(exc)
                    self._release(active, sequence)

    def _sampler(self, params: GenerationParams) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if params.repetition_penalty != 1.0:
            penalties = lib.llama_sampler_init_penalties(self.n_vocab, 64, params.repetition_penalty, 0.0, 0.0)
            lib.llama_sampler_chain_add(chain, penalties)
        if params.temperature == 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        if params.top_k:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        seed = params.seed if params.seed is not None else 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: random
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    def _admit(self, active: list[_Sequence]) -> None:
        arrivals = []
        if not active:
            arrivals.append(self.pending.get())
        while len(active) + len(arrivals) < self.max_batch:
            try:
                arrivals.append(self.pending.get_nowait())
            except queue.Empty:
                break
        for sequence in arrivals:
            if sequence.cancel.is_set:
                sequence.finish()
                continue
            try:
                sequence.seq_id = self.free_ids.pop()
                sequence.sampler = self._sampler(sequence.params)
                for start in range(0, len(sequence.tokens), PROMPT_CHUNK):
                    chunk = sequence.tokens[start : start + PROMPT_CHUNK]
                    self._fill(((t, start + i, sequence.seq_id, False) for i, t in enumerate(chunk)), len(chunk))
                    self.batch.batch.logits[len(chunk) - 1] = start + len(chunk) == len(sequence.tokens)
                    self.ctx.decode(self.batch)
                sequence.position = len(sequence.tokens)
                token = self.lib.llama_sampler_sample(sequence.sampler, self.ctx.ctx, len(chunk) - 1)
            except Exception as exc:
                sequence.finish(exc)
                self._release([], sequence)
                continue
            active.append(sequence)
            if self._emit(sequence, token):
                self._release(active, sequence)

    def _fill(self, entries: Any, count: int) -> None:
        batch = self.batch.batch
        batch.n_tokens = count
        for i, (token, position, seq_id, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.seq_id[i][0] = seq_id
            batch.n_seq_id[i] = 1
            batch.logits[i] = logits

    def _step(self, active: list[_Sequence]) -> None:
        self.peak_batch = max(self.peak_batch, len(active))
        self._fill(((s.next_token, s.position, s.seq_id, True) for s in active), len(active))
        self.ctx.decode(self.batch)
        done = []
        for i, sequence in enumerate(active):
            sequence.position += 1
            token = self.lib.llama_sampler_sample(sequence.sampler, self.ctx.ctx, i)
            if self._emit(sequence, token):
                done.append(sequence)
        for sequence in done:
            self._release(active, sequence)

    def _emit(self, sequence: _Sequence, token: int) -> bool:
        """Hand ``token`` to the reader; True when the sequence is finished."""
        sequence.generated += 1
        sequence.next_token = token
        if self.lib.llama_vocab_is_eog(self.vocab, token):
            sequence.finish()
            return True
        sequence.out.put(token)
        if sequence.generated >= sequence.params.max_new_tokens or sequence.cancel.is_set:
            sequence.finish()
            return True
        return False

    def _release(self, active: list[_Sequence], sequence: _Sequence) -> None:
        sequence.finish()
        if sequence in active:
            active.remove(sequence)
        if sequence.seq_id >= 0:
            self.ctx.kv_cache_seq_rm(sequence.seq_id, -1, -1)
            self.free_ids.append(sequence.seq_id)
            sequence.seq_id = -1
        if sequence.sampler is not None:
            self.lib.llama_sampler_free(sequence.sampler)
            sequence.sampler = None
