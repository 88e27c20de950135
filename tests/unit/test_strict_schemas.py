"""OpenAI's strict-mode rules for schemas, word for word: where the first broken rule is
found (its context), and the limits on nesting and on the number of properties."""

from __future__ import annotations

from typing import Any

import pytest

from omnivox.serving.strict_schemas import StrictSchemaError, check_strict_schema


def strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def nested(levels: int) -> dict[str, Any]:
    schema = strict_object({"leaf": {"type": "string"}})
    for _ in range(levels - 1):
        schema = strict_object({"child": schema})
    return schema


def message(schema: dict[str, Any]) -> str:
    with pytest.raises(StrictSchemaError) as caught:
        check_strict_schema(schema)
    return str(caught.value)


def test_a_schema_that_follows_every_rule_passes() -> None:
    check_strict_schema(
        {
            **strict_object(
                {
                    "tags": {"type": "array", "items": strict_object({"x": {"type": "integer"}})},
                    "when": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "home": {"$ref": "#/$defs/place"},
                }
            ),
            "$defs": {"place": strict_object({"city": {"type": "string"}})},
        }
    )
    check_strict_schema(nested(10))
    # keywords are only keywords where a schema has them: these are property names
    check_strict_schema(strict_object({"not": {"type": "string"}, "if": {"type": "boolean"}}))


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {"type": "array", "items": {"type": "string"}},
            "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'.",
        ),
        (
            {"anyOf": [strict_object({})]},
            "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"None\"'.",
        ),
        (
            {"type": "object", "properties": {}},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {**strict_object({"a": {"type": "string"}}), "additionalProperties": True},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            strict_object(
                {
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
                        "required": ["street"],
                        "additionalProperties": False,
                    }
                }
            ),
            "In context=('properties', 'address'), 'required' is required to be supplied and "
            "to be an array including every key in properties. Missing 'zip'.",
        ),
        (
            strict_object(
                {"items": {"type": "array", "items": {"type": "object", "properties": {}}}}
            ),
            "In context=('properties', 'items', 'items'), 'additionalProperties' is required "
            "to be supplied and to be false.",
        ),
        (
            strict_object({"x": {"anyOf": [{"type": "null"}, {"type": "object"}]}}),
            "In context=('properties', 'x', 'anyOf', 1), 'additionalProperties' is required "
            "to be supplied and to be false.",
        ),
        (
            {
                **strict_object({}),
                "$defs": {
                    "Pet": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"a": {}, "b": {}},
                    }
                },
            },
            "In context=('$defs', 'Pet'), 'required' is required to be supplied and to be an "
            "array including every key in properties. Missing 'a', 'b'.",
        ),
        (
            strict_object(
                {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}
            ),
            "In context=('properties', 'tags'), 'uniqueItems' is not permitted.",
        ),
        (
            strict_object({"x": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}),
            "In context=('properties', 'x'), 'oneOf' is not permitted.",
        ),
        (
            {**strict_object({}), "minProperties": 1},
            "In context=(), 'minProperties' is not permitted.",
        ),
        (nested(11), "11 levels of nesting exceeds limit of 10."),
        (
            strict_object({f"p{i}": {"type": "integer"} for i in range(5001)}),
            "5001 parameters exceed the limit of 5000.",
        ),
    ],
)
def test_the_first_broken_rule_is_reported_in_openais_words(
    schema: dict[str, Any], expected: str
) -> None:
    assert message(schema) == expected


def test_properties_are_counted_across_every_object() -> None:
    def schema(n_second: int) -> dict[str, Any]:
        return strict_object(
            {
                "a": strict_object({f"p{i}": {"type": "integer"} for i in range(2500)}),
                "b": strict_object({f"q{i}": {"type": "integer"} for i in range(n_second)}),
            }
        )

    check_strict_schema(schema(2498))  # 2 + 2500 + 2498 = 5000
    assert message(schema(2499)) == "5001 parameters exceed the limit of 5000."
