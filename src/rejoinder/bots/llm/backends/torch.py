"""In-process PyTorch/transformers backend with batched decoding of concurrent requests.

One background thread owns the model. Each request is prefilled on its own, then joins the batch:
every decoding step runs all active sequences through the model at once (one forward pass for
the batch, left-padded key/value caches, per-sequence positions and sampling), and sequences leave
the batch as they finish - continuous batching, so sixteen chats cost little more per step than
one. Models with sliding-window attention layers decode one sequence at a time.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rejoinder.bots.llm.backends import Backend, Messages
from rejoinder.bots.llm.generation import Cancel, GenerationParams, cut_at_stops
from rejoinder.bots.llm.models import ModelRef, dequantised_dir
from rejoinder.errors import ConfigError, InvalidMessage

MAX_BATCH = 16


LogitsHook = Callable[[list[int], Any], Any]
"""Called with the ids generated so far and the next token's logits (a 1-D tensor); returns the
logits to sample from - e.g. with -inf where a grammar forbids a token (constrained decoding)."""


class _Request:
    def __init__(
        self, ids: Sequence[int], params: GenerationParams, cancel: Cancel, torch: Any, hook: LogitsHook | None = None
    ) -> None:
        self.ids = list(ids)
        self.hook = hook
        self.output: list[int] = []
        self.params = params
        self.cancel = cancel
        self.out: queue.Queue[Any] = queue.Queue()
        self.generated = 0
        self.position = len(self.ids)  # tokens in the cache once prefilled
        self.next_token = 0
        self.seen = set(self.ids)
        self.generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        self.finished = False

    def finish(self, error: BaseException | None = None) -> None:
        if not self.finished:
            self.finished = True
            self.out.put(error)


class BatchEngine:
    """Decodes many sequences together on one model; :meth:`submit` streams one sequence's token ids."""

    def __init__(self, model: Any, eos_ids: set[int], max_batch: int = MAX_BATCH) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.eos_ids = eos_ids
        layer_types = getattr(model.config, "layer_types", None) or []
        self.batchable = not any("sliding" in str(t) for t in layer_types)
        self.max_batch = max_batch if self.batchable else 1
        parameters = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"  # transformers 5 renamed it
        self._keep_last = "logits_to_keep" in parameters
        self.peak_batch = 0  # the most sequences decoded in one step so far
        self.pending: queue.Queue[_Request] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self, ids: Sequence[int], params: GenerationParams, cancel: Cancel, hook: LogitsHook | None = None
    ) -> Iterator[int]:
        request = _Request(ids, params, cancel, self.torch, hook)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rejoinder-decoder", daemon=True)
                self._thread.start()
        self.pending.put(request)
        try:
            while True:
                item = request.out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                if cancel.is_set:
                    return  # tokens the decoder made before it saw the cancel are not shown
                yield item
        finally:
            cancel.set()  # the reader stopped: the decoder drops the sequence at its next step

    # -- the decoding thread ----------------------------------------------------------------------
    def _run(self) -> None:
        with self.torch.inference_mode():
            rows: list[_Request] = []
            cache: Any = None
            mask: Any = None
            while True:
                try:
                    rows, cache, mask = self._admit(rows, cache, mask)
                    rows, cache, mask = self._drop(rows, cache, mask, [r for r in rows if r.cancel.is_set])
                    if rows:
                        rows, cache, mask = self._step(rows, cache, mask)
                except Exception as exc:  # a model error fails the requests in flight, not the thread
                    for row in rows:
                        row.finish(exc)
                    rows, cache, mask = [], None, None

    def _admit(self, rows: list[_Request], cache: Any, mask: Any) -> tuple[list[_Request], Any, Any]:
        arrivals = []
        if not rows:
            arrivals.append(self.pending.get())
        while len(rows) + len(arrivals) < self.max_batch:
            try:
                arrivals.append(self.pending.get_nowait())
            except queue.Empty:
                break
        for request in arrivals:
            if request.cancel.is_set:
                request.finish()
                continue
            try:
                extra = {"logits_to_keep": 1} if self._keep_last else {}
                output = self.model(input_ids=self.torch.tensor([request.ids]), use_cache=True, **extra)
            except Exception as exc:
                request.finish(exc)
                continue
            token = self._sample(request, output.logits[0, -1])
            if self._emit(request, token):
                continue
            rows, cache, mask = self._join(rows, cache, mask, request, self._cache_of(output))
        return rows, cache, mask

    def _join(self, rows: list[_Request], cache: Any, mask: Any, request: _Request, own: Any) -> tuple[list, Any, Any]:
        torch = self.torch
        if not rows and not self.batchable:
            return [request], own, torch.ones(1, request.position, dtype=torch.long)  # sliding windows: as is
        if not rows:
            pairs = [(layer.keys, layer.values) for layer in own.layers]
            return [request], _growing_cache(pairs), torch.ones(1, request.position, dtype=torch.long)

        width, extra = mask.shape[1], request.position
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
                torch.nn.functional.pad(torch.ones(1, extra, dtype=torch.long), (total - extra, 0)),
            ]
        )
        return [*rows, request], _growing_cache(layers), mask

    def _drop(self, rows: list[_Request], cache: Any, mask: Any, leaving: list[_Request]) -> tuple[list, Any, Any]:
        if not leaving:
            return rows, cache, mask
        for row in leaving:
            row.finish()
        keep = [i for i, row in enumerate(rows) if row not in leaving]
        if not keep:
            return [], None, None
        torch = self.torch
        index = torch.tensor(keep)
        mask = mask[index]
        first = int((mask.sum(dim=0) > 0).nonzero()[0])  # columns that are padding in every row go
        mask = mask[:, first:]
        layers = [(layer.keys[index][:, :, first:], layer.values[index][:, :, first:]) for layer in cache.layers]
        return [rows[i] for i in keep], _growing_cache(layers), mask

    def _step(self, rows: list[_Request], cache: Any, mask: Any) -> tuple[list, Any, Any]:
        torch = self.torch
        self.peak_batch = max(self.peak_batch, len(rows))
        mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
        output = self.model(
            input_ids=torch.tensor([[r.next_token] for r in rows]),
            attention_mask=mask,
            position_ids=torch.tensor([[r.position] for r in rows]),
            use_cache=True,
            **{self._cache_arg: cache},
        )
        cache = self._cache_of(output)
        logits = output.logits[:, -1]
        finished = []
        for row, token in zip(rows, self._sample_rows(rows, logits), strict=True):
            row.position += 1
            if self._emit(row, token):
                finished.append(row)
        return self._drop(rows, cache, mask, finished)

    @staticmethod
    def _cache_of(output: Any) -> Any:
        cache = getattr(output, "cache", None)
        return cache if cache is not None else output.past_key_values

    def _sample(self, request: _Request, logits: Any) -> int:
        """One sequence's next token from its 1-D logits."""
        return self._sample_rows([request], logits[None, :])[0]

    def _sample_rows(self, rows: list[_Request], logits: Any) -> list[int]:
        """The next token of every row of a batch, each row with its own sampling parameters.

        The work is done for the whole batch at once (one softmax and one top-k over ``[B, V]``);
        rows with their own seed draw with their own generator.
        """
        torch = self.torch
        logits = logits.float().clone()
        for i, row in enumerate(rows):
            if row.hook is not None:
                logits[i] = row.hook(row.output, logits[i])
            penalty = row.params.repetition_penalty
            if penalty != 1.0 and row.seen:
                index = torch.tensor(list(row.seen))
                chosen = logits[i, index]
                logits[i, index] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
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
        wide = (top.values.sum(dim=-1) < top_p) | (top_p >= 1.0)
        shared = [j for j, i in enumerate(sampled) if rows[i].generator is None and not bool(wide[j])]
        if shared:
            drawn = torch.multinomial(weights[shared], 1).squeeze(1)
            for j, column in zip(shared, drawn.tolist(), strict=True):
                tokens[sampled[j]] = int(top.indices[j, column])
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

    def _emit(self, request: _Request, token: int) -> bool:
        """Hand ``token`` to the reader; True when the sequence is finished."""
        request.generated += 1
        request.output.append(token)
        request.seen.add(token)
        request.next_token = token
        if token in self.eos_ids:
            request.finish()
            return True
        request.out.put(token)
        if request.generated >= request.params.max_new_tokens or request.cancel.is_set:
            request.finish()
            return True
        return False


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
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype), tensor], dim=2)


class TorchBackend(Backend):
    """A transformers causal LM in this process."""

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
    ) -> None:
        import torch

        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"dtype {dtype!r}: the torch backend runs float32 or bfloat16")

        if threads:
            torch.set_num_threads(int(threads))
        if model is None or tokenizer is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            directory = dequantised_dir(ref)
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
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos |= set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
        self.engine = BatchEngine(self.model, eos, max_batch=max_batch)

    def describe(self) -> str:
        return f"{self.model_name} on torch ({self.dtype}, context {self.context_window} tokens)"

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

    def stream_chat(self, messages: Messages, params: GenerationParams, cancel: Cancel | None = None) -> Iterator[str]:
        return self._stream(self.chat_ids(messages), params, cancel)

    def stream_text(self, prompt: str, params: GenerationParams, cancel: Cancel | None = None) -> Iterator[str]:
        return self._stream(list(self.tokenizer(prompt)["input_ids"]), params, cancel)

    def stream_ids(
        self,
        ids: Sequence[int],
        params: GenerationParams,
        cancel: Cancel | None = None,
        hook: LogitsHook | None = None,
    ) -> Iterator[int]:
        """Token ids of the continuation of ``ids``; ``hook`` may reshape each step's logits."""
        room = self.context_window - len(ids)
        if room < 1:
            raise InvalidMessage(
                f"the prompt takes {len(ids)} tokens; {self.model_name} reads at most {self.context_window}"
            )
        return self.engine.submit(
            ids, params.with_(max_new_tokens=min(params.max_new_tokens, room)), cancel or Cancel(), hook
        )

    def _stream(self, ids: list[int], params: GenerationParams, cancel: Cancel | None) -> Iterator[str]:
        tokens = self.stream_ids(ids, params, cancel)
        return cut_at_stops(_decoded(self.tokenizer, tokens), params.stop)


def _decoded(tokenizer: Any, tokens: Iterator[int]) -> Iterator[str]:
    """Text pieces of a token stream, whole characters only; closes the token stream when it ends."""
    generated: list[int] = []
    shown = 0
    try:
        for token in tokens:
            generated.append(token)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue  # half of a multi-byte character: wait for the rest
            if len(text) > shown:
                yield text[shown:]
            shown = len(text)
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
