"""JSON schemas as grammars: numeric bounds, string formats and the schemas refused.

Each grammar is parsed by llama.cpp's own parser, and its language is checked with
``tests.support.gbnf``: exact integer ranges by enumeration, numbers and formats by
texts inside and outside the schema and by random texts drawn from the grammar, which
must all validate with ``jsonschema`` and its format checkers."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest

from omnivox.engines.base import ToolSpec
from omnivox.engines.cascade.string_formats import LENGTHS
from omnivox.engines.cascade.structured import SchemaError, schema_grammar
from omnivox.engines.cascade.tools import call_grammar
from tests.support.gbnf import Grammar, llama_parses

VALIDATOR = jsonschema.Draft202012Validator
N_SAMPLES = 400


def grammar(schema: dict[str, Any]) -> Grammar:
    text = schema_grammar(schema)
    assert llama_parses(text), text
    return Grammar(text)


def valid(schema: dict[str, Any], value: Any) -> bool:
    return VALIDATOR(schema, format_checker=VALIDATOR.FORMAT_CHECKER).is_valid(value)


def assert_samples_valid(schema: dict[str, Any], g: Grammar, seed: int = 0) -> None:
    rng = random.Random(seed)
    for _ in range(N_SAMPLES):
        text = g.sample(rng)
        assert valid(schema, json.loads(text)), text


# ---- integers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "allowed"),
    [
        ({"minimum": -15, "maximum": 7}, range(-15, 8)),
        ({"minimum": 0, "maximum": 100}, range(0, 101)),
        ({"minimum": 1, "maximum": 1}, range(1, 2)),
        ({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, range(1, 10)),
        ({"minimum": 100, "maximum": 12345}, range(100, 12346)),
        ({"minimum": -1000, "maximum": -999}, range(-1000, -998)),
        ({"minimum": 0.5, "maximum": 3.5}, range(1, 4)),
        ({"minimum": 3, "exclusiveMinimum": 3, "maximum": 9, "exclusiveMaximum": 10}, range(4, 10)),
        ({"minimum": 3, "exclusiveMinimum": True, "maximum": 6}, range(4, 7)),  # draft 4
    ],
)
def test_a_bounded_integer_is_exactly_the_integers_in_range(
    bounds: dict[str, Any], allowed: range
) -> None:
    g = grammar({"type": "integer", **bounds})
    for n in range(allowed.start - 200, allowed.stop + 200):
        assert g.matches(str(n)) == (n in allowed), n
    for text in ("-0", "01", "+1", "1.0", "1e1", " 1", "--1", ""):
        assert not g.matches(text), text


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        ({"minimum": 5}, [5, 6, 99, 10**30], [4, 0, -5, -(10**30)]),
        ({"exclusiveMinimum": -3}, [-2, 0, 7, 10**18], [-3, -4, -100]),
        ({"maximum": -3}, [-3, -4, -(10**30)], [-2, 0, 3, 10**9]),
        ({"exclusiveMaximum": 120}, [119, 0, -5, -(10**20)], [120, 121, 10**9]),
    ],
)
def test_a_one_sided_integer_range_is_open_on_the_other_side(
    bounds: dict[str, Any], inside: list[int], outside: list[int]
) -> None:
    g = grammar({"type": "integer", **bounds})
    assert all(g.matches(str(n)) for n in inside)
    assert not any(g.matches(str(n)) for n in outside)
    assert not g.matches("-0") and not g.matches("007")


def test_random_integer_ranges_match_exactly_what_validates() -> None:
    rng = random.Random(7)
    for _ in range(150):
        low = rng.randint(-(10 ** rng.randint(0, 9)), 10 ** rng.randint(0, 9))
        high = low + rng.randint(0, 10 ** rng.randint(0, 10))
        schema: dict[str, Any] = {"type": "integer"}
        if rng.random() < 0.8:
            schema["exclusiveMinimum" if rng.random() < 0.3 else "minimum"] = low
        if rng.random() < 0.8 or len(schema) == 1:
            schema["exclusiveMaximum" if rng.random() < 0.3 else "maximum"] = high
        try:
            g = Grammar(schema_grammar(schema))
        except SchemaError:
            assert not any(valid(schema, n) for n in range(low, low + 2))
            continue
        near = [n + d for n in (low, high, 0) for d in (-2, -1, 0, 1, 2)]
        for n in [*near, rng.randint(low - 10**12, high + 10**12)]:
            assert g.matches(str(n)) == valid(schema, n), (schema, n)
        assert_samples_valid(schema, g, seed=rng.randint(0, 10**6))


def test_integer_multiples_are_listed_and_other_multiples_refused() -> None:
    g = grammar({"type": "integer", "minimum": -10, "maximum": 30, "multipleOf": 5})
    assert [n for n in range(-20, 40) if g.matches(str(n))] == list(range(-10, 31, 5))
    one = grammar({"type": "number", "minimum": 0, "maximum": 3, "multipleOf": 1})
    assert one.matches("2") and not one.matches("2.5") and not one.matches("2.0")
    with pytest.raises(SchemaError, match="multipleOf"):
        schema_grammar({"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.25})
    with pytest.raises(SchemaError, match="between a minimum and a maximum"):
        schema_grammar({"type": "integer", "multipleOf": 2})


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "integer", "minimum": 5, "maximum": 3}, "no integer satisfies the bounds"),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "no integer"),
        ({"type": "number", "minimum": 2.5, "maximum": 2.4}, "no number satisfies the bounds"),
        ({"type": "integer", "minimum": True}, "'minimum' must be a finite number"),
        ({"type": "number", "maximum": "10"}, "'maximum' must be a finite number"),
        ({"type": "integer", "exclusiveMaximum": True}, "needs 'maximum' beside it"),
        ({"type": "integer", "enum": [1, 2], "minimum": 3}, "no value of 'enum'"),
    ],
)
def test_schemas_the_grammar_can_not_honour_raise_schema_error(
    schema: dict[str, Any], reason: str
) -> None:
    with pytest.raises(SchemaError, match=reason):
        schema_grammar(schema)


def test_bounds_survive_a_type_list_and_prune_enums() -> None:
    g = grammar({"type": ["integer", "null"], "minimum": 1, "maximum": 5})
    assert g.matches("null") and g.matches("3") and not g.matches("6") and not g.matches("0")
    enum = grammar({"type": "integer", "enum": [1, 5, 100, "x"], "maximum": 10})
    assert enum.matches("1") and enum.matches("5")
    assert not enum.matches("100") and not enum.matches('"x"')


# ---- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        (
            {"minimum": -2.5, "maximum": 7.25},
            ["-2.5", "-2.50", "0", "0.0", "3", "7.25", "7.250000", "-1.999999", "6.1"],
            ["-2.51", "-3", "7.26", "8", "7.2500001", "1e0", "-0", "-0.0", "01.5", ".5", "5."],
        ),
        (
            {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
            ["0.5", "0.000001", "0.999999", "0.25"],
            ["0", "0.0", "1", "1.0", "-0.5", "0.0000001"],
        ),
        (
            {"minimum": 0.1, "maximum": 0.3},
            ["0.1", "0.2", "0.3", "0.15", "0.100000"],
            ["0.09", "0.31", "0.3000001", "0", "1"],
        ),
        ({"minimum": 1.5}, ["1.5", "2", "1000000.75", "99999999999"], ["1.49", "1", "-2", "0"]),
        ({"maximum": -0.001}, ["-0.001", "-1", "-12345.5"], ["-0.0009", "0", "0.5", "-0.0"]),
        ({"minimum": -50, "maximum": 60}, ["-50", "-49.9", "21.5", "60"], ["-50.1", "60.01"]),
        ({"exclusiveMinimum": 0.1, "maximum": 0.2}, ["0.11", "0.2"], ["0.1", "0.100", "0.21"]),
        ({"minimum": 0.1234567, "maximum": 1}, ["0.1234567", "0.5"], ["0.1234566", "0.12"]),
    ],
)
def test_a_bounded_number_allows_decimals_in_range_only(
    bounds: dict[str, Any], inside: list[str], outside: list[str]
) -> None:
    schema = {"type": "number", **bounds}
    g = grammar(schema)
    for text in inside:
        assert g.matches(text) and valid(schema, json.loads(text)), text
    for text in outside:
        assert not g.matches(text), text
    assert_samples_valid(schema, g)


def test_a_bounded_number_inside_an_object_validates() -> None:
    schema = {
        "type": "object",
        "properties": {
            "temperature_c": {"type": "number", "minimum": -50, "maximum": 60},
            "humidity": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["temperature_c", "humidity"],
        "additionalProperties": False,
    }
    g = grammar(schema)
    assert g.matches('{"temperature_c": 21.5, "humidity": 40}')
    assert not g.matches('{"temperature_c": 61, "humidity": 40}')
    assert not g.matches('{"temperature_c": 20, "humidity": 101}')
    assert_samples_valid(schema, g)


# ---- string formats ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        (
            "date",
            ["2024-02-28", "0001-12-31", "1999-04-30"],
            ["2023-02-31", "2024-04-31", "0000-01-01", "2024-1-01"],
        ),
        (
            "date-time",
            ["2024-05-01T12:30:00Z", "2024-05-01T23:59:59.123+02:00"],
            ["2024-05-01 12:30:00Z", "2024-05-01T24:00:00Z", "2024-02-30T00:00:00Z"],
        ),
        ("time", ["12:30:00Z", "23:59:59.999+05:30"], ["24:00:00Z", "12:30Z", "12:30:00"]),
        (
            "uuid",
            ["123e4567-e89b-12d3-a456-426614174000"],
            ["123e4567e89b12d3a456426614174000", "xyz"],
        ),
        (
            "email",
            ["ada@example.com", "first.last+tag@mail.example.co"],
            ["ada", "ada@", "@example.com", "a b@example.com", "ada@example"],
        ),
        (
            "hostname",
            ["localhost", "api.example.com", "a-1.b2.c"],
            ["-a.com", "a-.com", "a..com", "a_b.com", "a.com."],
        ),
        (
            "ipv4",
            ["0.0.0.0", "192.168.1.254", "255.255.255.255"],
            ["256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5"],
        ),
        (
            "ipv6",
            ["::", "::1", "fe80::1", "2001:db8:0:0:0:0:2:1", "1:2:3:4:5:6:7::"],
            ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", ":1", "g::1", "1:2:3:4:5:6:7:8::"],
        ),
        (
            "uri",
            ["https://example.com/a/b?x=1#top", "urn:isbn:0451450523", "http://localhost:8080/"],
            ["example.com", "//example.com", "1http://x", "http://exa mple.com", "http://x/%zz"],
        ),
        (
            "duration",
            ["P3Y6M4DT12H30M5S", "P1M", "PT90S", "P2W", "P1DT2H"],
            ["P", "PT", "P1H", "1D", "P1S", "P1.5D", "P1Y1D"],
        ),
    ],
)
def test_a_format_allows_only_texts_its_checker_accepts(
    fmt: str, good: list[str], bad: list[str]
) -> None:
    schema = {"type": "string", "format": fmt}
    g = grammar(schema)
    for text in good:
        assert g.matches(json.dumps(text)) and valid(schema, text), text
    for text in bad:
        assert not g.matches(json.dumps(text)), text
    assert_samples_valid(schema, g, seed=len(fmt))
    shortest, longest = LENGTHS[fmt]  # what minLength / maxLength are checked against
    rng = random.Random(1)
    lengths = [len(json.loads(g.sample(rng))) for _ in range(N_SAMPLES)]
    assert shortest <= min(lengths) and max(lengths) <= longest


def test_an_unknown_format_is_an_annotation_and_a_format_with_pattern_is_refused() -> None:
    free = grammar({"type": "string", "format": "postal-code"})
    assert free.matches('"anything at all"')
    with pytest.raises(SchemaError, match="pattern"):
        schema_grammar({"type": "string", "format": "email", "pattern": "^a"})
    with pytest.raises(SchemaError, match="minLength"):
        schema_grammar({"type": "string", "format": "ipv4", "maxLength": 10})
    fits = grammar({"type": "string", "format": "ipv4", "minLength": 7, "maxLength": 15})
    assert fits.matches('"10.0.0.1"')
    http_url = {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2083}  # pydantic
    assert_samples_valid(http_url, grammar(http_url))


# ---- inside a tool call ------------------------------------------------------------------


def test_a_call_block_enforces_bounds_and_formats_of_its_arguments() -> None:
    parameters = {
        "type": "object",
        "properties": {
            "hour": {"type": "integer", "minimum": 1, "maximum": 12},
            "email": {"type": "string", "format": "email"},
        },
        "required": ["hour", "email"],
        "additionalProperties": False,
    }
    text = call_grammar([ToolSpec("remind", None, parameters)], only=None, parallel=False)
    assert llama_parses(text)
    g = Grammar(text)
    head = '<tool_call>[{"name": "remind", "arguments": '
    assert g.matches(head + '{"hour": 7, "email": "ada@example.com"}}]</tool_call>')
    assert not g.matches(head + '{"hour": 13, "email": "ada@example.com"}}]</tool_call>')
    assert not g.matches(head + '{"hour": 7, "email": "ada"}}]</tool_call>')
