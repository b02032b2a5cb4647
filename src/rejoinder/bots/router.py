"""The router bot: a chain of bots, each answering when it is confident enough.

The classic composition of a product chat bot: the goal-oriented bot takes what it recognises
(a bank question), the LLM assistant takes the rest, and a rule-based or retrieval bot is the
last resort (when the assistant's server is down, say). Each link names a bot, its options and a
minimum confidence; a reply whose :attr:`~rejoinder.dialogue.Reply.confidence` reaches it is
taken, otherwise the next link is asked, and the refused bot's state stays as it was (a frame bot
in the middle of a task that cannot read the turn - small talk between two questions - keeps its
open frame for the next turn). A frame bot's reply is confident when it recognised an intent, a
slot value or a yes/no. The last link always answers. Every bot keeps its own
state inside the router's, so each resumes where it was after a restart.

Chains are written in a config file::

    bot: router
    options:
      chain:
        - {bot: bank, min_confidence: 0.6, options: {language: en}}
        - {bot: assistant}
        - {bot: eliza}

or on the command line: ``-o chain=bank:0.6,assistant,eliza``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from rejoinder.dialogue import (
    Bot,
    Cancel,
    Dialogue,
    PreparingBot,
    ProgressFn,
    Readiness,
    Reply,
    ReplyPieces,
    StreamingBot,
    collect,
)
from rejoinder.errors import ConfigError, RejoinderError
from rejoinder.options import Option, declare

DEFAULT_CHAIN = "bank:0.6,assistant"


@dataclass
class Link:
    name: str
    bot: Bot
    min_confidence: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)


def parse_chain(chain: Any) -> list[tuple[str, float, dict[str, Any]]]:
    """Links from ``"bank:0.6,assistant"`` or a list of ``{bot, min_confidence, options}``."""
    links: list[tuple[str, float, dict[str, Any]]] = []
    if isinstance(chain, str):
        for number, part in enumerate(p.strip() for p in chain.split(",")):
            if not part:
                raise ConfigError(f"chain link {number + 1} is empty in {chain!r}")
            name, _, threshold = part.partition(":")
            try:
                links.append((name.strip(), float(threshold) if threshold else 0.0, {}))
            except ValueError:
                raise ConfigError(f"chain link {part!r}: the confidence after ':' must be a number") from None
    elif isinstance(chain, list):
        for number, item in enumerate(chain):
            where = f"chain[{number}]"
            if not isinstance(item, dict) or not isinstance(item.get("bot"), str):
                raise ConfigError(f"{where}: expected a mapping with 'bot' (and optional min_confidence, options)")
            unknown = sorted(set(item) - {"bot", "min_confidence", "options"})
            if unknown:
                raise ConfigError(f"{where}: unknown key {', '.join(unknown)}")
            options = item.get("options") or {}
            if not isinstance(options, dict):
                raise ConfigError(f"{where}.options: expected a mapping")
            try:
                threshold = float(item.get("min_confidence", 0.0))
            except (TypeError, ValueError):
                raise ConfigError(f"{where}.min_confidence: expected a number") from None
            links.append((item["bot"], threshold, dict(options)))
    else:
        raise ConfigError("option chain: expected 'bot:confidence,bot,...' or a list of links")
    if not links:
        raise ConfigError("option chain: name at least one bot")
    for name, threshold, _ in links:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"chain link {name!r}: min_confidence must be between 0 and 1")
        if name == "router":
            raise ConfigError("a router cannot contain a router")
    return links


class RouterBot:
    """Hands each turn to the first bot of the chain that answers confidently; see the module docstring."""

    def __init__(self, links: list[Link], name: str = "router") -> None:
        if not links:
            raise ConfigError("a router needs at least one bot")
        names = [link.name for link in links]
        if len(set(names)) != len(names):
            raise ConfigError(f"a bot appears twice in the chain: {names}")
        self.links = links
        self.name = name

    def describe(self) -> str:
        """The chain, with each bot's own description where it has one."""
        parts = []
        for link in self.links:
            detail = link.bot.describe() if hasattr(link.bot, "describe") else ""
            threshold = f" (confidence >= {link.min_confidence:g})" if link.min_confidence else ""
            parts.append(f"{link.name}{threshold}{': ' + detail if detail else ''}")
        return " -> ".join(parts)

    # -- preparation: the chain is ready when every bot in it is --------------------------------------
    def readiness(self) -> Readiness:
        states = [(link.name, link.bot.readiness()) for link in self.links if isinstance(link.bot, PreparingBot)]
        waiting = [f"{name}: {r.detail}" for name, r in states if not r.complete]
        return Readiness(
            ready=all(r.ready for _, r in states),
            complete=not waiting,
            detail="; ".join(waiting),
        )

    def prepare(self, progress: ProgressFn | None = None, cancel: Cancel | None = None) -> None:
        for link in self.links:
            if cancel is not None and cancel.is_set:
                return
            if isinstance(link.bot, PreparingBot) and not link.bot.readiness().complete:
                link.bot.prepare(progress, cancel)

    # -- turns --------------------------------------------------------------------------------------------
    @staticmethod
    def _sub(dialogue: Dialogue, name: str) -> Dialogue:
        states = dialogue.state.setdefault("bots", {})
        return replace(dialogue, state=copy.deepcopy(states.get(name, {})))

    @staticmethod
    def _keep(dialogue: Dialogue, name: str, sub: Dialogue) -> None:
        dialogue.state.setdefault("bots", {})[name] = sub.state
        dialogue.state["last_bot"] = name

    def greet(self, dialogue: Dialogue) -> Reply | None:
        first = self.links[0]
        sub = self._sub(dialogue, first.name)
        reply = first.bot.greet(sub)
        self._keep(dialogue, first.name, sub)
        if reply is not None:
            reply.meta = {**reply.meta, "routed_to": first.name}
        return reply

    @staticmethod
    def _accepts(link: Link, reply: Reply) -> bool:
        """A reply is taken unless it is a fallback or its confidence is below the link's threshold;
        a bot with no notion of confidence (``None``, e.g. ELIZA) always answers."""
        if reply.meta.get("action") == "fallback" or reply.meta.get("source") == "fallback":
            return False
        return reply.confidence is None or reply.confidence >= link.min_confidence

    def _route(
        self, dialogue: Dialogue, start: int = 0, tried: list[dict[str, Any]] | None = None
    ) -> tuple[int, Dialogue, Reply | None, list[dict[str, Any]]]:
        """The index of the link that answers and its reply; None for a streaming bot still to speak.

        A refused reply is dropped whole: its state change and its effects (what it would have
        written) never reach the store.
        """
        tried = list(tried or [])
        for number in range(start, len(self.links)):
            link = self.links[number]
            last = number == len(self.links) - 1
            sub = self._sub(dialogue, link.name)
            if isinstance(link.bot, StreamingBot) and (last or link.min_confidence == 0.0):
                return number, sub, None, tried  # a generator answers everything: stream it
            try:
                reply = link.bot.respond(sub)
            except RejoinderError as exc:
                if last:
                    raise
                tried.append({"bot": link.name, "error": str(exc)})
                continue
            if last or self._accepts(link, reply):
                return number, sub, reply, tried
            tried.append({"bot": link.name, "confidence": round(reply.confidence or 0.0, 3)})
        raise ConfigError("the router's chain is empty")

    def _finish(self, dialogue: Dialogue, number: int, sub: Dialogue, reply: Reply, tried: list) -> Reply:
        name = self.links[number].name
        self._keep(dialogue, name, sub)
        reply.meta = {**reply.meta, "routed_to": name, "tried": tried}
        return reply

    def respond(self, dialogue: Dialogue) -> Reply:
        return collect(self.stream(dialogue, Cancel()))

    def stream(self, dialogue: Dialogue, cancel: Cancel) -> ReplyPieces:
        """The chosen bot's reply in pieces. A streaming bot that fails before its first piece (its
        server is down) passes the turn to the next link."""
        start, tried = 0, []
        while True:
            number, sub, reply, tried = self._route(dialogue, start, tried)
            if reply is not None:
                yield reply.text
                return self._finish(dialogue, number, sub, reply, tried)
            link = self.links[number]
            source = link.bot.stream(sub, cancel)  # type: ignore[attr-defined]
            shown: list[str] = []
            try:
                while True:
                    try:
                        piece = next(source)
                    except StopIteration as stop:
                        result = stop.value if stop.value is not None else Reply("".join(shown).strip())
                        break
                    shown.append(piece)
                    yield piece
            except RejoinderError as exc:
                if shown or number == len(self.links) - 1:
                    raise
                tried.append({"bot": link.name, "error": str(exc)})
                start = number + 1
                continue
            finally:
                source.close()
            return self._finish(dialogue, number, sub, result, tried)


@declare(
    Option(
        "chain",
        "json",
        DEFAULT_CHAIN,
        "the bots in order, 'bot:min_confidence,bot,...' or a list of {bot, min_confidence, options}",
        client=False,
        schema={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
    )
)
def create(chain: Any = DEFAULT_CHAIN, store: Any = None) -> RouterBot:
    """A chain of bots with confidence thresholds: e.g. the bank bot, then the LLM assistant."""
    from rejoinder.bots import pool_for

    pool = pool_for(store) if store is not None else None
    links = []
    for name, threshold, options in parse_chain(chain):
        try:
            if pool is not None:
                bot, options = pool.get(name, options)
            else:
                from rejoinder.bots import create_bot

                bot = create_bot(name, options)
        except RejoinderError as exc:
            raise ConfigError(f"router link {name!r}: {exc}") from None
        links.append(Link(name, bot, threshold, options))
    return RouterBot(links)
