"""Constrained decoding for the chat model: JSON schemas as llama.cpp grammars.

``schema_grammar`` turns a JSON schema into GBNF with ``schema_gbnf`` (the
converter of llama-cpp-python, made to enforce numeric bounds and string
formats), with one change: a string may not hold a raw control character (a
line break inside a string is written ``\\n``), so that everything the
grammar allows parses with a strict ``json.loads``. Enforced: ``type``,
``enum``, ``const``, ``required``, nested objects and arrays, ``anyOf``,
``$ref``, ``minItems``/``maxItems``, string lengths and ``pattern``,
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``, whole
``multipleOf`` on bounded ranges, and the formats ``date``, ``time``,
``date-time``, ``uuid``, ``email``, ``hostname``, ``ipv4``, ``ipv6``, ``uri``
and ``duration``. Other formats are annotations, as JSON Schema says, and
leave the string free; keywords the grammar can not honour together raise
``SchemaError`` (see ``schema_gbnf`` for the details and the limits).

``response_format`` (``json_object``, ``json_schema``) becomes a grammar for
the whole answer plus a line for the system prompt that tells the model what
is wanted: the grammar guarantees the shape, the line makes the words better.
A ``json_schema`` is enforced whether or not it says ``strict``. A token limit
can still cut an answer short (``finish_reason`` "length"), as with OpenAI.

This module knows nothing of prompts' other parts, of tools or of HTTP; a
schema it can not convert raises ``SchemaError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omnivox.engines.base import ResponseFormat

ANY_OBJECT_SCHEMA: Mapping[str, Any] = {"type": "object"}
_LOOSE_CHAR_RULE = 'char ::= [^"\\\\] |'
_STRICT_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
JSON_OBJECT_HINT = "Answer with a single JSON object and nothing else."


class SchemaError(ValueError):
    """A JSON schema that can not be turned into a grammar; the message says why."""


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """GBNF whose ``root`` rule matches JSON texts valid under ``schema`` (see above)."""
    from omnivox.engines.cascade.schema_gbnf import schema_to_gbnf  # loads llama_cpp

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
    return "\n".join(lines) + "\n"


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
