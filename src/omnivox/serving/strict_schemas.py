"""OpenAI's rules for schemas marked ``strict``, checked before any model work.

A function tool with ``"strict": true`` (``tools[i].function``, or a legacy
``functions[i]``) and a ``response_format`` of type ``json_schema`` with
``"strict": true`` must follow the rules of OpenAI's Structured Outputs; a
schema that breaks one is a 400 ``invalid_request_error`` in OpenAI's words,
with code ``invalid_function_parameters`` (param
``tools[i].function.parameters``) or ``invalid_json_schema`` (param
``response_format``):

- the root is an object (``"type": "object"``; not ``anyOf``, not a list of
  types): ``schema must be a JSON Schema of 'type: "object"', got 'type: "array"'.``
- every object (a schema whose ``type`` is or includes "object", or that has
  ``properties``), wherever it is (properties, ``items``, ``anyOf``,
  ``allOf``, ``oneOf``, ``$defs``/``definitions``), says
  ``"additionalProperties": false`` and lists every key of its
  ``properties`` in ``required``: ``In context=('properties', 'address'),
  'required' is required to be supplied and to be an array including every
  key in properties. Missing 'zip'.`` The context is the path of keys from the
  root to that object, as a Python tuple. Objects are checked depth first,
  in the order they are written; the first broken rule is the one reported.
- no keyword that constrained decoding does not enforce (``NOT_PERMITTED``:
  ``allOf``, ``oneOf``, ``not``, ``if``/``then``/``else``, ``uniqueItems``,
  ``contains``, ``patternProperties``, ``minProperties``...), anywhere:
  ``In context=('properties', 'tags'), 'uniqueItems' is not permitted.``
  So a strict schema's answers always validate; a schema without ``strict``
  may use them, and they are then not enforced.
- at most ``MAX_NESTING`` levels of objects (the root is level 1; arrays and
  ``anyOf`` add none; a ``$ref`` is not followed, and a ``$defs`` entry counts
  one level below the object that holds it): ``11 levels of nesting exceeds
  limit of 10.``
- at most ``MAX_PROPERTIES`` properties in all objects together:
  ``5001 parameters exceed the limit of 5000.``

Schemas without ``strict`` are not checked here: they are used as they are
(the grammar still enforces them). This module knows nothing of engines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from omnivox.errors import InvalidRequestError
from omnivox.protocol import requests as wire

MAX_NESTING = 10
MAX_PROPERTIES = 5000
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("$defs", "definitions")
NOT_PERMITTED = (
    "allOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "minProperties",
    "maxProperties",
)


@dataclass(frozen=True, slots=True)
class _Object:
    schema: Mapping[str, Any]
    context: tuple[str | int, ...]
    level: int


class StrictSchemaError(ValueError):
    """A broken rule, in OpenAI's words (without the "Invalid schema for ..." head)."""


def check_strict_schemas(req: wire.CreateChatCompletionRequest) -> None:
    """Raise OpenAI's 400 for the first strict schema of ``req`` that breaks a rule."""
    for i, tool in enumerate(req.tools or ()):
        if isinstance(tool, wire.ChatCompletionFunctionToolParam):
            _check_function(tool.function, f"tools[{i}].function.parameters")
    for i, function in enumerate(req.functions or ()):
        _check_function(function, f"functions[{i}].parameters")
    fmt = req.response_format
    if isinstance(fmt, wire.ResponseFormatJSONSchema) and fmt.json_schema.strict:
        schema = fmt.json_schema.schema_
        if schema is not None:
            try:
                check_strict_schema(schema)
            except StrictSchemaError as exc:
                raise InvalidRequestError(
                    f"Invalid schema for response_format '{fmt.json_schema.name}': {exc}",
                    param="response_format",
                    code="invalid_json_schema",
                ) from None


def _check_function(function: wire.FunctionDefinition, param: str) -> None:
    if not function.strict or function.parameters is None:
        return
    try:
        check_strict_schema(function.parameters)
    except StrictSchemaError as exc:
        raise InvalidRequestError(
            f"Invalid schema for function '{function.name}': {exc}",
            param=param,
            code="invalid_function_parameters",
        ) from None


def check_strict_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``StrictSchemaError`` for the first rule of strict mode that ``schema`` breaks."""
    kind = schema.get("type")
    if kind != "object":
        raise StrictSchemaError(
            f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'."
        )
    deepest = 0
    n_properties = 0
    for found in _subschemas(schema, (), 0):
        _check_keywords(found)
        if not _is_object(found.schema):
            continue
        _check_object(found)
        deepest = max(deepest, found.level)
        n_properties += len(found.schema.get("properties") or {})
    if deepest > MAX_NESTING:
        raise StrictSchemaError(f"{deepest} levels of nesting exceeds limit of {MAX_NESTING}.")
    if n_properties > MAX_PROPERTIES:
        raise StrictSchemaError(f"{n_properties} parameters exceed the limit of {MAX_PROPERTIES}.")


def _check_keywords(found: _Object) -> None:
    for keyword in NOT_PERMITTED:
        if keyword in found.schema:
            raise StrictSchemaError(f"In context={found.context!r}, '{keyword}' is not permitted.")


def _check_object(found: _Object) -> None:
    schema, where = found.schema, f"In context={found.context!r}"
    if schema.get("additionalProperties") is not False:
        raise StrictSchemaError(
            f"{where}, 'additionalProperties' is required to be supplied and to be false."
        )
    properties = schema.get("properties") or {}
    required = schema.get("required")
    listed = required if isinstance(required, list) else []
    missing = [key for key in properties if key not in listed]
    if properties and (not isinstance(required, list) or missing):
        names = ", ".join(f"'{key}'" for key in missing)
        raise StrictSchemaError(
            f"{where}, 'required' is required to be supplied and to be an array including "
            f"every key in properties. Missing {names}."
        )


def _is_object(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return (
        kind == "object"
        or (isinstance(kind, list) and "object" in kind)
        or (kind is None and "properties" in schema)
    )


def _subschemas(schema: Any, context: tuple[str | int, ...], level: int) -> Iterator[_Object]:
    """Every schema under ``schema`` (itself included), depth first; ``level`` counts
    the objects on the way down."""
    if not isinstance(schema, Mapping):
        return
    if _is_object(schema):
        level += 1
    yield _Object(schema, context, level)
    if level > MAX_NESTING:
        return  # too deep already: the nesting error is the answer
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            yield from _subschemas(sub, (*context, "properties", key), level)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _subschemas(items, (*context, "items"), level)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from _subschemas(extra, (*context, "additionalProperties"), level)
    for key in _SUBSCHEMA_LISTS:
        subs = schema.get(key)
        if isinstance(subs, list):
            for i, sub in enumerate(subs):
                yield from _subschemas(sub, (*context, key, i), level)
    for key in _SUBSCHEMA_MAPS:
        subs = schema.get(key)
        if isinstance(subs, Mapping):
            for name, sub in subs.items():
                yield from _subschemas(sub, (*context, key, name), level)
