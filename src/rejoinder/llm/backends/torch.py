"""In-process PyTorch/transformers backend with batched decoding of concurrent requests.

One background thread owns the model. Each request is prefilled on its own, then joins the batch:
every decoding step runs all active sequences through the model at once (one forward pass for
the batch, left-padded key/value caches, per-sequence positions and sampling), and sequences leave
the batch as they finish - continuous batching, so sixteen chats cost little more per step than
one. Models with sliding-window attention layers decode one sequence at a time.

The key/value caches of recent prompts are kept (:class:`PrefixCache`, up to
``prefix_cache_bytes``): a prompt that begins like one of them - the next turn of a chat, or the
frame bot's NLU, whose long system prompt and examples are the same for every utterance - is
prefilled only from where they differ.

Constrained decoding (``json_schema``) is a logits hook of the request, applied in the same loop:
a token mask from :mod:`rejoinder.llm.constrained`. A request stops at the next step once its
Cancel is set or its reader goes away; :meth:`BatchEngine.close` (also run when the interpreter
exits) ends the decoding thread, so no thread is inside the model when the process ends.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from typing import Any

from rejoinder.dialogue import Cancel, FinishReason
from rejoinder.errors import ConfigError, InvalidMessage, RejoinderError
from rejoinder.llm.backends import DEFAULT_THREADS, Backend, JsonSchema, Messages, close_at_exit
from rejoinder.llm.constrained import ConstrainedDecoder, JsonGrammar, schema_key, token_table
from rejoinder.llm.generation import GenerationParams, SequenceState, TextStream, Tokens, cut_at_stops, take_arrivals
from rejoinder.llm.models import ModelRef, dequantised_dir, quiet_transformers

MAX_BATCH = 16
PREFIX_CACHE_BYTES = 256 << 20
PREFILL_TOKENS = 2048
"""Prompts prefilled in one forward pass take at most this many token positions (rows x the longest,
padding included); a longer prompt goes alone, so that its memory is what it would be alone."""
"""Memory for the key/value caches of recent prompts (0: no prefix cache)."""
MIN_PREFIX = 16
"""Shared tokens below which a cached prompt is not worth reusing."""
JOIN_TIMEOUT_S = 30.0


LogitsHook = Callable[[list[int], Any], Any]
"""Called with the ids generated so far and the next token's logits (a 1-D tensor); returns the
logits to sample from - e.g. with -inf where a grammar forbids a token (constrained decoding)."""

IdStream = Generator[tuple[int, float | None], None, FinishReason]
"""One sequence's token ids with their log-probabilities (None unless asked for), returning why it ended."""


class _Request(SequenceState):
    def __init__(
        self,
        ids: Sequence[int],
        params: GenerationParams,
        cancel: Cancel,
        torch: Any,
        hook: LogitsHook | None = None,
        logprobs: bool = False,
        keep_eos: bool = False,
    ) -> None:
        super().__init__(params, cancel)
        self.ids = list(ids)
        self.hook = hook
        self.keep_eos = keep_eos
        self.output: list[int] = []
        self.logprobs: list[float] | None = [] if logprobs else None
        self.position = len(self.ids)  # tokens in the cache once prefilled
        self.seen = set(self.ids)
        self.generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None


class PrefixCache:
    """The key/value caches of recent prompts, least recently used first out, within ``max_bytes``.

    :meth:`find` gives the longest stored beginning of a prompt; :meth:`put` stores a prompt's
    cache (a prompt that extends the one it reused takes its place).
    """

    def __init__(self, torch: Any, max_bytes: int) -> None:
        self.torch = torch
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[int, ...], tuple[Any, list[tuple[Any, Any]], int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.reused_tokens = 0

    def find(self, ids: Sequence[int]) -> tuple[list[tuple[Any, Any]], int, tuple[int, ...]] | None:
        """(layers, shared tokens, key) of the stored prompt sharing the longest beginning with ``ids``."""
        if not self.entries:
            return None
        query = self.torch.tensor(list(ids))
        best: tuple[list[tuple[Any, Any]], int, tuple[int, ...]] | None = None
        for key, (stored, layers, _) in self.entries.items():
            n = min(len(key), len(ids))
            differ = (stored[:n] != query[:n]).nonzero()
            common = int(differ[0]) if len(differ) else n
            if common >= MIN_PREFIX and (best is None or common > best[1]):
                best = (layers, common, key)
        if best is not None:
            self.entries.move_to_end(best[2])
        return best

    def put(self, ids: Sequence[int], layers: list[tuple[Any, Any]], replaces: tuple[int, ...] | None = None) -> None:
        if self.max_bytes <= 0:
            return
        key = tuple(ids)
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if size > self.max_bytes:
            return
        for old in (key, replaces):
            if old is not None and old in self.entries and (old == key or key[: len(old)] == old):
                self.bytes -= self.entries.pop(old)[2]
        while self.entries and self.bytes + size > self.max_bytes:
            self.bytes -= self.entries.popitem(last=False)[1][2]
        self.entries[key] = (self.torch.tensor(list(ids)), layers, size)
        self.bytes += size

    def clear(self) -> None:
        """Forget every stored prompt (the model's weights changed: their keys and values are stale)."""
        self.entries = OrderedDict()
        self.bytes = 0


class BatchEngine:
    """Decodes many sequences together on one model; :meth:`submit` streams one sequence's token ids."""

    def __init__(
        self,
        model: Any,
        eos_ids: set[int],
        max_batch: int = MAX_BATCH,
        *,
        threads: int = DEFAULT_THREADS,
        prefix_cache_bytes: int = PREFIX_CACHE_BYTES,
    ) -> None:
        import torch

        self.torch = torch
        self.model = model
        first = next(iter(model.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.eos_ids = eos_ids
        self.threads = threads
        layer_types = getattr(model.config, "layer_types", None) or []
        self.batchable = not any("sliding" in str(t) for t in layer_types)
        self.max_batch = max_batch if self.batchable else 1
        parameters = inspect.signature(model.forward).parameters
        self._cache_arg = cache_argument(model)
        self._keep_last = "logits_to_keep" in parameters
        self.prefixes = PrefixCache(torch, prefix_cache_bytes if self.batchable else 0)
        self.peak_batch = 0  # the most sequences decoded in one step so far
        self.pending: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(
        self,
        ids: Sequence[int],
        params: GenerationParams,
        cancel: Cancel,
        hook: LogitsHook | None = None,
        logprobs: bool = False,
        keep_eos: bool = False,
    ) -> IdStream:
        """Decode a continuation of ``ids`` in the shared batch; ``keep_eos`` also yields the
        end-of-sequence token that ended it (RL needs to know which one, and to learn it)."""
        request = _Request(ids, params, cancel, self.torch, hook, logprobs, keep_eos)
        with self._lock:
            if self._closed:
                raise RejoinderError("the model is closed; load the backend again")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rejoinder-decoder", daemon=True)
                self._thread.start()
                close_at_exit(self)
            self.pending.put(request)  # under the lock: a close that follows still finds it in the queue
        received = 0
        try:
            while True:
                item = request.out.get()
                if item is None:
                    return "cancelled" if cancel.is_set else request.reason
                if isinstance(item, BaseException):
                    raise item
                if cancel.is_set:
                    return "cancelled"  # tokens the decoder made before it saw the cancel are not shown
                logprob = request.logprobs[received] if request.logprobs is not None else None
                received += 1
                yield item, logprob
        finally:
            request.dropped = True  # the reader stopped: the decoder drops the sequence at its next step

    def weights_changed(self) -> None:
        """Call after changing the model's weights (an RL update), between batches: stored prompts'
        keys and values belong to the old weights and are dropped."""
        self.prefixes.clear()

    def close(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop every sequence (they end ``cancelled``) and join the decoding thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self.pending.put(None)  # wakes a decoder waiting for work
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the decoding thread ----------------------------------------------------------------------
    def _run(self) -> None:
        self.torch.set_num_threads(self.threads)
        with self.torch.inference_mode():
            rows: list[_Request] = []
            cache: Any = None
            mask: Any = None
            while not self._closed:
                try:
                    rows, cache, mask = self._admit(rows, cache, mask)
                    rows, cache, mask = self._drop(rows, cache, mask, [r for r in rows if r.stopped])
                    if rows and not self._closed:
                        rows, cache, mask = self._step(rows, cache, mask)
                except Exception as exc:  # a model error fails the requests in flight, not the thread
                    for row in rows:
                        row.finish(exc)
                    rows, cache, mask = [], None, None
            for row in rows:
                row.finish(reason="cancelled")
            while True:
                try:
                    waiting = self.pending.get_nowait()
                except queue.Empty:
                    break
                if waiting is not None:
                    waiting.finish(reason="cancelled")

    def _admit(self, rows: list[_Request], cache: Any, mask: Any) -> tuple[list[_Request], Any, Any]:
        """Prefill the arrivals and join them to the batch.

        Arrivals with the same prompt (the samples of one RL prompt, the ``n`` replies of one
        request) share one prefill: the prompt goes through the model once, and each draws its first
        token, with its own parameters and seed, from the same logits. Distinct prompts that arrive
        together (chats that start at once) are prefilled in one forward pass rather than one each.
        """
        same_prompt: dict[tuple[int, ...], list[_Request]] = {}
        for request in take_arrivals(self.pending, len(rows), self.max_batch, self._closed):
            same_prompt.setdefault(tuple(request.ids), []).append(request)
        if not same_prompt:
            return rows, cache, mask
        prompts = [list(ids) for ids in same_prompt]
        prefilled: list[Any] = []
        for group in self._prefill_groups(prompts):
            try:
                if len(group) > 1:
                    logits, own, own_mask = self._prefill_together(group)
                    prefilled += [(logits[g], _rows_of(own, g), own_mask[g : g + 1]) for g in range(len(group))]
                    continue
            except Exception:  # one at a time below, so that only a failing prompt's requests fail
                pass
            for ids in group:
                try:
                    output = self._prefill(ids)
                    prefilled.append((output.logits[0, -1], cache_of(output), None))
                except Exception as exc:
                    prefilled.append(exc)
        for requests, done in zip(same_prompt.values(), prefilled, strict=True):
            if isinstance(done, BaseException):
                for request in requests:
                    request.finish(done)
                continue
            last, own, own_mask = done
            drawn = self._sample_rows(requests, last[None, :].repeat(len(requests), 1))
            for request, (token, logprob) in zip(requests, drawn, strict=True):
                if self._emit(request, token, logprob):
                    continue
                rows, cache, mask = self._join(rows, cache, mask, request, own, own_mask)
        return rows, cache, mask

    def _prefill_groups(self, prompts: list[list[int]]) -> list[list[list[int]]]:
        """The prompts in arrival order, cut into groups that one forward pass takes together (at
        most :data:`PREFILL_TOKENS` positions each; one prompt each where batches cannot be padded)."""
        if not self.batchable:
            return [[ids] for ids in prompts]
        groups: list[list[list[int]]] = []
        for ids in prompts:
            group = groups[-1] if groups else None
            if group and (len(group) + 1) * max(len(ids), *map(len, group)) <= PREFILL_TOKENS:
                group.append(ids)
            else:
                groups.append([ids])
        return groups

    def _prefill_together(self, prompts: list[list[int]]) -> tuple[Any, Any, Any]:
        """One forward pass over several prompts, each on top of its stored beginning (if any):
        (each prompt's last logits ``[n, V]``, the cache ``[n, ..., W, ...]``, its mask ``[n, W]``).

        Row ``i`` is laid out as ``[padding | stored beginning | padding | rest of the prompt]``: the
        stored beginnings are left-padded to the longest, the rests too, and the mask hides the
        padding, so every row ends at the last column and its positions are its own."""
        torch = self.torch
        found = [self.prefixes.find(ids) for ids in prompts]
        commons = [min(f[1], len(ids) - 1) if f is not None else 0 for f, ids in zip(found, prompts, strict=True)]
        stored, fresh = max(commons), max(len(ids) - c for ids, c in zip(prompts, commons, strict=True))
        ids_rows, mask_rows, positions = [], [], []
        for ids, common in zip(prompts, commons, strict=True):
            rest = ids[common:]
            ids_rows.append([0] * (fresh - len(rest)) + rest)
            mask_rows.append([0] * (stored - common) + [1] * common + [0] * (fresh - len(rest)) + [1] * len(rest))
            positions.append([0] * (fresh - len(rest)) + list(range(common, len(ids))))
        extra: dict[str, Any] = {"logits_to_keep": 1} if self._keep_last else {}
        if stored:
            model_layers = next(f[0] for f in found if f is not None)
            layers = []
            for index, (k0, v0) in enumerate(model_layers):
                keys, values = [], []
                for f, common in zip(found, commons, strict=True):
                    if f is not None and common:
                        k, v = f[0][index][0][:, :, :common], f[0][index][1][:, :, :common]
                    else:
                        k, v = k0[:, :, :0], v0[:, :, :0]
                    keys.append(_left_pad(torch, k, stored - common))
                    values.append(_left_pad(torch, v, stored - common))
                layers.append((torch.cat(keys), torch.cat(values)))
            extra[self._cache_arg] = _growing_cache(layers)
            self.prefixes.hits += sum(1 for c in commons if c)
            self.prefixes.reused_tokens += sum(commons)
        mask = torch.tensor(mask_rows, device=self.device)
        output = self.model(
            input_ids=torch.tensor(ids_rows, device=self.device),
            attention_mask=mask,
            position_ids=torch.tensor(positions, device=self.device),
            use_cache=True,
            **extra,
        )
        own = cache_of(output)
        if self.prefixes.max_bytes > 0:
            for i, (ids, f) in enumerate(zip(prompts, found, strict=True)):
                columns = mask[i].nonzero().squeeze(1)
                layers = [(layer.keys[i : i + 1][:, :, columns].clone(), layer.values[i : i + 1][:, :, columns].clone())
                          for layer in own.layers]  # fmt: skip
                self.prefixes.put(ids, layers, replaces=f[2] if f is not None else None)
        return output.logits[:, -1], own, mask

    def _prefill(self, ids: list[int]) -> Any:
        """The model's output over the prompt ``ids``, reusing a stored prompt's cache for its beginning."""
        torch = self.torch
        extra = {"logits_to_keep": 1} if self._keep_last else {}
        found = self.prefixes.find(ids)
        if found is None:
            output = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **extra)
            reused = None
        else:
            layers, common, reused = found
            common = min(common, len(ids) - 1)  # at least one token is fed, for the next token's logits
            past = _growing_cache([(k[:, :, :common], v[:, :, :common]) for k, v in layers])
            output = self.model(
                input_ids=torch.tensor([ids[common:]], device=self.device),
                use_cache=True,
                **extra,
                **{self._cache_arg: past},
            )
            self.prefixes.hits += 1
            self.prefixes.reused_tokens += common
        if self.prefixes.max_bytes > 0:
            own = cache_of(output)
            layers = [(layer.keys.clone(), layer.values.clone()) for layer in own.layers]
            self.prefixes.put(ids, layers, replaces=reused)
        return output

    def _join(
        self, rows: list[_Request], cache: Any, mask: Any, request: _Request, own: Any, own_mask: Any = None
    ) -> tuple[list, Any, Any]:
        """Add ``request`` to the batch: its cache ``own`` (one row; ``own_mask`` its columns, all
        real when None) and the batch's are left-padded to one width."""
        torch = self.torch
        if own_mask is None:
            own_mask = self._ones(1, request.position)
        if not rows and not self.batchable:
            return [request], own, own_mask  # sliding windows: as is
        if not rows:
            pairs = [(layer.keys, layer.values) for layer in own.layers]
            return [request], _growing_cache(pairs), own_mask

        width, extra = mask.shape[1], own_mask.shape[1]
        total = max(width, extra)
        layers = []
        for batch_layer, own_layer in zip(cache.layers, own.layers, strict=True):
            pairs = []
            for batch_t, own_t in ((batch_layer.keys, own_layer.keys), (batch_layer.values, own_layer.values)):
                batch_t = _left_pad(torch, batch_t, total - width)
                own_t = _left_pad(torch, own_t, total - extra)
                pairs.append(torch.cat([batch_t, own_t], dim=0))
            layers.append(tuple(pairs))
        mask = torch.cat(
            [
                torch.nn.functional.pad(mask, (total - width, 0)),
                torch.nn.functional.pad(own_mask, (total - extra, 0)),
            ]
        )
        return [*rows, request], _growing_cache(layers), mask

    def _drop(self, rows: list[_Request], cache: Any, mask: Any, leaving: list[_Request]) -> tuple[list, Any, Any]:
        if not leaving:
            return rows, cache, mask
        for row in leaving:
            row.finish(reason="cancelled")  # rows that finished on their own already have their reason
        keep = [i for i, row in enumerate(rows) if row not in leaving]
        if not keep:
            return [], None, None
        torch = self.torch
        index = torch.tensor(keep, device=self.device)
        mask = mask[index]
        first = int((mask.sum(dim=0) > 0).nonzero()[0])  # columns that are padding in every row go
        mask = mask[:, first:]
        layers = [(layer.keys[index][:, :, first:], layer.values[index][:, :, first:]) for layer in cache.layers]
        return [rows[i] for i in keep], _growing_cache(layers), mask

    def _step(self, rows: list[_Request], cache: Any, mask: Any) -> tuple[list, Any, Any]:
        torch = self.torch
        self.peak_batch = max(self.peak_batch, len(rows))
        mask = torch.cat([mask, self._ones(len(rows), 1)], dim=1)
        output = self.model(
            input_ids=torch.tensor([[r.next_token] for r in rows], device=self.device),
            attention_mask=mask,
            position_ids=torch.tensor([[r.position] for r in rows], device=self.device),
            use_cache=True,
            **{self._cache_arg: cache},
        )
        cache = cache_of(output)
        logits = output.logits[:, -1]
        finished = []
        for row, (token, logprob) in zip(rows, self._sample_rows(rows, logits), strict=True):
            row.position += 1
            if self._emit(row, token, logprob):
                finished.append(row)
        return self._drop(rows, cache, mask, finished)

    def _ones(self, rows: int, columns: int) -> Any:
        return self.torch.ones(rows, columns, dtype=self.torch.long, device=self.device)

    def _sample(self, request: _Request, logits: Any) -> tuple[int, float | None]:
        """One sequence's next token (and its log-probability, when asked for) from its 1-D logits."""
        return self._sample_rows([request], logits[None, :])[0]

    def _sample_rows(self, rows: list[_Request], logits: Any) -> list[tuple[int, float | None]]:
        """The next token of every row of a batch, each row with its own sampling parameters, with
        its log-probability among the allowed tokens for rows that ask for it.

        The work is done for the whole batch at once (one softmax and one top-k over ``[B, V]``);
        rows with their own seed draw with their own generator.
        """
        logits = self._processed(rows, logits)
        tokens = self._choose(rows, logits)
        out: list[tuple[int, float | None]] = []
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            logprob = None
            if row.logprobs is not None:
                logprob = float(self.torch.log_softmax(logits[i], dim=-1)[token])
            out.append((token, logprob))
        return out

    def _processed(self, rows: list[_Request], logits: Any) -> Any:
        """The logits after each row's hook (constrained decoding) and repetition penalty."""
        torch = self.torch
        logits = logits.detach().to("cpu", torch.float32, copy=True)  # sampling runs on the CPU
        for i, row in enumerate(rows):
            if row.hook is not None:
                logits[i] = row.hook(row.output, logits[i])
            penalty = row.params.repetition_penalty
            if penalty != 1.0 and row.seen:
                index = torch.tensor(list(row.seen))
                chosen = logits[i, index]
                logits[i, index] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
        return logits

    def _choose(self, rows: list[_Request], logits: Any) -> list[int]:
        """Greedy rows take the best token; the others draw with temperature, top-k and top-p."""
        torch = self.torch
        tokens: list[int | None] = [None] * len(rows)
        greedy = [i for i, row in enumerate(rows) if row.params.temperature == 0]
        if greedy:
            best = torch.argmax(logits[greedy], dim=-1).tolist()
            for i, token in zip(greedy, best, strict=True):
                tokens[i] = int(token)
        sampled = [i for i, row in enumerate(rows) if row.params.temperature != 0]
        if not sampled:
            return [int(t) for t in tokens]  # type: ignore[arg-type]
        part = logits[sampled] / torch.tensor([[rows[i].params.temperature] for i in sampled])
        for j, i in enumerate(sampled):
            top_k = rows[i].params.top_k
            if top_k:
                kth = torch.topk(part[j], min(top_k, part.shape[-1])).values[-1]
                part[j][part[j] < kth] = float("-inf")
        probs = torch.softmax(part, dim=-1)
        # The nucleus almost always lies within the top few hundred tokens: draw from there, and
        # look at the whole vocabulary only for rows whose nucleus is wider (same distribution).
        head = min(256, probs.shape[-1])
        top = torch.topk(probs, head, dim=-1)
        top_p = torch.tensor([rows[i].params.top_p for i in sampled])
        inside = (torch.cumsum(top.values, dim=-1) - top.values) <= top_p[:, None]
        weights = torch.where(inside, top.values, torch.zeros_like(top.values))
        whole = top_p >= 1.0  # no nucleus: the whole distribution, drawn from as it is (RL rollouts)
        wide = (top.values.sum(dim=-1) < top_p) & ~whole
        shared = [j for j, i in enumerate(sampled) if rows[i].generator is None]
        for group, source in (
            ([j for j in shared if whole[j]], probs),
            ([j for j in shared if not whole[j] and not wide[j]], weights),
        ):
            if group:
                drawn = torch.multinomial(source[group], 1).squeeze(1).tolist()
                for j, column in zip(group, drawn, strict=True):
                    tokens[sampled[j]] = int(column) if source is probs else int(top.indices[j, column])
        seeded = [j for j, i in enumerate(sampled) if tokens[i] is None and bool(whole[j])]
        if seeded:  # rows with their own seed over the whole distribution (RL rollouts): all at once
            generators = [rows[sampled[j]].generator for j in seeded]
            for j, token in zip(seeded, _inverse_cdf(torch, probs[seeded], generators), strict=True):
                tokens[sampled[j]] = token
        for j, i in enumerate(sampled):
            if tokens[i] is not None:
                continue
            generator = rows[i].generator
            if bool(wide[j]):
                full = torch.sort(probs[j], descending=True)
                keep = (torch.cumsum(full.values, dim=-1) - full.values) <= top_p[j]
                row_weights = torch.where(keep, full.values, torch.zeros_like(full.values))
                tokens[i] = int(full.indices[int(torch.multinomial(row_weights, 1, generator=generator))])
            else:
                tokens[i] = int(top.indices[j, int(torch.multinomial(weights[j], 1, generator=generator))])
        return [int(t) for t in tokens]  # type: ignore[arg-type]

    def _emit(self, request: _Request, token: int, logprob: float | None = None) -> bool:
        """Hand ``token`` to the reader; True when the sequence is finished."""
        request.generated += 1
        request.output.append(token)
        request.seen.add(token)
        request.next_token = token
        if token in self.eos_ids:
            if request.keep_eos:
                if request.logprobs is not None and logprob is not None:
                    request.logprobs.append(logprob)
                request.out.put(token)
            request.finish(reason="stop")
            return True
        if request.logprobs is not None and logprob is not None:
            request.logprobs.append(logprob)
        request.out.put(token)
        if request.stopped:
            request.finish(reason="cancelled")
            return True
        if request.generated >= request.params.max_new_tokens:
            request.finish(reason="length")
            return True
        return False


def cache_argument(model: Any) -> str:
    """The forward pass's name for the key/value cache: ``cache`` since transformers 5.x, else
    ``past_key_values`` (a peft wrapper's own signature names neither: its base model's does)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    """The key/value cache a forward pass returned (``cache`` since transformers 5.x, else ``past_key_values``)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _rows_of(cache: Any, row: int) -> Any:
    """Row ``row`` of a batch's cache, as a one-row cache (views, not copies)."""
    from types import SimpleNamespace

    layers = [
        SimpleNamespace(keys=layer.keys[row : row + 1], values=layer.values[row : row + 1]) for layer in cache.layers
    ]
    return SimpleNamespace(layers=layers)


def _inverse_cdf(torch: Any, probs: Any, generators: Sequence[Any]) -> list[int]:
    """One token from each row of ``probs`` ``[n, V]``, row ``r`` drawn with its own ``generators[r]``.

    Inverse-transform sampling: the first token whose cumulative probability passes ``u · total``
    for a uniform ``u`` from the row's generator. It has the distribution of ``torch.multinomial``,
    costs one random number per row instead of a pass of the sampler per row, and a token of
    probability 0 is never drawn (its cumulative sum equals its predecessor's). The sums are in
    float64, so a vocabulary of 10^5 tokens loses nothing to rounding."""
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    cdf = torch.cumsum(probs.to(torch.float64), dim=-1)
    drawn = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return drawn.clamp(max=probs.shape[-1] - 1).tolist()


def _growing_cache(pairs: Sequence[tuple[Any, Any]]) -> Any:
    """A DynamicCache whose layers grow in place: appending a step writes into spare room (the
    room doubles when it runs out) instead of concatenating the whole cache every step."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, keys: Any, values: Any) -> None:
            super().__init__()
            self.device, self.is_initialized = keys.device, True
            self._length = keys.shape[2]
            self._keys = self._room(keys, max(64, 2 * self._length))
            self._values = self._room(values, max(64, 2 * self._length))
            self._views()

        def _room(self, tensor: Any, capacity: int) -> Any:
            shape = list(tensor.shape)
            shape[2] = capacity
            buffer = tensor.new_empty(shape)
            buffer[:, :, : tensor.shape[2]] = tensor
            return buffer

        def _views(self) -> None:
            self.keys = self._keys[:, :, : self._length]
            self.values = self._values[:, :, : self._length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            end = self._length + key_states.shape[2]
            if end > self._keys.shape[2]:
                self._keys = self._room(self.keys, 2 * end)
                self._values = self._room(self.values, 2 * end)
            self._keys[:, :, self._length : end] = key_states
            self._values[:, :, self._length : end] = value_states
            self._length = end
            self._views()
            return self.keys, self.values

    cache = DynamicCache()
    cache.layers = [GrowingLayer(keys, values) for keys, values in pairs]
    return cache


def _left_pad(torch: Any, tensor: Any, n: int) -> Any:
    if n == 0:
        return tensor
    shape = list(tensor.shape)
    shape[2] = n
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=2)


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The token ids that end a sequence: the tokenizer's end of sequence and the model's generation config's."""
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos |= set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    return eos


class TorchBackend(Backend):
    """A transformers causal LM in this process.

    ``threads``: the decoding thread's PyTorch threads (:data:`DEFAULT_THREADS` by default);
    ``prefix_cache_bytes``: memory for the caches of recent prompts (0 turns the reuse off).
    """

    name = "torch"

    def __init__(
        self,
        ref: ModelRef,
        *,
        threads: int | None = None,
        context_window: int | None = None,
        max_batch: int = MAX_BATCH,
        model: Any = None,
        tokenizer: Any = None,
        dtype: str = "float32",
        prefix_cache_bytes: int = PREFIX_CACHE_BYTES,
    ) -> None:
        import torch

        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype {dtype!r}: the torch backend runs float32 or bfloat16")
        self.threads = int(threads or DEFAULT_THREADS)
        if model is None or tokenizer is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            directory = dequantised_dir(ref)
            quiet_transformers()
            try:
                tokenizer = AutoTokenizer.from_pretrained(directory)
                model = AutoModelForCausalLM.from_pretrained(directory, dtype=getattr(torch, dtype))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"model {ref.path}: cannot load it with transformers: {exc}") from None
        self.model = model.eval()
        self.dtype = dtype
        self.tokenizer = tokenizer
        self.model_name = ref.name
        limit = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.context_window = min(int(context_window), limit) if context_window else limit
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.engine = BatchEngine(
            self.model,
            eos_ids(model, tokenizer),
            max_batch=max_batch,
            threads=self.threads,
            prefix_cache_bytes=prefix_cache_bytes,
        )
        self._decoders: OrderedDict[str, ConstrainedDecoder] = OrderedDict()
        self._lock = threading.Lock()

    def describe(self) -> str:
        threads = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        return f"{self.model_name} on torch ({self.dtype}, {threads}, context {self.context_window} tokens)"

    def chat_ids(self, messages: Messages) -> list[int]:
        if not self.has_chat_template:
            raise ConfigError(
                f"model {self.model_name} has no chat template (a base model): prompt it with a template "
                "(rejoinder prompt) or use an instruct model"
            )
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def count_chat_tokens(self, messages: Messages) -> int:
        return len(self.chat_ids(messages))

    def stream_chat(
        self,
        messages: Messages,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        tokens = self._submit(self.chat_ids(messages), params, cancel, json_schema, logprobs)
        return cut_at_stops(_decoded(self.tokenizer, tokens), params.stop, logprobs=logprobs)

    def stream_text(
        self,
        prompt: str,
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
        logprobs: bool = False,
    ) -> TextStream:
        ids = list(self.tokenizer(prompt)["input_ids"])
        tokens = self._submit(ids, params, cancel, json_schema, logprobs)
        return cut_at_stops(_decoded(self.tokenizer, tokens), params.stop, logprobs=logprobs)

    def stream_ids(
        self,
        ids: Sequence[int],
        params: GenerationParams,
        cancel: Cancel | None = None,
        *,
        json_schema: JsonSchema | None = None,
    ) -> Generator[int, None, FinishReason]:
        """Token ids of the continuation of ``ids`` (stop sequences are text: not applied here)."""
        source = self._submit(ids, params, cancel, json_schema, False)
        try:
            while True:
                try:
                    token, _ = next(source)
                except StopIteration as end:
                    return end.value
                yield token
        finally:
            source.close()

    def close(self) -> None:
        self.engine.close()

    def _submit(
        self,
        ids: Sequence[int],
        params: GenerationParams,
        cancel: Cancel | None,
        json_schema: JsonSchema | None,
        logprobs: bool,
    ) -> IdStream:
        room = self.context_window - len(ids)
        if room < 1:
            raise InvalidMessage(
                f"the prompt takes {len(ids)} tokens; {self.model_name} reads at most {self.context_window}"
            )
        hook = self._decoder(json_schema).hook() if json_schema is not None else None
        limited = params.with_(max_new_tokens=min(params.max_new_tokens, room))
        return self.engine.submit(ids, limited, cancel or Cancel(), hook, logprobs)

    def _decoder(self, json_schema: JsonSchema) -> ConstrainedDecoder:
        """The token mask of ``json_schema`` (built once per schema; its allowed sets are kept)."""
        key = schema_key(json_schema)
        with self._lock:
            decoder = self._decoders.get(key)
            if decoder is None:
                grammar = JsonGrammar(json_schema)
                decoder = ConstrainedDecoder(grammar, token_table(self.tokenizer, self.engine.eos_ids))
                self._decoders[key] = decoder
                while len(self._decoders) > 8:
                    self._decoders.popitem(last=False)
            self._decoders.move_to_end(key)
            return decoder


def _decoded(tokenizer: Any, tokens: IdStream) -> Tokens:
    """Text pieces of a token stream, whole characters only; closes the token stream when it ends."""
    generated: list[int] = []
    shown = 0
    try:
        while True:
            try:
                token, logprob = next(tokens)
            except StopIteration as end:
                return end.value
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                yield "", logprob  # half of a multi-byte character: the rest comes with the next token
                continue
            piece = text[shown:] if len(text) > shown else ""
            shown = max(shown, len(text))
            yield piece, logprob
    finally:
        tokens.close()
