"""The retrieval bot (CleverBot's design): answer with what a human said next in the most similar past context.

Each turn:

1. The user's message is screened (:mod:`moderation`). A message the screen refuses is never
   learned; one it refuses on strong evidence (a listed word, a policy rule such as a threat, or
   a near-certain model score) gets a deflection instead of an answer from memory.
2. If the bot spoke last, the message is learned as a reply to the bot's utterance (and the turns
   before it), attributed to the user and the conversation. Learned replies wait in quarantine
   until enough distinct users have taught the same reply to the same context, or an admin
   approves them; a user may teach only so many replies an hour.
3. The context (the user's message and the turns before it) is searched in the served exchanges
   (:mod:`index`: BM25 + embeddings). Each candidate is scored half by how close its context was
   and half by how well its reply fits the live context (cosine of the reply's embedding with the
   context's). Replies the bot said recently in this conversation, echoes of the user and
   anything the screen now refuses are dropped, and one is drawn with probability proportional
   to ``exp(score / temperature)``. The draw is seeded
   by the conversation and turn, so a resumed conversation continues exactly as it would have.
4. The reply carries a confidence (the cosine similarity of the matched context), so a router can
   fall back to another bot when the bot is unsure.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import numpy as np

from rejoinder.bots.retrieval.index import Hit
from rejoinder.bots.retrieval.memory import RetrievalMemory, ServedReply, normalise
from rejoinder.bots.retrieval.served import ServedIndex, served_index
from rejoinder.dialogue import Dialogue, Reply, utcnow
from rejoinder.embeddings import CachedEmbedder, context_vector, load_embedder
from rejoinder.errors import ConfigError, InvalidMessage
from rejoinder.moderation import Moderator

DEFLECTIONS = (
    "I'd rather keep this friendly. What else is on your mind?",
    "Let's talk about something else.",
    "I won't repeat that. Tell me about your day instead?",
)
FALLBACK = "I don't know what to say to that yet. What would you say?"
REPLY_FIT_WEIGHT = 0.5
"""Share of a candidate's score that is how well its reply fits the live context (reply-context cosine);
the rest is how close its own context was (the index's fused score)."""

_EMBEDDERS: dict[str, CachedEmbedder] = {}


STRONG_MODEL_SCORE = 0.95


def _strong(verdict: Any) -> bool:
    """Evidence enough to refuse to talk: a listed word, a policy rule, or a near-certain model score.

    Milder model scores ("that sucks") still keep a message from being learned, but get an answer.
    """
    return verdict.score >= STRONG_MODEL_SCORE or any(not r.startswith("model:") for r in verdict.reasons)


def shared_embedder(name: str) -> CachedEmbedder:
    """One embedder per process and name: the model loads once."""
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = load_embedder(name)
    return _EMBEDDERS[name]


class RetrievalBot:
    """Answers from human replies in the store and learns new ones from its users."""

    def __init__(
        self,
        memory: RetrievalMemory,
        served: ServedIndex,
        moderator: Moderator,
        *,
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
        self.memory = memory
        self.served = served
        self.moderator = moderator
        self.window = window
        self.k = k
        self.temperature = temperature
        self.learn = learn
        self.min_teachers = min_teachers
        self.learn_per_hour = learn_per_hour
        self.recent = recent

    def greet(self, dialogue: Dialogue) -> Reply | None:
        return None

    # -- a turn ---------------------------------------------------------------------------------
    def respond(self, dialogue: Dialogue) -> Reply:
        message = dialogue.last_user_message
        if message is None:
            raise InvalidMessage("the retrieval bot needs a user message to respond to")
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
        if not verdict.allowed:
            meta["learned"] = {"skipped": "the screen refused it", "reasons": list(verdict.reasons)}
        elif self.learn:
            meta["learned"] = self._learn(dialogue, verdict.score)
        reply = self._answer(dialogue, turns)
        reply.meta.update(meta)
        return reply

    def _learn(self, dialogue: Dialogue, toxicity: float) -> dict[str, Any]:
        history = [m for m in dialogue.messages if m.role in ("user", "assistant")]
        if len(history) < 2 or history[-2].role != "assistant":
            return {"skipped": "nothing to answer"}
        if history[-2].meta.get("source") in ("moderated", "fallback"):
            return {"skipped": "the bot's line was not from memory"}
        if not dialogue.user_id:
            return {"skipped": "anonymous users do not teach"}
        if self.learn_per_hour == 0 or (
            self.memory.teachings_since(dialogue.user_id, utcnow() - timedelta(hours=1)) >= self.learn_per_hour
        ):
            return {"skipped": "rate limit"}
        context = [m.text for m in history[:-1]][-self.window :]
        vectors = self.served.embedder.encode([*context, history[-1].text])
        taught = self.memory.teach(
            context,
            history[-1].text,
            user_id=dialogue.user_id,
            conversation_id=dialogue.conversation_id,
            vector=context_vector(vectors[:-1]),
            reply_vector=vectors[-1],
            toxicity=toxicity,
            min_teachers=self.min_teachers,
        )
        return {"exchange": taught.exchange_id, "status": taught.status, "teachers": taught.teachers}

    def _answer(self, dialogue: Dialogue, turns: list[str]) -> Reply:
        query = self.served.query_vector(turns)
        hits = self.served.search(turns, k=max(self.k * 3, 20), vector=query)
        rows = self.memory.replies([h.id for h in hits])
        recent: list[str] = dialogue.state.setdefault("recent", [])
        said = set(recent)
        echo = normalise(turns[-1])
        candidates: list[tuple[Hit, ServedReply, float]] = []
        for hit in hits:
            row = rows.get(hit.id)
            if row is None:
                continue
            reply_key = normalise(row.reply)
            if reply_key in said or reply_key == echo or not reply_key:
                continue
            fit = float(row.vector @ query) if row.vector is not None else hit.score
            candidates.append((hit, row, (1 - REPLY_FIT_WEIGHT) * hit.score + REPLY_FIT_WEIGHT * fit))
            if len(candidates) == self.k:
                break
        choice = None
        while candidates:
            index = self._draw([score for _, _, score in candidates], dialogue)
            row = candidates[index][1]
            # The model scored this reply when it was stored; word lists and rules run again.
            if self.moderator.check(row.reply, model_score=row.toxicity).allowed:
                choice = candidates[index]
                break
            del candidates[index]  # the screen has changed since it was stored: never say it
        if choice is None:
            return Reply(FALLBACK, confidence=0.0, meta={"source": "fallback"})
        hit, row, score = choice
        recent.append(normalise(row.reply))
        del recent[: max(0, len(recent) - self.recent)]
        return Reply(
            row.reply,
            confidence=float(min(1.0, max(0.0, hit.cosine))),
            meta={
                "source": "retrieval",
                "exchange": hit.id,
                "score": round(score, 4),
                "cosine": round(hit.cosine, 4),
                "bm25": round(hit.bm25, 3),
                "corpus": row.source,
                "matched": row.context[-1],
            },
        )

    def _draw(self, scores: list[float], dialogue: Dialogue) -> int:
        if self.temperature == 0 or len(scores) == 1:
            return int(np.argmax(scores))
        seed_text = f"{dialogue.conversation_id}:{dialogue.turns}"
        seed = int.from_bytes(hashlib.blake2b(seed_text.encode(), digest_size=8).digest(), "little")
        logits = np.asarray(scores, dtype=np.float64) / self.temperature
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        return int(np.random.default_rng(seed).choice(len(scores), p=probs))


def create(
    store: Any = None,
    collection: str = "default",
    corpus: str = "chitchat",
    embedder: str = "minilm",
    window: int | str = 3,
    k: int | str = 10,
    temperature: float | str = 0.05,
    learn: bool | str = True,
    min_teachers: int | str = 3,
    learn_per_hour: int | str = 30,
    threshold: float | str = 0.8,
    policy: str | None = None,
) -> RetrievalBot:
    """CleverBot-style retrieval bot that learns from its users, with a toxicity screen."""
    from rejoinder.bots import as_bool, as_number
    from rejoinder.store import Store

    store = store or Store()
    moderator = (
        Moderator.from_policy_file(policy) if policy else Moderator(threshold=as_number("threshold", threshold, float))
    )
    memory = RetrievalMemory(store, collection)
    model = shared_embedder(embedder)
    window = as_number("window", window, int)
    if corpus and not memory.stats():
        from rejoinder.bots.retrieval.train import import_corpus, progress_printer

        import_corpus(memory, model, moderator, corpus, window=window, progress=progress_printer())
    return RetrievalBot(
        memory,
        served_index(memory, model),
        moderator,
        window=window,
        k=as_number("k", k, int),
        temperature=as_number("temperature", temperature, float),
        learn=as_bool("learn", learn),
        min_teachers=as_number("min_teachers", min_teachers, int),
        learn_per_hour=as_number("learn_per_hour", learn_per_hour, int),
    )
