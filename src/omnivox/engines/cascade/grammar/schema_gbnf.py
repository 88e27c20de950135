"""JSON schema -> GBNF: llama-cpp-python's converter, made to honour what it skips.

``schema_to_gbnf`` runs llama-cpp-python's ``SchemaConverter`` with ``visit``
overridden for what the library does not enforce; everything else is the
library's own:

- ``integer`` / ``number`` with ``minimum``, ``maximum``,
  ``exclusiveMinimum``, ``exclusiveMaximum`` (2020-12's numbers, or
  draft 4's booleans beside ``minimum``/``maximum``): exactly the integers in
  range, or the numbers in range with at most ``fraction_digits_needed``
  (usually 6) digits after the point and no exponent (``number_ranges``).
- ``multipleOf``: 1 makes a ``number`` an integer; a whole ``k`` > 1 is
  honoured by listing the multiples of a bounded range of at most
  ``MAX_LISTED_MULTIPLES`` of them. Any other ``multipleOf`` (fractions,
  open ranges) raises ``SchemaError``.
- string ``format`` s ``date``, ``date-time``, ``email``, ``hostname``,
  ``ipv4``, ``ipv6``, ``uri``, ``duration`` (``string_formats``); ``time``
  and ``uuid`` are the library's. Any other format is an annotation and
  leaves the string free. A format with ``pattern`` raises ``SchemaError``,
  as does one with ``minLength``/``maxLength`` that its texts might break.
- ``enum`` / ``const`` values that the schema's ``type`` or numeric bounds
  rule out are dropped (the library would allow them).
- a ``type`` list (``["integer", "null"]``) keeps the schema's other
  keywords for each type, where the library keeps only the type.
- ``minLength``/``maxLength`` of a plain string and ``minItems``/``maxItems``
  of an array are written with llama.cpp's counted repetitions
  (``char{0,500}``), in chunks of ``REPEAT_CHUNK``: the library nests one
  group per optional item, which llama.cpp refuses past about 1,000 (and
  then prints the whole grammar to stderr) and whose parser overflows the
  stack (crashing the process) at about 18,700. Counts above
  ``MAX_REPETITIONS`` raise ``SchemaError`` before anything is written
  (the library would build a string of gigabytes for ``maxLength`` 1e9).
- ``pattern`` s are the library's, which nests a group per optional
  repetition as above: a count in a pattern (``{m,n}``) may not exceed
  ``MAX_PATTERN_REPEAT`` (a quarter of where llama.cpp gives up), nor all
  counts of the schema's patterns together ``MAX_PATTERN_REPEATS``, nor
  their text ``MAX_PATTERN_CHARS`` characters (the library reads patterns a
  character at a time: 900,000 characters took 0.8 s).

Schemas that can not be honoured (an empty range, a bound that is not a
finite number) raise ``SchemaError`` with the reason; nothing is silently
dropped. Importing this module loads llama-cpp-python (and its native
library); ``structured`` imports it only when it builds a grammar. This module
knows nothing of prompts, tools or HTTP.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from llama_cpp.llama_grammar import (
    PRIMITIVE_RULES,
    RESERVED_NAMES,
    STRING_FORMAT_RULES,
    SchemaConverter,
)

from omnivox.engines.cascade.grammar.number_ranges import (
    Bound,
    decimal_range,
    fraction_digits_needed,
    integer_range,
    within,
)
from omnivox.engines.cascade.grammar.string_formats import LENGTHS, format_rule
from omnivox.engines.cascade.grammar.structured import TOO_MUCH, SchemaError

MAX_LISTED_MULTIPLES = 256
REPEAT_CHUNK = 500  # the largest count written: a quarter of llama.cpp's limit of 2000
MAX_REPETITIONS = REPEAT_CHUNK * REPEAT_CHUNK  # chunks are counted by the same limit
MAX_PATTERN_REPEAT = 250
MAX_PATTERN_REPEATS = 2500
MAX_PATTERN_CHARS = 20_000
LENGTH_KEYWORDS = ("minLength", "maxLength")
ITEMS_KEYWORDS = ("minItems", "maxItems")
_QUANTIFIER = re.compile(r"\\.|\[(?:\\.|[^\]])*\]?|\{([^}]*)\}?")
NUMERIC_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
JSON_TYPES: dict[type, tuple[str, ...]] = {
    bool: ("boolean",),
    int: ("integer", "number"),
    float: ("number",),
    str: ("string",),
    list: ("array",),
    dict: ("object",),
    type(None): ("null",),
}


def schema_to_gbnf(schema: Mapping[str, Any]) -> str:
    """GBNF whose ``root`` rule matches the JSON texts valid under ``schema``."""
    converter = BoundedSchemaConverter()
    copied = json.loads(json.dumps(schema))  # the library rewrites "$ref"s in place
    converter.visit(converter.resolve_refs(copied, "input"), "")
    return str(converter.format_grammar())


class BoundedSchemaConverter(SchemaConverter):
    """llama-cpp-python's converter with ``visit`` extended as this module describes."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._pattern_repeats = 0
        self._pattern_chars = 0

    def visit(self, schema: Any, name: str) -> str:
        if not isinstance(schema, dict) or any(k in schema for k in ("$ref", "oneOf", "anyOf")):
            return str(super().visit(schema, name))
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        kind = schema.get("type")
        if isinstance(kind, list) and "const" not in schema and "enum" not in schema:
            alternatives = [
                self.visit({**schema, "type": t}, f"{name}{'-' if name else 'alternative-'}{i}")
                for i, t in enumerate(kind)
            ]
            return str(self._add_rule(rule_name, " | ".join(alternatives)))
        if kind in (None, "string") and isinstance(schema.get("pattern"), str):
            self._count_pattern_repeats(schema["pattern"])
        if "const" in schema or "enum" in schema:
            return str(super().visit(_allowed_values(schema), name))
        if kind in ("integer", "number") and _has_numeric_keywords(schema):
            return str(self._add_rule(rule_name, _number_rule(schema) + " space"))
        fmt = schema.get("format")
        if kind in (None, "string") and isinstance(fmt, str) and fmt in LENGTHS:
            _check_format_keywords(schema, fmt)
            text_rule = format_rule(fmt, self._add_rule)
            if text_rule is not None:
                string = self._add_rule(f"{fmt}-string", f'"\\"" {text_rule} "\\"" space')
                return str(self._add_rule(rule_name, string))
        if kind == "string" and _has_counted_length(schema):
            return str(self._add_rule(rule_name, self._string_rule(schema)))
        if _is_counted_list(schema):
            return str(self._add_rule(rule_name, self._list_rule(schema, name)))
        return str(super().visit(schema, name))

    def _string_rule(self, schema: Mapping[str, Any]) -> str:
        least, most = _counts(schema, *LENGTH_KEYWORDS)
        char = str(self._add_primitive("char", PRIMITIVE_RULES["char"]))
        return f'"\\"" {self._repeat(char, least, most)} "\\"" space'

    def _list_rule(self, schema: Mapping[str, Any], name: str) -> str:
        """The library's array of ``items`` (items separated by "," and spaces), counted."""
        least, most = _counts(schema, *ITEMS_KEYWORDS)
        if most == 0:
            return '"[" space "]" space'
        item = str(self.visit(schema["items"], f"{name}{'-' if name else ''}item"))
        following = str(self._add_rule(f"{item}-following", f'"," space {item}'))
        rest = self._repeat(following, max(least - 1, 0), None if most is None else most - 1)
        items = f"{item} {rest}".strip()
        return f'"[" space {items if least else f"({items})?"} "]" space'

    def _repeat(self, unit: str, least: int, most: int | None) -> str:
        """``unit`` (a rule) ``least`` to ``most`` times (None: no end), no count above
        ``REPEAT_CHUNK``: beyond it whole chunks are counted."""
        size = REPEAT_CHUNK
        chunks, single = divmod(least, size)
        parts = [_times(self._chunk(unit), chunks) if chunks else "", _times(unit, single)]
        extra = None if most is None else most - least
        if extra is None:
            parts.append(f"{unit}*")
        elif extra <= size:
            parts.append(_up_to(unit, extra))
        else:  # fewer than the last whole chunk, or that many chunks and what is left
            chunks, single = divmod(extra, size)
            chunk = self._chunk(unit)
            fewer = f"{_up_to(chunk, chunks - 1)} {_up_to(unit, size - 1)}".strip()
            full = f"{_times(chunk, chunks)} {_up_to(unit, single)}".strip()
            parts.append(f"({fewer} | {full})")
        return " ".join(p for p in parts if p)

    def _chunk(self, unit: str) -> str:
        return str(self._add_rule(f"{unit}-chunk", f"{unit}{{{REPEAT_CHUNK}}}"))

    def _count_pattern_repeats(self, pattern: str) -> None:
        self._pattern_chars += len(pattern)
        if self._pattern_chars > MAX_PATTERN_CHARS:
            raise SchemaError(
                f"patterns of {self._pattern_chars} characters in all {TOO_MUCH} "
                f"(at most {MAX_PATTERN_CHARS})"
            )
        for match in _QUANTIFIER.finditer(pattern):
            counts = [c.strip() for c in (match[1] or "").split(",")]
            if not all(c.isdigit() or c == "" for c in counts):
                continue  # not a quantifier; the library reads it (or says why it can not)
            largest = max((int(c) for c in counts if c), default=0)
            if largest > MAX_PATTERN_REPEAT:
                raise SchemaError(
                    f"the repetition {match[0]} in 'pattern' {TOO_MUCH} "
                    f"(at most {MAX_PATTERN_REPEAT})"
                )
            self._pattern_repeats += largest
        if self._pattern_repeats > MAX_PATTERN_REPEATS:
            raise SchemaError(
                f"repetitions adding up to {self._pattern_repeats} in the schema's patterns "
                f"{TOO_MUCH} (at most {MAX_PATTERN_REPEATS})"
            )


def _has_counted_length(schema: Mapping[str, Any]) -> bool:
    """Whether the library would write this string's length with nested groups."""
    fmt = schema.get("format")
    library_format = isinstance(fmt, str) and (
        fmt in LENGTHS or re.match(r"^uuid[1-5]?$", fmt) or f"{fmt}-string" in STRING_FORMAT_RULES
    )
    return (
        any(k in schema for k in LENGTH_KEYWORDS) and "pattern" not in schema and not library_format
    )


def _is_counted_list(schema: Mapping[str, Any]) -> bool:
    """Whether the library would write this schema as an array of ``items``."""
    if not isinstance(schema.get("items"), dict):
        return False
    kind = schema.get("type")
    object_like = "properties" in schema or "allOf" in schema
    return kind == "array" or (
        kind is None and not object_like and schema.get("additionalProperties", True) is True
    )


def _counts(schema: Mapping[str, Any], low: str, high: str) -> tuple[int, int | None]:
    """``schema[low]`` and ``schema[high]`` (0 and None when absent), checked."""
    least, most = _count(schema, low) or 0, _count(schema, high)
    if most is not None and least > most:
        raise SchemaError(f"'{low}' {least} is more than '{high}' {most} in {json.dumps(schema)}")
    return least, most


def _count(schema: Mapping[str, Any], keyword: str) -> int | None:
    value = schema.get(keyword)
    if value is None:
        return None
    whole = isinstance(value, int | float) and not isinstance(value, bool) and value % 1 == 0
    if not whole or value < 0:
        raise SchemaError(f"'{keyword}' must be a non-negative integer, not {json.dumps(value)}")
    if value > MAX_REPETITIONS:
        raise SchemaError(f"{keyword} {int(value)} {TOO_MUCH} (at most {MAX_REPETITIONS})")
    return int(value)


def _times(unit: str, count: int) -> str:
    return "" if count == 0 else unit if count == 1 else f"{unit}{{{count}}}"


def _up_to(unit: str, count: int) -> str:
    return "" if count == 0 else f"{unit}?" if count == 1 else f"{unit}{{0,{count}}}"


def _has_numeric_keywords(schema: Mapping[str, Any]) -> bool:
    return any(k in schema for k in NUMERIC_KEYWORDS)


def _number_rule(schema: Mapping[str, Any]) -> str:
    low, high = _bounds(schema)
    shown = json.dumps(schema)
    integers = schema.get("type") == "integer"
    multiple = schema.get("multipleOf")
    if multiple is not None:
        step = _whole_multiple(multiple, shown)
        if step > 1:
            return _listed_multiples(low, high, step, shown)
        integers = True
    rule = (
        integer_range(low, high)
        if integers
        else decimal_range(low, high, fraction_digits_needed(low, high))
    )
    if rule is None:
        what = "integer" if integers else "number"
        if not integers and _range_has_numbers(low, high):
            what += f" with at most {fraction_digits_needed(low, high)} digits after the point"
        raise SchemaError(f"no {what} satisfies the bounds of {shown}")
    return rule


def _bounds(schema: Mapping[str, Any]) -> tuple[Bound | None, Bound | None]:
    """The tightest lower and upper bounds the schema's keywords give."""
    lows = _side(schema, "minimum", "exclusiveMinimum")
    highs = _side(schema, "maximum", "exclusiveMaximum")
    low = max(lows, key=lambda b: (b.value, b.exclusive), default=None)
    high = min(highs, key=lambda b: (b.value, not b.exclusive), default=None)
    return low, high


def _side(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> list[Bound]:
    bounds = []
    marker = schema.get(exclusive)
    if inclusive in schema:
        value = _finite(schema[inclusive], inclusive)
        bounds.append(Bound(value, exclusive=marker is True))  # draft 4: a boolean beside it
    elif marker is True:
        raise SchemaError(f"'{exclusive}': true needs '{inclusive}' beside it")
    if marker is not None and not isinstance(marker, bool):
        bounds.append(Bound(_finite(marker, exclusive), exclusive=True))
    return bounds


def _finite(value: Any, keyword: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(f"'{keyword}' must be a finite number, not {json.dumps(value)}")
    return value


def _whole_multiple(multiple: Any, shown: str) -> int:
    value = _finite(multiple, "multipleOf")
    if value <= 0 or value != int(value):
        raise SchemaError(
            f"'multipleOf' {json.dumps(multiple)} can not be enforced while decoding ({shown}); "
            "only whole numbers are"
        )
    return int(value)


def _listed_multiples(low: Bound | None, high: Bound | None, step: int, shown: str) -> str:
    if low is None or high is None:
        raise SchemaError(
            f"'multipleOf' above 1 is enforced only between a minimum and a maximum ({shown})"
        )
    first = math.ceil(Fraction(low.value) / step) * step
    last = math.floor(Fraction(high.value) / step) * step
    if (last - first) // step + 1 > MAX_LISTED_MULTIPLES:
        raise SchemaError(
            f"'multipleOf' is enforced only for ranges of at most {MAX_LISTED_MULTIPLES} "
            f"multiples; {shown} has {(last - first) // step + 1}"
        )
    multiples = [n for n in range(first, last + 1, step) if within(n, low, high)]
    if not multiples:
        raise SchemaError(f"no integer satisfies the bounds and 'multipleOf' of {shown}")
    return "(" + " | ".join(f'"{n}"' for n in multiples) + ")"


def _range_has_numbers(low: Bound | None, high: Bound | None) -> bool:
    if low is None or high is None:
        return True
    if low.value < high.value:
        return True
    return low.value == high.value and not (low.exclusive or high.exclusive)


def _allowed_values(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` as one ``enum`` of its ``enum`` / ``const`` values that its ``type`` and
    numeric bounds allow."""
    low, high = _bounds(schema)
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else None

    def keeps(value: Any) -> bool:
        types = JSON_TYPES.get(type(value), ())
        if isinstance(value, float) and value.is_integer():
            types = ("integer", "number")
        if kinds is not None and not any(t in kinds for t in types):
            return False
        return "number" not in types or within(value, low, high)

    values = schema["enum"] if "enum" in schema else [schema["const"]]
    if not isinstance(values, list):
        raise SchemaError(f"'enum' must be an array, not {json.dumps(values)}")
    kept = [v for v in values if keeps(v)]
    if not kept:
        raise SchemaError(
            f"no value of 'enum' or 'const' is allowed by the rest of {json.dumps(schema)}"
        )
    others = {k: v for k, v in schema.items() if k not in ("enum", "const", "type")}
    return {**others, "enum": kept}


def _check_format_keywords(schema: Mapping[str, Any], fmt: str) -> None:
    if "pattern" in schema:
        raise SchemaError(
            f"'format' \"{fmt}\" and 'pattern' can not both be enforced while decoding; "
            "use one of them"
        )
    shortest, longest = LENGTHS[fmt]
    min_length = schema.get("minLength", 0)
    max_length = schema.get("maxLength")
    if min_length > shortest or (max_length is not None and max_length < longest):
        lengths = f"{shortest}" if shortest == longest else f"{shortest} to {longest}"
        raise SchemaError(
            f"'format' \"{fmt}\" can not be enforced together with 'minLength'/'maxLength' "
            f"{json.dumps(schema)}: its texts are {lengths} characters long"
        )
