"""JSON schemas as grammars: numeric bounds, string formats and the schemas refused.

Each grammar is parsed by llama.cpp's own parser, and its language is checked with
``tests.support.gbnf``: exact integer ranges by enumeration, numbers and formats by
texts inside and outside the schema and by random texts drawn from the grammar, which
must all validate with ``jsonschema`` and its format checkers. Schemas the grammar engine
can not hold are refused, the limit in the message, before llama.cpp sees them; those that
crashed or swelled it are tried in a child process with bounded memory."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from omnivox.engines.base import GenerationRequest, ResponseFormat, ToolSpec
from omnivox.engines.cascade.chat.constraints import answer_constraints
from omnivox.engines.cascade.chat.tools import call_grammar
from omnivox.engines.cascade.grammar.string_formats import LENGTHS
from omnivox.engines.cascade.grammar.structured import (
    SchemaError,
    check_grammar_size,
    schema_grammar,
)
from omnivox.errors import InvalidRequestError
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


# ---- limits: what llama.cpp can not hold is refused before it gets there -----------------

CHILD_MEMORY_BYTES = 2 * 1024**3
CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import llama_cpp
from omnivox.engines.cascade.grammar.structured import SchemaError, schema_grammar

def nested(keyword, levels):
    schema = {{"type": "integer"}}
    for _ in range(levels):
        if keyword == "properties":
            schema = {{"type": "object", "properties": {{"a": schema}}, "required": ["a"]}}
        else:
            schema = {{keyword: [schema, {{"type": "null"}}]}}
    return schema

def doubled(levels):
    defs = {{"d0": {{"enum": ["a", "b"]}}}}
    for i in range(1, levels + 1):
        defs[f"d{{i}}"] = {{"anyOf": [{{"$ref": f"#/$defs/d{{i - 1}}"}}] * 2}}
    return {{"$defs": defs, "anyOf": [{{"$ref": f"#/$defs/d{{levels}}"}}]}}

answers = {{}}
for label, source in json.loads(sys.stdin.read()).items():
    try:
        text = schema_grammar(eval(source))
    except SchemaError as exc:
        answers[label] = str(exc)
        continue
    sampler = llama_cpp.llama_sampler_init_grammar(None, text.encode(), b"root")
    answers[label] = "parsed" if sampler else "llama.cpp refused it"
print(json.dumps(answers))
"""
TOO_MUCH = "is more than omnivox's grammar supports"


def in_a_child(cases: dict[str, str]) -> dict[str, str]:
    """``schema_grammar`` (then llama.cpp's parser) on each schema, in a child process with
    bounded memory: a regression crashes or swells the child, not the test run."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(limit=CHILD_MEMORY_BYTES)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    return dict(json.loads(done.stdout))


def test_schemas_that_crashed_or_swelled_the_server_are_refused_or_held() -> None:
    cases = {  # label: (the schema as Python, what schema_grammar says)
        "maxLength 30000": ('{"type": "string", "maxLength": 30000}', "parsed"),
        "maxLength at the limit": ('{"type": "string", "maxLength": 250_000}', "parsed"),
        "maxLength past it": (
            '{"type": "string", "minLength": 2, "maxLength": 250_001}',
            f"maxLength 250001 {TOO_MUCH} (at most 250000)",
        ),
        "maxLength 1e9": (
            '{"type": "string", "maxLength": 1e9}',
            f"maxLength 1000000000 {TOO_MUCH} (at most 250000)",
        ),
        "maxLength 10**9": (
            '{"type": "string", "maxLength": 10**9}',
            f"maxLength 1000000000 {TOO_MUCH} (at most 250000)",
        ),
        "minLength": (
            '{"type": "string", "minLength": 10**9}',
            f"minLength 1000000000 {TOO_MUCH} (at most 250000)",
        ),
        "minItems": (
            '{"type": "array", "items": {"type": "string"}, "minItems": 10**9}',
            f"minItems 1000000000 {TOO_MUCH} (at most 250000)",
        ),
        "maxItems": (
            '{"type": "array", "items": {"type": "string"}, "maxItems": 30000}',
            "parsed",
        ),
        "pattern count": (
            '{"type": "string", "pattern": "^a{100000}$"}',
            f"the repetition {{100000}} in 'pattern' {TOO_MUCH} (at most 250)",
        ),
        "pattern range": (
            '{"type": "string", "pattern": "^[a-z]{0,30000}$"}',
            f"the repetition {{0,30000}} in 'pattern' {TOO_MUCH} (at most 250)",
        ),
        "nested objects": (
            'nested("properties", 5000)',
            f"a nesting depth of 10001 levels (objects and arrays) {TOO_MUCH} (at most 100)",
        ),
        "nested anyOf": (
            'nested("anyOf", 5000)',
            f"a nesting depth of 10001 levels (objects and arrays) {TOO_MUCH} (at most 100)",
        ),
        "huge enum": (
            '{"enum": [f"value {i}" for i in range(100000)]}',
            f"'enum' with 100000 entries {TOO_MUCH} (at most 1000)",
        ),
        "doubling refs": ("doubled(40)", f"multiplied through $refs) {TOO_MUCH} (at most 2500)"),
        "left recursion": (
            '{"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},'
            ' "anyOf": [{"$ref": "#/$defs/a"}]}',
            "it refers to itself before any text (left recursion)",
        ),
    }
    answers = in_a_child({label: source for label, (source, _) in cases.items()})
    for label, (_, expected) in cases.items():
        assert expected in answers[label], (label, answers[label])


def test_long_strings_and_arrays_are_counted_exactly() -> None:
    text = grammar({"type": "string", "minLength": 1200, "maxLength": 2700})
    for n in (1200, 1201, 1499, 1500, 1701, 2199, 2200, 2201, 2699, 2700):
        assert text.matches(json.dumps("x" * n)), n
    for n in (0, 1, 1199, 2701, 3200):
        assert not text.matches(json.dumps("x" * n)), n
    free = grammar({"type": "string", "minLength": 1001})
    assert free.matches(json.dumps("y" * 1001)) and free.matches(json.dumps("y" * 5000))
    assert not free.matches(json.dumps("y" * 1000))
    array = grammar(
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 1100}
    )
    for n in range(5):
        assert array.matches(json.dumps(list(range(n)))) == (n >= 2), n
    assert array.matches(json.dumps(list(range(1100)))) and array.matches(json.dumps([7] * 600))
    assert not array.matches(json.dumps(list(range(1101))))
    assert grammar({"type": "array", "maxItems": 0, "items": {}}).matches("[]")
    with pytest.raises(SchemaError, match="'minItems' 3 is more than 'maxItems' 2"):
        schema_grammar({"type": "array", "items": {}, "minItems": 3, "maxItems": 2})
    with pytest.raises(SchemaError, match="'maxLength' must be a non-negative integer"):
        schema_grammar({"type": "string", "maxLength": 2.5})


def test_grammar_construction_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    """llama.cpp prints a grammar it refuses, whole, to stderr (40 KB for ``maxLength`` 5000):
    what reaches it now always parses, and what would not is refused before."""
    held: list[dict[str, Any]] = [
        {"type": "string", "maxLength": 5000},
        {"type": "array", "items": {"type": "number"}, "maxItems": 3000},
        {"type": "string", "pattern": "^[a-z]{0,250}$"},
    ]
    for schema in held:
        assert llama_parses(schema_grammar(schema)), schema
    refused: list[dict[str, Any]] = [
        {"type": "string", "pattern": "^[a-z]{0,1100}$"},
        {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "anyOf": [{"$ref": "#/$defs/a"}]},
    ]
    for schema in refused:
        with pytest.raises(SchemaError):
            schema_grammar(schema)
    assert capfd.readouterr().err == ""


def test_schemas_at_each_limit_are_accepted_and_one_past_it_refused() -> None:
    """(``maxLength`` at its limit is tried in a child above: it crashed llama.cpp.)"""

    def properties(n: int, required: int) -> dict[str, Any]:
        names = [f"p{i}" for i in range(n)]
        return {
            "type": "object",
            "properties": {name: {"type": "boolean"} for name in names},
            "required": names[:required],
        }

    deep: dict[str, Any] = {"type": "integer"}
    for _ in range(49):  # each object is two levels: the schema and its properties
        deep = {"type": "object", "properties": {"a": deep}, "required": ["a"]}
    deep = {"type": "array", "items": deep}  # 100 levels
    limits = [
        ({"type": "string", "pattern": "^x{0,250}$"}, {"type": "string", "pattern": "^x{251}$"}),
        ({"enum": list(range(1000))}, {"enum": list(range(1001))}),
        (
            {"anyOf": [{"const": i} for i in range(1000)]},
            {"anyOf": [{"const": i} for i in range(1001)]},
        ),
        (properties(200, 0), properties(201, 0)),
        (properties(5000, 5000), properties(5001, 5001)),
        (deep, {"type": "array", "items": deep}),  # 101
    ]
    for accepted, refused in limits:
        assert llama_parses(schema_grammar(accepted))
        with pytest.raises(SchemaError, match=f"{TOO_MUCH} \\(at most \\d+\\)"):
            schema_grammar(refused)


@pytest.mark.parametrize(
    ("gbnf", "llama_cpp_parses", "accepted"),
    [
        ('root ::= "a"{0,2000}', True, True),
        ('root ::= "a"{0,2001}', True, False),  # llama.cpp would drop the bound: any number
        ('root ::= "a"{2001}', False, False),
        ('root ::= ("a"{0,999}){2}', True, True),  # 1000 rules repeated twice: at its limit
        ('root ::= ("a"{0,1000}){2}', False, False),
        ('root ::= x ("b" x){0,1999}\nx ::= "a"', True, True),
        ('root ::= ("b" x){0,1000}\nx ::= "a"', True, True),  # x first seen here: 2 rules
        ('root ::= ("b" x){0,1001}\nx ::= "a"', False, False),
        ("root ::= " + '("a" ' * 500 + ")?" * 500, True, True),
        ("root ::= " + '("a" ' * 501 + ")?" * 501, True, False),  # 1,000 would be refused
        ('root ::= root "a" | "b"', False, False),
        ('root ::= x "a"\nx ::= "b"? root', False, False),
        ('root ::= ("a"?)*', True, True),
        # llama.cpp sees no left recursion through a rule that can be empty without an empty
        # alternative of its own, and then grows its stacks until it aborts: not asked here
        ('root ::= g "a"\ng ::= h root | "c"\nh ::= ("b"?)', None, False),
        ('root ::= "[" (root ("," root)*)? "]"', True, True),  # recursion after text is fine
        ("root ::= " + " | ".join(f'"{i}"' for i in range(2500)), True, True),
        ("root ::= " + " | ".join(f'"{i}"' for i in range(2501)), True, False),
        (
            "root ::= r0\n"
            + "".join(f'r{i} ::= r{i + 1} | "x"\n' for i in range(3000))
            + 'r3000 ::= "y"',
            True,
            False,
        ),
    ],
)
def test_grammar_limits_match_llama_cpp_where_it_refuses(
    gbnf: str, llama_cpp_parses: bool | None, accepted: bool
) -> None:
    if llama_cpp_parses is not None:
        assert llama_parses(gbnf + "\n") == llama_cpp_parses
    try:
        check_grammar_size(gbnf + "\n")
    except SchemaError:
        assert not accepted
    else:
        assert accepted


def test_a_tool_parameter_the_grammar_can_not_hold_names_its_tool() -> None:
    killer = {"type": "object", "properties": {"x": {"type": "string", "maxLength": 300_000}}}
    specs = [ToolSpec("fine", None, {"type": "object"}), ToolSpec("huge", None, killer)]
    with pytest.raises(SchemaError) as caught:
        call_grammar(specs, only=None, parallel=True)
    assert caught.value.args[1] == 1
    assert f"maxLength 300000 {TOO_MUCH} (at most 250000)" in caught.value.args[0]
    wide: dict[str, Any] = {
        "type": "object",
        "properties": {
            f"a_rather_long_parameter_name_{i}": {"type": "integer"} for i in range(4000)
        },
    }
    wide["required"] = list(wide["properties"])
    specs = [ToolSpec(f"tool{i}", None, wide) for i in range(3)]
    with pytest.raises(
        SchemaError, match=f"with the other tools, a grammar of \\d+ characters {TOO_MUCH}"
    ):
        call_grammar(specs, only=None, parallel=False)


class LlamaRefusing:
    """A generator whose llama.cpp refuses every grammar that holds ``word``."""

    def __init__(self, word: str) -> None:
        self.word = word

    def grammar_is_valid(self, grammar: str) -> bool:
        return self.word not in grammar


def test_a_grammar_llama_cpp_refuses_after_all_is_a_400_naming_its_schema() -> None:
    odd = {"type": "object", "properties": {"odd": {"type": "string"}}}
    request = GenerationRequest(turns=(), response_format=ResponseFormat("json_schema", odd))
    with pytest.raises(InvalidRequestError) as caught:
        answer_constraints(request, LlamaRefusing("odd"))
    assert (caught.value.param, caught.value.code) == ("response_format", "invalid_json_schema")
    tools = (ToolSpec("plain", None, {"type": "object"}), ToolSpec("strange", None, odd))
    request = GenerationRequest(turns=(), tools=tools, tool_choice="required")
    with pytest.raises(InvalidRequestError) as caught:
        answer_constraints(request, LlamaRefusing("odd"))
    assert (caught.value.param, caught.value.code) == (
        "tools[1].function.parameters",
        "invalid_function_parameters",
    )
