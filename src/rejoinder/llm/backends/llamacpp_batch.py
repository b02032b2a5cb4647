"""Continuous batching on llama.cpp: many conversations share each ``llama_decode`` call.

One thread owns a llama.cpp context with a key/value cache shared by up to ``max_batch``
sequences. A new request's prompt is decoded as its own sequence; from then on every step sends
one token per active sequence in a single batch, and each sequence samples with its own llama.cpp
sampler chain (repetition penalty, top-k, top-p, temperature, seeded draw - the native samplers
that ``llama-cpp-python`` itself uses; with a JSON schema, llama.cpp's grammar sampler first, so
only tokens that keep the output inside the schema can be drawn). A finished sequence keeps its
prompt's cells (what it generated is dropped): a later prompt that begins the same way - the next
turn of a chat, the frame bot's NLU with its long constant prompt - takes over that sequence and
decodes only the rest. Kept prompts give way, oldest first, when ids or cells run short. A
sequence stops at the next step once its Cancel is set or its reader goes away, and
:meth:`LlamaCppEngine.close` (also run when the interpreter exits) ends the decoding thread.
"""

from __future__ import annotations

import codecs
import queue
import threading
from collections import OrderedDict
from collections.abc import Generator, Sequence
from typing import Any

from rejoinder.dialogue import Cancel, FinishReason
from rejoinder.errors import RejoinderError
from rejoinder.llm.backends import close_at_exit
from rejoinder.llm.generation import GenerationParams, SequenceState, Tokens, take_arrivals

MAX_BATCH = 16
PROMPT_CHUNK = 512
POOL_CELLS = 16384
"""Cache cells shared by all sequences (a cell holds one token of one sequence)."""
JOIN_TIMEOUT_S = 30.0
MIN_PREFIX = 16
"""Shared tokens below which a kept prompt is not worth reusing."""


def _quiet() -> Any:
    """Silences what llama.cpp prints on stderr while reading a file's metadata."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr

        return suppress_stdout_stderr(disable=False)
    except ImportError:  # pragma: no cover - older or newer llama-cpp-python
        import contextlib

        return contextlib.nullcontext()


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _Sequence(SequenceState):
    def __init__(self, tokens: Sequence[int], params: GenerationParams, cancel: Cancel, grammar: str | None) -> None:
        super().__init__(params, cancel)
        self.tokens = list(tokens)
        self.grammar = grammar
        self.seq_id = -1
        self.position = 0
        self.sampler: Any = None


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
        self.pending: queue.Queue[_Sequence | None] = queue.Queue()
        self.free_ids = list(range(max_batch))
        self.kept: OrderedDict[int, tuple[int, ...]] = OrderedDict()  # sequence id -> the prompt in its cells
        self.pool_cells = params.n_ctx
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- the caller's side ------------------------------------------------------------------------
    def submit(
        self, tokens: Sequence[int], params: GenerationParams, cancel: Cancel, grammar: str | None = None
    ) -> Generator[int, None, FinishReason]:
        """The token ids of the continuation of ``tokens``; ``grammar`` (GBNF) constrains them."""
        sequence = _Sequence(tokens, params, cancel, grammar)
        with self._lock:
            if self._closed:
                raise RejoinderError("the model is closed; load the backend again")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rejoinder-llama-cpp", daemon=True)
                self._thread.start()
                close_at_exit(self)
            self.pending.put(sequence)  # under the lock: a close that follows still finds it in the queue
        try:
            while True:
                item = sequence.out.get()
                if item is None:
                    return "cancelled" if cancel.is_set else sequence.reason
                if isinstance(item, BaseException):
                    raise item
                if cancel.is_set:
                    return "cancelled"
                yield item
        finally:
            sequence.dropped = True

    def stream_text(
        self, tokens: Sequence[int], params: GenerationParams, cancel: Cancel, grammar: str | None = None
    ) -> Tokens:
        """The continuation as text per token: each token's bytes through an incremental UTF-8 decoder."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces = self._pieces
        source = self.submit(tokens, params, cancel, grammar)
        try:
            while True:
                try:
                    token = next(source)
                except StopIteration as end:
                    reason = end.value
                    break
                piece = pieces.get(token)
                if piece is None:
                    piece = pieces[token] = self.llm.detokenize([token])
                yield decoder.decode(piece), None
        finally:
            source.close()
        rest = decoder.decode(b"", final=True)
        if rest:
            yield rest, None
        return reason

    def close(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop every sequence (they end ``cancelled``) and join the decoding thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self.pending.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the decoding thread ----------------------------------------------------------------------
    def _run(self) -> None:
        active: list[_Sequence] = []
        while not self._closed:
            try:
                self._admit(active)
                for sequence in [s for s in active if s.stopped]:
                    sequence.reason = "cancelled"
                    self._release(active, sequence)
                if active and not self._closed:
                    self._step(active)
            except Exception as exc:  # a llama.cpp error fails the sequences in flight, not the thread
                for sequence in list(active):
                    sequence.finish(exc)
                    self._release(active, sequence)
        for sequence in list(active):
            sequence.reason = "cancelled"
            self._release(active, sequence)
        while True:
            try:
                waiting = self.pending.get_nowait()
            except queue.Empty:
                break
            if waiting is not None:
                waiting.finish(reason="cancelled")

    def _sampler(self, params: GenerationParams, grammar: str | None = None) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if grammar is not None:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root"))
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
        for sequence in take_arrivals(self.pending, len(active), self.max_batch, self._closed):
            try:
                sequence.seq_id, done = self._slot(sequence, active)
                sequence.sampler = self._sampler(sequence.params, sequence.grammar)
                tokens = sequence.tokens
                for start in range(done, len(tokens), PROMPT_CHUNK):
                    chunk = tokens[start : start + PROMPT_CHUNK]
                    self._fill(((t, start + i, sequence.seq_id, False) for i, t in enumerate(chunk)), len(chunk))
                    self.batch.batch.logits[len(chunk) - 1] = start + len(chunk) == len(tokens)
                    self.ctx.decode(self.batch)
                sequence.position = len(tokens)
                token = self.lib.llama_sampler_sample(sequence.sampler, self.ctx.ctx, len(chunk) - 1)
            except Exception as exc:
                sequence.finish(exc)
                sequence.position = 0  # its cells hold no whole prompt: not kept
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
        """Hand ``token`` to the reader; True when the sequence is finished (to be released)."""
        sequence.generated += 1
        sequence.next_token = token
        if self.lib.llama_vocab_is_eog(self.vocab, token):
            sequence.reason = "stop"
            return True
        sequence.out.put(token)
        if sequence.stopped:
            sequence.reason = "cancelled"
            return True
        if sequence.generated >= sequence.params.max_new_tokens:
            sequence.reason = "length"
            return True
        return False

    def _slot(self, sequence: _Sequence, active: list[_Sequence]) -> tuple[int, int]:
        """A sequence id for ``sequence`` and how many of its prompt's tokens are in its cells already.

        A kept prompt that shares at least :data:`MIN_PREFIX` tokens with this one gives its id (its
        cells past the shared part are dropped); otherwise a free id, freeing the least recently
        kept prompt when none is free. Kept prompts also go when the pool would run short.
        """
        tokens = sequence.tokens
        best, common = -1, 0
        for seq_id, kept in self.kept.items():
            shared = _shared_prefix(kept, tokens)
            if shared > common:
                best, common = seq_id, shared
        done = 0
        if best >= 0 and common >= MIN_PREFIX:
            del self.kept[best]
            seq_id, done = best, min(common, len(tokens) - 1)  # the last token is fed again, for its logits
            self.ctx.kv_cache_seq_rm(seq_id, done, -1)
        else:
            if not self.free_ids:
                self._forget_oldest()
            seq_id = self.free_ids.pop()
        needed = len(tokens) + sequence.params.max_new_tokens
        while self.kept and self._cells_in_use(active) + needed > self.pool_cells:
            self._forget_oldest()
        return seq_id, done

    def _cells_in_use(self, active: list[_Sequence]) -> int:
        return sum(len(kept) for kept in self.kept.values()) + sum(
            len(s.tokens) + s.params.max_new_tokens for s in active
        )

    def _forget_oldest(self) -> None:
        seq_id, _ = self.kept.popitem(last=False)
        self.ctx.kv_cache_seq_rm(seq_id, -1, -1)
        self.free_ids.append(seq_id)

    def _release(self, active: list[_Sequence], sequence: _Sequence) -> None:
        """Free or keep the sequence's cells, then tell its reader it has ended."""
        if sequence in active:
            active.remove(sequence)
        if sequence.seq_id >= 0:
            if sequence.position >= len(sequence.tokens) >= MIN_PREFIX and not self._closed:
                self.ctx.kv_cache_seq_rm(sequence.seq_id, len(sequence.tokens), -1)  # keep the prompt's cells
                self.kept[sequence.seq_id] = tuple(sequence.tokens)
            else:
                self.ctx.kv_cache_seq_rm(sequence.seq_id, -1, -1)
                self.free_ids.append(sequence.seq_id)
            sequence.seq_id = -1
        if sequence.sampler is not None:
            self.lib.llama_sampler_free(sequence.sampler)
            sequence.sampler = None
        sequence.finish()
