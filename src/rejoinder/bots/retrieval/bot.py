"""The retrieval bot (CleverBot's design): answer with what a human said next in the most similar past context.

Building the bot opens nothing: the store, the moderation screen, the embedding model and the
index are opened when first needed, and the corpus is imported by :meth:`RetrievalBot.prepare`
(see :mod:`~rejoinder.bots.retrieval.prepare`), which returns once the bot can answer and goes
on in the background.

Each turn:

1. The user's message is screened (:mod:`rejoinder.moderation`). A message the screen refuses is
   never learned; one it refuses on strong evidence (a listed word, a policy rule such as a
   threat, or a near-certain model score) gets a deflection instead of an answer from memory.
2. If the bot spoke last, the message is a lesson: a reply to the bot's utterance (and the turns
   before it), attributed to the user and the conversation. The bot writes nothing itself: the
   lesson rides on the reply as an effect (:attr:`~rejoinder.dialogue.Reply.effects`) that the
   session makes in the turn's own transaction, so a turn that is refused teaches nothing.
   Learned replies wait in quarantine until enough distinct users have taught the same reply to
   the same context, or an admin approves them; a user may teach only so many replies an hour.
3. The context (the user's message and the turns before it) is searched in the served exchanges
   (:mod:`~rejoinder.bots.retrieval.index`). Once every served exchange has its embeddings, the
   search is hybrid (BM25 + embeddings) and each candidate is scored half by how close its
   context was and half by how well its reply fits the live context (cosine of the reply's
   embedding with the context's). While embeddings are still being computed, candidates come
   from BM25 alone, scored half by BM25 relative to the best and half by the same reply fit
   (the reply embedded on the spot when the embedding pass has not reached it yet); in the
   seconds before the model has loaded, by BM25 alone. Replies the bot said recently in this
   conversation, echoes of the user and anything the screen now refuses are dropped, and one is
   drawn with probability proportional to ``exp(score / temperature)``. The draw is seeded by the
   conversation and turn, so a resumed conversation continues exactly as it would have.
4. The reply carries a confidence for a router to fall back on: the cosine similarity of the
   matched context's embedding with the live context's (from the index, or computed on the spot
   while embeddings are missing), or, before the model has loaded, the word overlap of the
   user's message with the matched context's last turn (usually lower: a router falls back more
   often for those seconds). ``meta["index"]`` says which index answered.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np

from rejoinder.bots.retrieval.index import Hit, word_overlap
from rejoinder.bots.retrieval.memory import RetrievalMemory, ServedReply, normalise
from rejoinder.bots.retrieval.prepare import Preparation
from rejoinder.bots.retrieval.served import ServedIndex, served_index
from rejoinder.dialogue import Cancel, Dialogue, ProgressFn, Readiness, Reply, utcnow
from rejoinder.embeddings import EMBEDDERS, CachedEmbedder, Embedder, LazyEmbedder, context_vector
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.moderation import Moderator
from rejoinder.moderation.policy import read_policy_file
from rejoinder.options import Option, declare

DEFLECTIONS = (
    "I'd rather keep this friendly. What else is on your mind?",
    "Let's talk about something else.",
    "I won't repeat that. Tell me about your day instead?",
)
FALLBACK = "I don't know what to say to that yet. What would you say?"
REPLY_FIT_WEIGHT = 0.5
"""Share of a candidate's score that is how well its reply fits the live context (reply-context cosine);
the rest is how close its own context was (the index's fused score)."""
STRONG_MODEL_SCORE = 0.95

_EMBEDDERS: dict[str, CachedEmbedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def _strong(verdict: Any) -> bool:
    """Evidence enough to refuse to talk: a listed word, a policy rule, or a near-certain model score.

    Milder model scores ("that sucks") still keep a message from being learned, but get an answer.
    """
    return verdict.score >= STRONG_MODEL_SCORE or any(not r.startswith("model:") for r in verdict.reasons)


def shared_embedder(name: str) -> CachedEmbedder:
    """One embedder per process and name; its model loads on first use, once."""
    with _EMBEDDERS_LOCK:
        if name not in _EMBEDDERS:
            _EMBEDDERS[name] = CachedEmbedder(LazyEmbedder(name))
        return _EMBEDDERS[name]


class RetrievalBot:
    """Answers from human replies in the store and learns new ones from its users.

    ``memory`` is the collection and ``moderator`` the screen, each given or as a function that
    builds it on first use (the default screen when None); ``embedder`` is an embedder or the name
    of one, whose model loads on first use. ``corpus`` is imported by :meth:`prepare`.
    """

    def __init__(
        self,
        memory: RetrievalMemory | Callable[[], RetrievalMemory],
        *,
        moderator: Moderator | Callable[[], Moderator] | None = None,
        embedder: Embedder | str = "minilm",
        corpus: str | None = None,
        name: str = "retrieval",
        window: int = 3,
        k: int = 10,
        temperature: float = 0.05,
        learn: bool = True,
        min_teachers: int = 3,
        learn_per_hour: int = 30,
        recent: int = 20,
    ) -> None:
        if window < 1 or k < 1 or recent < 0 or min_teachers < 1 or learn_per_hour < 0:
            raise ConfigError("window, k and min_teachers must be at least 1; recent and learn_per_hour at least 0")
        if temperature < 0:
            raise ConfigError(f"option temperature={temperature}: must be 0 (always the best) or more")
        self.name = name
        self.corpus = corpus or None
        self.window = window
        self.k = k
        self.temperature = temperature
        self.learn = learn
        self.min_teachers = min_teachers
        self.learn_per_hour = learn_per_hour
        self.recent = recent
        self._memory = memory if isinstance(memory, RetrievalMemory) else None
        self._open_memory = memory if not isinstance(memory, RetrievalMemory) else None
        self._moderator = moderator if isinstance(moderator, Moderator) else None
        self._build_moderator = moderator if callable(moderator) and not isinstance(moderator, Moderator) else Moderator
        self._embedder_name = embedder if isinstance(embedder, str) else None
        self._embedder = None if isinstance(embedder, str) else embedder
        self._served: ServedIndex | None = None
        self._lock = threading.RLock()
        self.preparation = Preparation(self)

    # -- parts, opened on first use ---------------------------------------------------------------
    @property
    def memory(self) -> RetrievalMemory:
        if self._memory is None:
            with self._lock:
                if self._memory is None:
                    assert self._open_memory is not None
                    self._memory = self._open_memory()
        return self._memory

    @property
    def moderator(self) -> Moderator:
        if self._moderator is None:
            with self._lock:
                if self._moderator is None:
                    self._moderator = self._build_moderator()
        return self._moderator

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            assert self._embedder_name is not None
            self._embedder = shared_embedder(self._embedder_name)
        return self._embedder

    @property
    def served(self) -> ServedIndex:
        if self._served is None:
            with self._lock:
                if self._served is None:
                    self._served = served_index(self.memory, self.embedder)
        return self._served

    @property
    def served_open(self) -> bool:
        return self._served is not None

    @property
    def hybrid(self) -> bool:
        """Whether answers come from the hybrid index: every served exchange embedded, the model loaded."""
        return self.served.complete and getattr(self.embedder, "loaded", True)

    # -- preparation (the PreparingBot protocol) -----------------------------------------------------
    def readiness(self) -> Readiness:
        return self.preparation.readiness()

    def prepare(
        self, progress: ProgressFn | None = None, cancel: Cancel | None = None, *, background: bool = True
    ) -> None:
        """Import the corpus and compute embeddings, resuming what an earlier run left.

        Returns as soon as the bot can answer (the first batch is in, or earlier runs stored
        something) and goes on in a worker thread (see :class:`Preparation`); with
        ``background=False`` it returns when everything is done. ``cancel`` stops the work
        before its next batch, whenever it is set.
        """
        self.preparation.prepare(progress, cancel, background=background)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background preparation to end; False if it is still running after ``timeout``."""
        return self.preparation.wait(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the background preparation before its next batch; True once it has stopped."""
        return self.preparation.stop(timeout)

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return None

    # -- a turn ---------------------------------------------------------------------------------
    def respond(self, dialogue: Dialogue) -> Reply:
        message = dialogue.last_user_message
        if message is None:
            raise InvalidMessage("the retrieval bot needs a user message to respond to")
        if self.preparation.stage == "idle" or not self.preparation.ready:
            self.prepare()  # a front end that does not prepare bots gets the import started here
        turns = [m.text for m in dialogue.messages if m.role in ("user", "assistant")][-self.window :]
        verdict = self.moderator.check(message.text)
        if not verdict.allowed and _strong(verdict):
            index = dialogue.state.get("deflections", 0)
            dialogue.state["deflections"] = index + 1
            return Reply(
                DEFLECTIONS[index % len(DEFLECTIONS)],
                confidence=0.0,
                meta={"source": "moderated", "reasons": list(verdict.reasons)},
            )
        meta: dict[str, Any] = {}
        effects = []
        if not verdict.allowed:
            meta["learned"] = {"skipped": "the screen refused it", "reasons": list(verdict.reasons)}
        elif self.learn:
            meta["learned"], effect = self._lesson(dialogue, verdict.score)
            if effect is not None:
                effects.append(effect)
        reply = self._answer(dialogue, turns)
        reply.meta.update(meta)
        reply.effects.extend(effects)
        return reply

    def _lesson(self, dialogue: Dialogue, toxicity: float) -> tuple[dict[str, Any], Callable[[Any], None] | None]:
        """What the user's message teaches, and the write that records it with the turn."""
        history = [m for m in dialogue.messages if m.role in ("user", "assistant")]
        if len(history) < 2 or history[-2].role != "assistant":
            return {"skipped": "nothing to answer"}, None
        if history[-2].meta.get("source") in ("moderated", "fallback"):
            return {"skipped": "the bot's line was not from memory"}, None
        user_id = dialogue.user_id
        if not user_id:
            return {"skipped": "anonymous users do not teach"}, None
        if self.learn_per_hour == 0 or (
            self.memory.teachings_since(user_id, utcnow() - timedelta(hours=1)) >= self.learn_per_hour
        ):
            return {"skipped": "rate limit"}, None
        context = [m.text for m in history[:-1]][-self.window :]
        taught = history[-1].text
        try:
            vectors = self.embedder.encode([*context, taught])
        except ConfigError as exc:
            return {"skipped": f"no embedding model: {exc}"}, None
        exchange, status, teachers = self.memory.lesson(context[-1], taught, user_id)
        if status is None or status == "quarantined":
            status = "approved" if teachers >= self.min_teachers else "quarantined"
        memory, min_teachers, conversation = self.memory, self.min_teachers, dialogue.conversation_id

        def record(session: Any) -> None:
            memory.teach_in(
                session,
                context,
                taught,
                user_id=user_id,
                conversation_id=conversation,
                vector=context_vector(vectors[:-1]),
                reply_vector=vectors[-1],
                toxicity=toxicity,
                min_teachers=min_teachers,
            )

        return {"exchange": exchange, "status": status, "teachers": teachers}, record

    def _answer(self, dialogue: Dialogue, turns: list[str]) -> Reply:
        recent: list[str] = dialogue.state.setdefault("recent", [])
        said = set(recent)
        echo = normalise(turns[-1])
        wanted = max(self.k * 3, 20)
        hybrid = self.hybrid
        # While embeddings are missing the model may already be loaded: it still ranks the replies.
        query = self.served.query_vector(turns) if hybrid or getattr(self.embedder, "loaded", True) else None
        if hybrid:
            hits = self.served.search(turns, k=wanted, vector=query)
            found: list[tuple[int, float, Hit | None]] = [(h.id, h.score, h) for h in hits]
        else:
            lexical = self.served.search_lexical(turns, k=wanted)
            best = lexical[0][1] if lexical else 1.0
            found = [(i, bm25 / best, None) for i, bm25 in lexical]
        rows = self.memory.replies([i for i, _, _ in found])
        picked: list[tuple[int, ServedReply, float, Hit | None]] = []
        for exchange_id, match, hit in found:
            row = rows.get(exchange_id)
            if row is None:
                continue
            reply_key = normalise(row.reply)
            if reply_key in said or reply_key == echo or not reply_key:
                continue
            picked.append((exchange_id, row, match, hit))
            if len(picked) == self.k:
                break
        fits = self._fits([row for _, row, _, _ in picked], query) if query is not None else [None] * len(picked)
        candidates = []
        for (exchange_id, row, match, hit), fit in zip(picked, fits, strict=True):
            score = match if fit is None else (1 - REPLY_FIT_WEIGHT) * match + REPLY_FIT_WEIGHT * fit
            candidates.append((exchange_id, row, match, hit, score, fit))
        index_name = "hybrid" if hybrid else "lexical"
        choice = None
        while candidates:
            index = self._draw([c[4] for c in candidates], dialogue)
            row = candidates[index][1]
            # The model scored this reply when it was stored; word lists and rules run again.
            if self.moderator.check(row.reply, model_score=row.toxicity).allowed:
                choice = candidates[index]
                break
            del candidates[index]  # the screen has changed since it was stored: never say it
        if choice is None:
            return Reply(FALLBACK, confidence=0.0, meta={"source": "fallback", "index": index_name})
        exchange_id, row, match, hit, score, fit = choice
        recent.append(normalise(row.reply))
        del recent[: max(0, len(recent) - self.recent)]
        facts: dict[str, Any] = {"index": index_name, "score": round(score, 4)}
        if hit is not None:
            confidence = hit.cosine
            facts.update(cosine=round(hit.cosine, 4), bm25=round(hit.bm25, 3))
        elif query is not None:  # the matched context's embedding, computed now
            confidence = float(context_vector(self.embedder.encode(row.context)) @ query)
            facts.update(cosine=round(confidence, 4), bm25_share=round(match, 4))
        else:
            confidence = word_overlap(turns[-1], row.context[-1])
            facts.update(overlap=round(confidence, 4), bm25_share=round(match, 4))
        if fit is not None:
            facts["fit"] = round(fit, 4)
        return Reply(
            row.reply,
            confidence=float(min(1.0, max(0.0, confidence))),
            meta={
                "source": "retrieval",
                "exchange": exchange_id,
                **facts,
                "corpus": row.source,
                "matched": row.context[-1],
            },
        )

    def _fits(self, rows: list[ServedReply], query: np.ndarray) -> list[float]:
        """How well each reply fits the live context: the cosine of its embedding (stored, or
        computed now while the embedding pass has not reached it) with the context's."""
        missing = [row.reply for row in rows if row.vector is None]
        computed = dict(zip(missing, self.embedder.encode(missing), strict=True)) if missing else {}
        return [float((row.vector if row.vector is not None else computed[row.reply]) @ query) for row in rows]

    def _draw(self, scores: list[float], dialogue: Dialogue) -> int:
        if self.temperature == 0 or len(scores) == 1:
            return int(np.argmax(scores))
        seed_text = f"{dialogue.conversation_id}:{dialogue.turns}"
        seed = int.from_bytes(hashlib.blake2b(seed_text.encode(), digest_size=8).digest(), "little")
        logits = np.asarray(scores, dtype=np.float64) / self.temperature
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        return int(np.random.default_rng(seed).choice(len(scores), p=probs))


CORPUS_NAMES = ("chitchat", "self-dialogue", "chatterbot", "none")

OPTIONS = (
    Option("collection", "text", "default", "the store's collection of exchanges this bot answers from and teaches",
           client=False),
    Option("corpus", "path", "chitchat",
           "imported on the first start: chitchat, self-dialogue[:FOLDER], chatterbot[:LANGUAGE], a JSONL/CSV "
           "file, or none (start empty and learn from users)", choices=CORPUS_NAMES),
    Option("embedder", "choice", "minilm", "sentence embeddings: MiniLM, or a hashing stand-in without a model",
           choices=EMBEDDERS, client=False),
    Option("window", "int", 3, "turns before a reply that make its context (imports and searches)",
           minimum=1, maximum=10, client=False),
    Option("k", "int", 10, "candidates the reply is drawn from", minimum=1, maximum=1000),
    Option("temperature", "float", 0.05, "softmax temperature of the draw among candidates (0: always the best)",
           minimum=0, maximum=10),
    Option("learn", "bool", True, "learn the user's answers as replies to the bot's lines"),
    Option("min_teachers", "int", 3, "users who must teach a reply before it is served (quarantine)",
           minimum=1, client=False),
    Option("learn_per_hour", "int", 30, "replies one user may teach an hour", minimum=0, client=False),
    Option("threshold", "float", 0.8, "toxicity score from which the moderation model blocks a text",
           minimum=0, maximum=1, client=False),
    Option("policy", "path", None, "a moderation policy file (replaces threshold)"),
)  # fmt: skip


@declare(*OPTIONS)
def create(
    store: Any = None,
    collection: str = "default",
    corpus: str = "chitchat",
    embedder: str = "minilm",
    window: int = 3,
    k: int = 10,
    temperature: float = 0.05,
    learn: bool = True,
    min_teachers: int = 3,
    learn_per_hour: int = 30,
    threshold: float = 0.8,
    policy: str | None = None,
) -> RetrievalBot:
    """CleverBot-style retrieval bot that learns from its users, with a toxicity screen.

    Cheap and without side effects: the store, the screen, the model, the index and the corpus
    import wait for :meth:`RetrievalBot.prepare` (or the first reply). Only the policy file is
    read here, so that a broken one is reported when the bot is configured.
    """

    def open_memory() -> RetrievalMemory:
        from rejoinder.store import Store

        return RetrievalMemory(store or Store(), collection)

    screen = read_policy_file(policy) if policy else {"threshold": threshold}
    return RetrievalBot(
        RetrievalMemory(store, collection) if store is not None else open_memory,
        moderator=lambda: Moderator(**screen),
        embedder=embedder,
        corpus=None if corpus == "none" else corpus,
        window=window,
        k=k,
        temperature=temperature,
        learn=learn,
        min_teachers=min_teachers,
        learn_per_hour=learn_per_hour,
    )
