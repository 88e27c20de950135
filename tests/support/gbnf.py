"""Read GBNF grammars in tests: does llama.cpp parse one, which texts does it match, and
random texts it allows.

``Grammar(text)`` parses the subset of GBNF that omnivox and llama-cpp-python's schema
converter write: one rule per line, string literals, character classes, rule names,
groups, ``|`` and the postfix operators ``* + ?``, ``{m}``, ``{m,}`` and ``{m,n}``.
Matching inlines the rules into one Python regular expression, so it works for the
grammars without recursion (numbers, formatted strings, flat objects); ``sample`` draws
random texts from any of them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cached_property

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-"}
UNLIMITED_REPEATS = 12  # how many times a sampler repeats an item that may repeat without end


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class CharClass:
    ranges: tuple[tuple[int, int], ...]
    negated: bool


@dataclass(frozen=True)
class RuleRef:
    name: str


@dataclass(frozen=True)
class Sequence:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Choice:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    least: int
    most: int | None


Node = Literal | CharClass | RuleRef | Sequence | Choice | Repeat


def llama_parses(grammar: str) -> bool:
    """Whether llama.cpp's own grammar parser accepts ``grammar`` (its root is ``root``)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


class Grammar:
    def __init__(self, text: str) -> None:
        self.rules: dict[str, Node] = {}
        for line in text.splitlines():
            if line.strip():
                name, _, body = line.partition("::=")
                self.rules[name.strip()] = _Parser(body).parse()

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self._regex(self.rules["root"], ()), re.DOTALL)

    def matches(self, text: str) -> bool:
        return self.regex.fullmatch(text) is not None

    def sample(self, rng: random.Random, rule: str = "root") -> str:
        return self._sample(self.rules[rule], rng)

    def _regex(self, node: Node, stack: tuple[str, ...]) -> str:
        if isinstance(node, Literal):
            return re.escape(node.text)
        if isinstance(node, CharClass):
            inside = "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in node.ranges)
            return f"[{'^' if node.negated else ''}{inside}]"
        if isinstance(node, RuleRef):
            if node.name in stack:
                raise ValueError(f"rule {node.name} is recursive: no regular expression")
            return f"(?:{self._regex(self.rules[node.name], (*stack, node.name))})"
        if isinstance(node, Sequence):
            return "".join(self._regex(item, stack) for item in node.items)
        if isinstance(node, Choice):
            return "(?:" + "|".join(self._regex(o, stack) for o in node.options) + ")"
        most = "" if node.most is None else str(node.most)
        return f"(?:{self._regex(node.item, stack)}){{{node.least},{most}}}"

    def _sample(self, node: Node, rng: random.Random) -> str:
        if isinstance(node, Literal):
            return node.text
        if isinstance(node, CharClass):
            assert not node.negated, "sampling a negated class is not supported"
            lo, hi = rng.choice(node.ranges)
            return chr(rng.randint(lo, hi))
        if isinstance(node, RuleRef):
            return self._sample(self.rules[node.name], rng)
        if isinstance(node, Sequence):
            return "".join(self._sample(item, rng) for item in node.items)
        if isinstance(node, Choice):
            return self._sample(rng.choice(node.options), rng)
        most = node.least + UNLIMITED_REPEATS if node.most is None else node.most
        count = rng.choice([node.least, most, rng.randint(node.least, most)])
        return "".join(self._sample(node.item, rng) for _ in range(count))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Node:
        node = self._choice()
        self._space()
        if self.pos != len(self.text):
            raise ValueError(f"unexpected {self.text[self.pos :]!r}")
        return node

    def _space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def _peek(self) -> str:
        self._space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _choice(self) -> Node:
        options = [self._sequence()]
        while self._peek() == "|":
            self.pos += 1
            options.append(self._sequence())
        return options[0] if len(options) == 1 else Choice(tuple(options))

    def _sequence(self) -> Node:
        items: list[Node] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._postfix(self._atom()))
        return items[0] if len(items) == 1 else Sequence(tuple(items))

    def _atom(self) -> Node:
        ch = self._peek()
        if ch == '"':
            self.pos += 1
            chars = []
            while self.text[self.pos] != '"':
                chars.append(self._char())
            self.pos += 1
            return Literal("".join(chars))
        if ch == "[":
            self.pos += 1
            negated = self.text[self.pos] == "^"
            self.pos += negated
            ranges = []
            while self.text[self.pos] != "]":
                lo = self._char()
                hi = lo
                if self.text[self.pos] == "-" and self.text[self.pos + 1] != "]":
                    self.pos += 1
                    hi = self._char()
                ranges.append((ord(lo), ord(hi)))
            self.pos += 1
            return CharClass(tuple(ranges), negated)
        if ch == "(":
            self.pos += 1
            node = self._choice()
            assert self._peek() == ")"
            self.pos += 1
            return node
        match = re.compile(r"[a-zA-Z0-9-]+").match(self.text, self.pos)
        if not match:
            raise ValueError(f"unexpected {self.text[self.pos :]!r}")
        self.pos = match.end()
        return RuleRef(match.group())

    def _postfix(self, node: Node) -> Node:
        while True:
            ch = self._peek()
            if ch and ch in "*+?":
                self.pos += 1
                least, most = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
                node = Repeat(node, least, most)
            elif ch == "{":
                end = self.text.index("}", self.pos)
                counts = self.text[self.pos + 1 : end]
                self.pos = end + 1
                low, comma, high = counts.partition(",")
                most = int(low) if not comma else (int(high) if high.strip() else None)
                node = Repeat(node, int(low), most)
            else:
                return node

    def _char(self) -> str:
        ch = self.text[self.pos]
        if ch != "\\":
            self.pos += 1
            return ch
        code = self.text[self.pos + 1]
        if code == "x":
            value = self.text[self.pos + 2 : self.pos + 4]
            self.pos += 4
            return chr(int(value, 16))
        if code in ("u", "U"):
            width = 4 if code == "u" else 8
            value = self.text[self.pos + 2 : self.pos + 2 + width]
            self.pos += 2 + width
            return chr(int(value, 16))
        self.pos += 2
        return _ESCAPES[code]
