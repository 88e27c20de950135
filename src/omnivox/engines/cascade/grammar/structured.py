"""Constrained decoding for the chat model: JSON schemas as llama.cpp grammars.

``schema_grammar`` turns a JSON schema into GBNF with ``schema_gbnf``, and
forbids raw control characters inside strings, so that everything the grammar
allows parses with a strict ``json.loads`` (docs/wire-format.md §10 lists what
is enforced). ``response_format`` (``json_object``, or ``json_schema``, strict
or not) becomes a grammar for the whole answer plus a system-prompt line saying
what is wanted.

llama.cpp's grammar parser recurses and has no budget, so one small schema could
overflow the stack (crashing the server), take gigabytes or hang a thread. Every
schema is measured before llama.cpp sees it, by ``check_schema_size`` before
conversion and ``check_grammar_size`` after it (size, nesting, rule chains,
fan-out, left recursion, repetitions llama.cpp would refuse or loosen), against
the ``MAX_*`` limits below, each at least 4x from where llama.cpp failed when
measured (docs/performance.md); past one, ``SchemaError`` names the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from omnivox.engines.base import ResponseFormat

ANY_OBJECT_SCHEMA: Mapping[str, Any] = {"type": "object"}
_LOOSE_CHAR_RULE = 'char ::= [^"\\\\] |'
_STRICT_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
JSON_OBJECT_HINT = "Answer with a single JSON object and nothing else."

MAX_SCHEMA_DEPTH = 100
MAX_SCHEMA_CHARS = 1_000_000
MAX_PROPERTIES = 5000
MAX_OPTIONAL_PROPERTIES = 200
MAX_ALTERNATIVES = 1000
MAX_GRAMMAR_CHARS = 1_000_000
MAX_GRAMMAR_ELEMENTS = 1_000_000
MAX_GROUP_DEPTH = 500
MAX_RULE_CHAIN = 2000
MAX_FAN_OUT = 2500
LLAMA_REPETITION_LIMIT = 2000  # llama.cpp's MAX_REPETITION_THRESHOLD
TOO_MUCH = "is more than omnivox's grammar supports"
LEFT_RECURSION = "it refers to itself before any text (left recursion), which grammars can not hold"

_TOKEN = re.compile(
    r'\s+|"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[A-Za-z0-9-]+'
    r"|\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}|[()|*+?.]"
)
_Item = tuple[str | None, bool]  # (the rule it enters, None for text; whether optional)


class SchemaError(ValueError):
    """A JSON schema that can not be turned into a grammar; the message says why."""


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """GBNF whose ``root`` rule matches JSON texts valid under ``schema`` (see above)."""
    check_schema_size(schema)
    from omnivox.engines.cascade.grammar.schema_gbnf import schema_to_gbnf  # loads llama_cpp

    try:
        text = schema_to_gbnf(schema)
    except SchemaError:
        raise
    except Exception as exc:  # the converter asserts, raises KeyError, ValueError...
        detail = str(exc) or type(exc).__name__
        raise SchemaError(f"it can not be used for constrained decoding ({detail})") from None
    lines = [
        _STRICT_CHAR_RULE + line[len(_LOOSE_CHAR_RULE) :]
        if line.startswith(_LOOSE_CHAR_RULE)
        else line
        for line in text.splitlines()
    ]
    grammar = "\n".join(lines) + "\n"
    check_grammar_size(grammar)
    return grammar


def rename_root(grammar: str, name: str) -> str:
    """The grammar with its ``root`` rule called ``name``, to embed it in a larger one."""
    lines = grammar.splitlines()
    renamed = [
        name + line[len("root") :] if line.startswith("root ::=") else line for line in lines
    ]
    return "\n".join(renamed) + "\n"


def format_grammar(fmt: ResponseFormat) -> str | None:
    """The grammar of an answer in ``fmt``; None for plain text."""
    if fmt.kind == "json_object":
        return schema_grammar(ANY_OBJECT_SCHEMA)
    if fmt.kind == "json_schema":
        return schema_grammar(fmt.schema or ANY_OBJECT_SCHEMA)
    return None


def format_hint(fmt: ResponseFormat) -> str | None:
    """A line for the system prompt that says what shape the answer takes."""
    if fmt.kind == "json_object":
        return JSON_OBJECT_HINT
    if fmt.kind == "json_schema":
        schema = json.dumps(fmt.schema or ANY_OBJECT_SCHEMA, ensure_ascii=False)
        return f"{JSON_OBJECT_HINT} It must match this JSON schema: {schema}"
    return None


def check_schema_size(schema: Mapping[str, Any]) -> None:
    """Raise ``SchemaError`` for a schema above the limits above, without recursion.

    Every object in it counts, wherever it is: a ``$ref`` may point anywhere."""
    depth = chars = n_properties = 0
    pending: list[tuple[Any, int]] = [(schema, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict):
            chars += sum(len(k) for k in node if isinstance(k, str))
            n_properties += _check_object(node)
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            chars += len(node) if isinstance(node, str) else 1
            continue
        depth = max(depth, level)
        pending.extend((child, level + 1) for child in children)
    _at_most(depth, MAX_SCHEMA_DEPTH, "a nesting depth of {} levels (objects and arrays)")
    _at_most(chars, MAX_SCHEMA_CHARS, "a schema of {} characters")
    _at_most(n_properties, MAX_PROPERTIES, "{} properties in all")


def _check_object(node: Mapping[str, Any]) -> int:
    """The number of properties ``node`` declares, once its lists are checked."""
    for keyword in ("enum", "anyOf", "oneOf"):
        values = node.get(keyword)
        if isinstance(values, list):
            _at_most(len(values), MAX_ALTERNATIVES, f"'{keyword}' with {{}} entries")
    properties = node.get("properties")
    if not isinstance(properties, dict):
        return 0
    required = node.get("required")
    listed = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    optional = sum(1 for name in properties if name not in listed)
    _at_most(optional, MAX_OPTIONAL_PROPERTIES, "an object with {} optional properties")
    return len(properties)


def _at_most(value: int, limit: int, what: str) -> None:
    if value > limit:
        raise SchemaError(f"{what.format(value)} {TOO_MUCH} (at most {limit})")


def check_grammar_size(grammar: str) -> None:
    """Raise ``SchemaError`` for GBNF above the limits above (see the module's docstring)."""
    _at_most(len(grammar), MAX_GRAMMAR_CHARS, "a grammar of {} characters")
    reader = _GrammarReader()
    for line in grammar.splitlines():
        name, is_rule, body = line.partition("::=")
        if is_rule:
            reader.read_rule(name.strip(), body)
    _at_most(reader.elements, MAX_GRAMMAR_ELEMENTS, "a grammar of {} elements")
    if _fan_out(reader.rules) > MAX_FAN_OUT:
        raise SchemaError(
            "the number of alternatives open at one point (values of enums, schemas of anyOfs, "
            "optional properties, alternatives in patterns, multiplied through $refs) "
            f"{TOO_MUCH} (at most {MAX_FAN_OUT})"
        )


class _GrammarReader:
    """GBNF read as llama.cpp's parser reads it, into rules of alternatives of items.

    Each group becomes a rule of its own, as llama.cpp makes it; ``elements``
    counts what llama.cpp stores, its repetitions written out. Symbols are
    counted as llama.cpp counts them (rule names in the order first seen, one
    per group, one per optional repetition), to find the repetitions it refuses.
    """

    def __init__(self) -> None:
        self.rules: dict[str, list[list[_Item]]] = {}
        self.elements = 0
        self._names: set[str] = set()
        self._generated = 0

    def read_rule(self, name: str, body: str) -> None:
        self._names.add(name)
        frames: list[tuple[str, list[list[_Item]], int]] = [(name, [[]], 0)]
        last = (0, 0)  # (elements, symbols) of the last item, for a repetition of it
        at = 0
        while at < len(body):
            match = _TOKEN.match(body, at)
            if match is None or (match[0][0] in "*+?{" and not frames[-1][1][-1]):
                raise SchemaError(_unusable(f"unexpected {body[at : at + 20]!r}"))
            at, token = match.end(), match[0]
            sequence = frames[-1][1][-1]
            if token[0].isspace():
                continue
            if token == "(":
                frames.append((f"{name}({self._generated}", [[]], self._symbols))
                self._generated += 1
                _at_most(len(frames) - 1, MAX_GROUP_DEPTH, "groups nested {} deep")
                continue
            if token == "|":
                frames[-1][1].append([])
                self.elements += 1
            elif token == ")" and len(frames) > 1:
                group, alternatives, before = frames.pop()
                self.rules[group] = alternatives
                frames[-1][1][-1].append((group, False))
                self.elements += 2
                last = (1, max(1, self._symbols - before))
            elif token[0] in "*+?{":
                self.elements += self._repeat(sequence, last, _counts(match))
            elif token[0] in '"[.':
                sequence.append((None, token == '""'))
                last = (max(len(token) - 2, 1), 1)
                self.elements += last[0]
            elif token != ")":
                self._names.add(token)
                sequence.append((token, False))
                last = (1, 1)
                self.elements += 1
            else:
                raise SchemaError(_unusable("unbalanced groups"))
        if len(frames) != 1:
            raise SchemaError(_unusable("unbalanced groups"))
        self.rules[name] = frames[0][1]
        self.elements += 1

    @property
    def _symbols(self) -> int:
        return len(self._names) + self._generated

    def _repeat(
        self, sequence: list[_Item], last: tuple[int, int], counts: tuple[int, int | None]
    ) -> int:
        """Apply a repetition to the last item; the elements llama.cpp adds for it."""
        least, most = counts
        for count in (least, most or 0):
            _at_most(count, LLAMA_REPETITION_LIMIT, "a repetition count of {}")
        size, symbols = last
        repeated = symbols * (most if most else least if least else 1)
        _at_most(repeated, LLAMA_REPETITION_LIMIT, "a repetition of {} rules")
        optional = 1 if most is None else most - least
        self._generated += optional
        target, optional = sequence[-1]
        sequence[-1] = (target, optional or least == 0)
        return max(least - 1, 0) * size + optional * (size + 3)


def _counts(match: re.Match[str]) -> tuple[int, int | None]:
    token = match[0]
    if token == "*":
        return 0, None
    if token == "+":
        return 1, None
    if token == "?":
        return 0, 1
    least = int(match[1])
    if match[2] is None:
        return least, least
    return least, int(match[3]) if match[3] else None


def _fan_out(rules: Mapping[str, list[list[_Item]]]) -> int:
    """The most alternatives llama.cpp keeps open at one point of the grammar."""
    weights = _first_weights(rules)
    most = max((weight for weight, _ in weights.values()), default=0)
    for alternatives in rules.values():
        for sequence in alternatives:
            following = 0
            for target, optional in reversed(sequence):
                weight, nullable = (1, False) if target is None else weights[target]
                following = min(
                    weight + (following if optional or nullable else 0), MAX_FAN_OUT + 1
                )
                most = max(most, following)
    return most


def _first_weights(rules: Mapping[str, list[list[_Item]]]) -> dict[str, tuple[int, bool]]:
    """Per rule: the alternatives llama.cpp opens on entering it (capped just past
    ``MAX_FAN_OUT``), and whether it can match nothing. Walks only what llama.cpp
    enters before any text, without recursion: a cycle there is left recursion."""
    done: dict[str, tuple[int, bool]] = {}
    for start in rules:
        if start in done:
            continue
        # each frame: rule, alternative, item, weight so far, whether it can match nothing
        frames: list[list[Any]] = [[start, 0, 0, 0, False]]
        entered = {start}
        while frames:
            frame = frames[-1]
            name, alternative, index, weight, empty = frame
            if alternative == len(rules[name]):
                done[name] = (weight, empty)
                entered.discard(name)
                frames.pop()
                continue
            sequence = rules[name][alternative]
            if index == len(sequence):  # this alternative can match nothing
                frame[1:5] = [alternative + 1, 0, weight, True]
                continue
            target, optional = sequence[index]
            if target is not None and target not in done:
                if target in entered:
                    raise SchemaError(LEFT_RECURSION)
                if target not in rules:
                    raise SchemaError(_unusable(f"no rule {target!r}"))
                _at_most(len(frames) + 1, MAX_RULE_CHAIN, "a chain of {} rules before any text")
                entered.add(target)
                frames.append([target, 0, 0, 0, False])
                continue
            item_weight, item_empty = (1, False) if target is None else done[target]
            frame[3] = min(weight + item_weight, MAX_FAN_OUT + 1)
            if optional or item_empty:
                frame[2] = index + 1
            else:
                frame[1:3] = [alternative + 1, 0]
    return done


def _unusable(detail: str) -> str:
    return f"it can not be used for constrained decoding (its grammar: {detail})"
