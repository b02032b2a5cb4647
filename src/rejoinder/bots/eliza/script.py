"""The 1966 ELIZA script format: reader, data model and checks.

A script is a sequence of S-expressions (CACM 9(1), 1966, appendix)::

    (OPENING REMARK WORDS)
    START
    (KEYWORD [= SUBSTITUTE] [DLIST(/TAG ...)] [PRECEDENCE]
        ((DECOMPOSITION) (REASSEMBLY) ...) ...
        [(=KEY)])
    (MEMORY KEY [KEY ...] (DECOMPOSITION = REASSEMBLY) x4)
    (NONE ((0) (REASSEMBLY) ...))
    ()

``;`` starts a comment that runs to the end of the line. Inside a rule a reassembly may be
``(=KEY)`` (continue with KEY's rules), ``(NEWKEY)`` (try the next keyword on the keystack) or
``(PRE (REASSEMBLY) (=KEY))`` (rewrite the text, then apply KEY's rules). A rule whose body is only
``(=KEY)``, or whose decompositions are followed by a bare ``(=KEY)``, links to KEY.

Two extensions, both unused by (and harmless to) 1966 scripts: MEMORY may name several keywords
(``(MEMORY МОЙ МОЯ МОИ ...)``, for languages whose possessives inflect), and a part number with
punctuation attached in a reassembly (``3,`` or ``4.``) inserts the part with the punctuation
glued to its last word.

Errors name the file, line and column and what was expected there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from rejoinder.errors import ScriptError

# --------------------------------------------------------------------------------------------
# S-expression reader


@dataclass(frozen=True)
class Atom:
    text: str
    line: int
    column: int


@dataclass
class SList:
    items: list[Atom | SList]
    line: int
    column: int


Node = Atom | SList


def read_sexprs(text: str, path: str | None = None) -> list[Node]:
    """Split script text into top-level atoms and lists, keeping positions for errors."""
    stack: list[SList] = []
    top: list[Node] = []
    line, column = 1, 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        column += 1
        if ch == "\n":
            line, column = line + 1, 0
            i += 1
            continue
        if ch.isspace():
            i += 1
            continue
        if ch == ";":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "(":
            stack.append(SList([], line, column))
            i += 1
            continue
        if ch == ")":
            if not stack:
                raise ScriptError("unexpected ')' with no open '('", path=path, line=line, column=column)
            done = stack.pop()
            (stack[-1].items if stack else top).append(done)
            i += 1
            continue
        start_col = column
        j = i
        while j < n and not text[j].isspace() and text[j] not in "();":
            j += 1
        atom = Atom(text[i:j], line, start_col)
        column += j - i - 1
        i = j
        (stack[-1].items if stack else top).append(atom)
    if stack:
        open_list = stack[-1]
        raise ScriptError(
            "'(' opened here is never closed (expected ')' before the end of the file)",
            path=path,
            line=open_list.line,
            column=open_list.column,
        )
    return top


# --------------------------------------------------------------------------------------------
# Data model


@dataclass(frozen=True)
class AnyOf:
    """``(*A B C)``: one word that is any of these."""

    words: frozenset[str]


@dataclass(frozen=True)
class Tagged:
    """``(/TAG ...)``: one word whose DLIST carries any of these tags."""

    tags: frozenset[str]


PatternItem = int | str | AnyOf | Tagged
"""An int n matches exactly n words (0: any number); a str matches that word."""


@dataclass(frozen=True)
class Link:
    """``(=KEY)``: continue with KEY's transformation rules on the same text."""

    key: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class NewKey:
    """``(NEWKEY)``: give up on this keyword and try the next one on the keystack."""


@dataclass(frozen=True)
class Pre:
    """``(PRE (REASSEMBLY) (=KEY))``: rebuild the text, then apply KEY's rules to it."""

    template: tuple[str | int, ...]
    link: Link


Reassembly = tuple[str | int, ...] | Link | NewKey | Pre

GLUE = "\x00"
"""Prefix of a template item holding punctuation that attaches to the word before it."""

_PART_WITH_PUNCTUATION = re.compile(r"^(\d+)([,.;:!?\u00bb\"')]+)$")


@dataclass
class Transformation:
    """One decomposition pattern with the reassembly rules used in turn when it matches."""

    rule_id: str
    decomposition: tuple[PatternItem, ...]
    reassemblies: list[Reassembly]
    line: int = 0


@dataclass
class Rule:
    keyword: str
    substitute: str | None = None
    precedence: int = 0
    tags: frozenset[str] = frozenset()
    transformations: list[Transformation] = field(default_factory=list)
    link: Link | None = None
    line: int = 0

    @property
    def is_keyword(self) -> bool:
        """Whether the word goes on the keystack (it has rules to apply, not only a substitute)."""
        return bool(self.transformations) or self.link is not None


@dataclass
class MemoryRule:
    keywords: tuple[str, ...]
    """The 1966 format names one keyword; more may follow it (for inflected languages)."""
    transformations: list[tuple[tuple[PatternItem, ...], tuple[str | int, ...]]]
    line: int = 0

    @property
    def keyword(self) -> str:
        return self.keywords[0]


@dataclass
class Script:
    opening: tuple[str, ...]
    rules: dict[str, Rule]
    memory: MemoryRule | None
    none: Rule
    source: str
    path: str | None = None

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()[:16]

    def transformation(self, rule_id: str) -> Transformation:
        keyword, _, index = rule_id.rpartition("/")
        rule = self.none if keyword == "NONE" else self.rules[keyword]
        return rule.transformations[int(index)]

    def all_transformation_ids(self) -> list[str]:
        ids = [t.rule_id for r in self.rules.values() for t in r.transformations]
        return ids + [t.rule_id for t in self.none.transformations]


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, path: str | None) -> None:
        self.path = path

    def error(self, node: Node | None, message: str) -> ScriptError:
        if node is None:
            return ScriptError(message, path=self.path)
        return ScriptError(message, path=self.path, line=node.line, column=node.column)

    @staticmethod
    def describe(node: Node) -> str:
        if isinstance(node, Atom):
            return f"atom {node.text!r}"
        return "a list" if node.items else "an empty list '()'"

    # -- top level -----------------------------------------------------------------------
    def parse(self, nodes: list[Node], source: str) -> Script:
        if not nodes:
            raise self.error(None, "the script is empty; expected an opening remark like (HOW DO YOU DO)")
        opening_node = nodes[0]
        if not isinstance(opening_node, SList):
            raise self.error(
                opening_node,
                f"expected the opening remark as a list of words, found {self.describe(opening_node)}",
            )
        opening = tuple(self.words(opening_node, "the opening remark"))
        if len(nodes) < 2 or not (isinstance(nodes[1], Atom) and nodes[1].text.upper() == "START"):
            where = nodes[1] if len(nodes) > 1 else opening_node
            found = self.describe(nodes[1]) if len(nodes) > 1 else "the end of the file"
            raise self.error(where, f"expected the atom START after the opening remark, found {found}")

        rules: dict[str, Rule] = {}
        memory: MemoryRule | None = None
        none: Rule | None = None
        for node in nodes[2:]:
            if isinstance(node, Atom):
                raise self.error(node, f"expected a keyword rule in parentheses, found {self.describe(node)}")
            if not node.items:
                # "()" closes the script (the 1966 appendix ends with it).
                continue
            head = node.items[0]
            if not isinstance(head, Atom):
                raise self.error(head, "expected a keyword as the first element of a rule, found a list")
            keyword = head.text.upper()
            if keyword == "MEMORY":
                if memory is not None:
                    raise self.error(head, f"second MEMORY rule (the first is on line {memory.line})")
                memory = self.parse_memory(node)
                continue
            rule = self.parse_rule(node, keyword)
            if keyword == "NONE":
                if none is not None:
                    raise self.error(head, f"second NONE rule (the first is on line {none.line})")
                none = rule
                continue
            if keyword in rules:
                raise self.error(head, f"keyword {keyword} is defined twice (first on line {rules[keyword].line})")
            rules[keyword] = rule

        if none is None or not none.transformations:
            raise self.error(None, "the script has no NONE rule; expected (NONE ((0) (REPLY ...) ...))")
        script = Script(opening, rules, memory, none, source, self.path)
        self.check_links(script)
        return script

    # -- pieces --------------------------------------------------------------------------
    def words(self, node: SList, what: str) -> list[str]:
        out = []
        for item in node.items:
            if not isinstance(item, Atom):
                raise self.error(item, f"expected only words in {what}, found a list")
            out.append(item.text)
        return out

    def parse_rule(self, node: SList, keyword: str) -> Rule:
        rule = Rule(keyword=keyword, line=node.line)
        items = node.items[1:]
        i = 0
        seen_precedence = False
        while i < len(items):
            item = items[i]
            if isinstance(item, Atom):
                text = item.text.upper()
                if text == "=":
                    if i + 1 >= len(items) or not isinstance(items[i + 1], Atom):
                        raise self.error(item, f"expected the substitute word after '=' in rule {keyword}")
                    rule.substitute = items[i + 1].text.upper()
                    i += 2
                    continue
                if text.startswith("=") and len(text) > 1:
                    rule.substitute = text[1:]
                    i += 1
                    continue
                if text == "DLIST":
                    if i + 1 >= len(items) or not isinstance(items[i + 1], SList):
                        raise self.error(item, f"expected a tag list like (/NOUN FAMILY) after DLIST in rule {keyword}")
                    rule.tags = self.parse_tags(items[i + 1])
                    i += 2
                    continue
                if text.isdigit():
                    if seen_precedence:
                        raise self.error(item, f"rule {keyword} has a second precedence {text}")
                    rule.precedence = int(text)
                    seen_precedence = True
                    i += 1
                    continue
                raise self.error(
                    item,
                    f"unexpected atom {item.text!r} in rule {keyword}; expected '= WORD', "
                    "DLIST(/TAGS), a precedence number or a list",
                )
            # A list: a link (=KEY) or a transformation ((decomposition) reassembly...)
            link = self.as_link(item)
            if link is not None:
                if rule.link is not None:
                    raise self.error(item, f"rule {keyword} has a second link (=KEY)")
                rule.link = link
                i += 1
                continue
            if not item.items or not isinstance(item.items[0], SList):
                raise self.error(
                    item,
                    f"expected a transformation ((DECOMPOSITION) (REASSEMBLY) ...) or a link (=KEY) "
                    f"in rule {keyword}, found {self.describe(item)}",
                )
            if rule.link is not None:
                raise self.error(item, f"rule {keyword} has a transformation after its link (=KEY)")
            rule.transformations.append(self.parse_transformation(item, keyword, len(rule.transformations)))
            i += 1
        return rule

    def parse_tags(self, node: SList) -> frozenset[str]:
        tags = []
        for item in node.items:
            if not isinstance(item, Atom):
                raise self.error(item, "expected tag words in a DLIST, found a list")
            word = item.text.upper().lstrip("/")
            if word:
                tags.append(word)
        if not tags:
            raise self.error(node, "expected at least one tag in a DLIST, like (/FAMILY)")
        return frozenset(tags)

    def as_link(self, node: SList) -> Link | None:
        """``(=KEY)`` or ``(= KEY)``, else None."""
        atoms = node.items
        if not atoms or not all(isinstance(a, Atom) for a in atoms):
            return None
        first = atoms[0].text.upper()  # type: ignore[union-attr]
        if first == "=" and len(atoms) == 2:
            return Link(atoms[1].text.upper(), node.line, node.column)  # type: ignore[union-attr]
        if first.startswith("=") and len(first) > 1 and len(atoms) == 1:
            return Link(first[1:], node.line, node.column)
        if first.startswith("="):
            raise self.error(node, "expected a link of the form (=KEYWORD)")
        return None

    def parse_pattern(self, node: SList, keyword: str) -> tuple[PatternItem, ...]:
        pattern: list[PatternItem] = []
        for item in node.items:
            if isinstance(item, Atom):
                text = item.text.upper()
                pattern.append(int(text) if text.isdigit() else text)
                continue
            atoms = []
            for sub in item.items:
                if not isinstance(sub, Atom):
                    raise self.error(sub, f"nested list inside a decomposition element of rule {keyword}")
                atoms.append(sub.text.upper())
            if not atoms:
                raise self.error(item, f"empty list in a decomposition of rule {keyword}; expected (*A B) or (/TAG)")
            if atoms[0].startswith("*"):
                words = [atoms[0][1:], *atoms[1:]]
                pattern.append(AnyOf(frozenset(w for w in words if w)))
            elif atoms[0].startswith("/"):
                tags = [atoms[0][1:], *atoms[1:]]
                pattern.append(Tagged(frozenset(t for t in tags if t)))
            else:
                raise self.error(
                    item,
                    f"expected (*WORD ...) or (/TAG ...) inside a decomposition of rule {keyword}, "
                    f"found ({' '.join(atoms)})",
                )
        if not pattern:
            raise self.error(node, f"empty decomposition in rule {keyword}; expected at least (0)")
        return tuple(pattern)

    def parse_template(self, node: SList, keyword: str, components: int) -> tuple[str | int, ...]:
        out: list[str | int] = []
        for item in node.items:
            if not isinstance(item, Atom):
                raise self.error(item, f"expected words and numbers in a reassembly of rule {keyword}, found a list")
            glued = _PART_WITH_PUNCTUATION.match(item.text)
            if item.text.isdigit() or glued:
                number = int(glued.group(1) if glued else item.text)
                if not 1 <= number <= components:
                    raise self.error(
                        item,
                        f"reassembly of rule {keyword} refers to part {number}, but its decomposition "
                        f"has {components} part(s)",
                    )
                out.append(number)
                if glued:
                    out.append(GLUE + glued.group(2))
            else:
                out.append(item.text)
        return tuple(out)

    def parse_transformation(self, node: SList, keyword: str, index: int) -> Transformation:
        decomposition_node = node.items[0]
        assert isinstance(decomposition_node, SList)
        decomposition = self.parse_pattern(decomposition_node, keyword)
        parts = len(decomposition)
        reassemblies: list[Reassembly] = []
        for item in node.items[1:]:
            if isinstance(item, Atom):
                raise self.error(item, f"expected a reassembly list in rule {keyword}, found {self.describe(item)}")
            link = self.as_link(item)
            if link is not None:
                reassemblies.append(link)
                continue
            head = item.items[0] if item.items else None
            if isinstance(head, Atom) and head.text.upper() == "NEWKEY" and len(item.items) == 1:
                reassemblies.append(NewKey())
                continue
            if isinstance(head, Atom) and head.text.upper() == "PRE":
                if len(item.items) != 3 or not isinstance(item.items[1], SList) or not isinstance(item.items[2], SList):
                    raise self.error(item, f"expected (PRE (REASSEMBLY) (=KEY)) in rule {keyword}")
                pre_link = self.as_link(item.items[2])
                if pre_link is None:
                    raise self.error(item.items[2], f"expected a link (=KEY) as the last part of PRE in rule {keyword}")
                reassemblies.append(Pre(self.parse_template(item.items[1], keyword, parts), pre_link))
                continue
            reassemblies.append(self.parse_template(item, keyword, parts))
        if not reassemblies:
            raise self.error(node, f"decomposition of rule {keyword} has no reassembly rule")
        return Transformation(f"{keyword}/{index}", decomposition, reassemblies, node.line)

    def parse_memory(self, node: SList) -> MemoryRule:
        keywords = []
        for item in node.items[1:]:
            if not isinstance(item, Atom):
                break
            keywords.append(item.text.upper())
        if not keywords:
            raise self.error(node, "expected (MEMORY KEYWORD (PATTERN = REPLY) ...)")
        transformations = []
        for item in node.items[1 + len(keywords) :]:
            if not isinstance(item, SList):
                raise self.error(item, f"expected (PATTERN = REPLY) in MEMORY, found {self.describe(item)}")
            texts = [a.text.upper() if isinstance(a, Atom) else None for a in item.items]
            if "=" not in texts:
                raise self.error(item, "expected '=' between the pattern and the reply of a MEMORY transformation")
            split = texts.index("=")
            pattern = self.parse_pattern(SList(item.items[:split], item.line, item.column), "MEMORY")
            template = self.parse_template(
                SList(item.items[split + 1 :], item.line, item.column), "MEMORY", len(pattern)
            )
            transformations.append((pattern, template))
        if len(transformations) != 4:
            raise self.error(
                node,
                f"MEMORY needs exactly 4 transformations (one per 2-bit HASH value), found {len(transformations)}",
            )
        return MemoryRule(tuple(keywords), transformations, node.line)

    def check_links(self, script: Script) -> None:
        def check(link: Link, where: str) -> None:
            target = script.rules.get(link.key)
            if target is None or not target.is_keyword:
                raise ScriptError(
                    f"{where} links to ={link.key}, but {link.key} has no transformation rules",
                    path=self.path,
                    line=link.line or None,
                    column=link.column or None,
                )

        for rule in [*script.rules.values(), script.none]:
            if rule.link:
                check(rule.link, f"rule {rule.keyword}")
            for t in rule.transformations:
                for r in t.reassemblies:
                    if isinstance(r, Link):
                        check(r, f"rule {rule.keyword}")
                    elif isinstance(r, Pre):
                        check(r.link, f"PRE in rule {rule.keyword}")
        if script.memory is not None:
            for keyword in script.memory.keywords:
                key = script.rules.get(keyword)
                if key is None or not key.is_keyword:
                    raise ScriptError(
                        f"MEMORY keyword {keyword} must also be an ordinary keyword with rules",
                        path=self.path,
                        line=script.memory.line,
                    )


def parse_script(text: str, path: str | Path | None = None) -> Script:
    """Parse script text in the 1966 format; raise :class:`ScriptError` naming line and column."""
    where = str(path) if path is not None else None
    parser = _Parser(where)
    return parser.parse(read_sexprs(text, where), text)


def load_script(path: str | Path) -> Script:
    """Read and parse a script file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScriptError("no such script file", path=p) from None
    except UnicodeDecodeError as exc:
        raise ScriptError(f"the script is not UTF-8 text (byte {exc.start})", path=p) from None
    except OSError as exc:
        raise ScriptError(f"cannot read the script: {exc.strerror}", path=p) from None
    return parse_script(text, p)
