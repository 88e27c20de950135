"""Turn a pydantic ``ValidationError`` into the error OpenAI would send.

OpenAI names the offending field as a path such as ``messages[0].content[1].type``
and words each failure in a fixed pattern ("Invalid 'temperature': decimal above
maximum value. ..."). Pydantic's error locations also contain union branch
labels, so the path is rebuilt by walking the original request data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from omnivox.errors import InvalidRequestError, InvalidValueError, UnknownParameterError
from omnivox.protocol.requests import TAG_PREFIX

_TYPE_NAMES = {
    "float_type": "a decimal",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "list_type": "an array",
}


_TYPE_LABEL = re.compile(r"^(str|int|float|bool|none|[a-z-]+\[.*\])$")


def param_path(data: Any, loc: Sequence[int | str]) -> str:
    """``("messages", 0, "user", "content")`` -> ``messages[0].content``, skipping union labels."""
    path = ""
    current = data
    for i, element in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(element, int) and isinstance(current, list) and element < len(current):
            path += f"[{element}]"
            current = current[element]
        elif isinstance(element, str) and element.startswith(TAG_PREFIX):
            continue  # a union branch label
        elif isinstance(element, str) and isinstance(current, dict) and element in current:
            path += f".{element}" if path else element
            current = current[element]
        elif (
            last
            and isinstance(element, str)
            and isinstance(current, dict)
            and not _TYPE_LABEL.match(element)  # pydantic's name of a union branch
        ):
            path += f".{element}" if path else element  # a missing or unknown key
    return path


def _depth(path: str) -> int:
    return path.count(".") + path.count("[") + (1 if path else 0)


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def to_openai_error(exc: ValidationError, data: Any) -> InvalidRequestError:
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        path = param_path(data, unknown[0]["loc"])
        return UnknownParameterError(f"Unknown parameter: '{path}'.", param=path)
    missing = [e for e in errors if e["type"] == "missing"]
    if missing:
        path = param_path(data, missing[0]["loc"])
        return InvalidRequestError(
            f"Missing required parameter: '{path}'.",
            param=path,
            code="missing_required_parameter",
        )
    # The deepest location is the most specific; at one location a value error beats the
    # type errors of the union branches the value was never meant for.
    ranked = sorted(
        errors,
        key=lambda e: (-_depth(param_path(data, e["loc"])), e["type"] in _TYPE_NAMES),
    )
    first = ranked[0]
    path = param_path(data, first["loc"])
    if first["type"] == "invalid_union_member":
        return _union_member_error(first, path)
    same_place = [e for e in errors if param_path(data, e["loc"]) == path]
    return _one_error(first, path, same_place)


def _one_error(err: ErrorDetails, path: str, same_place: list[ErrorDetails]) -> InvalidRequestError:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind in _TYPE_NAMES:
        expected = sorted({_TYPE_NAMES[e["type"]] for e in same_place if e["type"] in _TYPE_NAMES})
        wanted = expected[0] if len(expected) == 1 else "one of " + " or ".join(expected)
        return InvalidRequestError(
            f"Invalid type for '{path}': expected {wanted}, but got {describe(value)} instead.",
            param=path,
            code="invalid_type",
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return _range_error(kind, path, value, ctx)
    if kind == "too_short":
        if ctx.get("actual_length") == 0:
            return InvalidRequestError(
                f"Invalid '{path}': empty array. Expected an array with minimum length "
                f"{ctx.get('min_length')}, but got an empty array instead.",
                param=path,
                code="empty_array",
            )
        return InvalidRequestError(
            f"Invalid '{path}': array too short. Expected an array with minimum length "
            f"{ctx.get('min_length')}, but got an array with length {ctx.get('actual_length')} "
            "instead.",
            param=path,
            code="array_below_min_length",
        )
    if kind == "too_long":
        return InvalidRequestError(
            f"Invalid '{path}': array too long. Expected an array with maximum length "
            f"{ctx.get('max_length')}, but got an array with length {ctx.get('actual_length')} "
            "instead.",
            param=path,
            code="array_above_max_length",
        )
    if kind == "string_too_long":
        return InvalidRequestError(
            f"Invalid '{path}': string too long. Expected a string with maximum length "
            f"{ctx.get('max_length')}, but got a string with length {len(str(value))} instead.",
            param=path,
            code="string_above_max_length",
        )
    if kind == "string_pattern_mismatch":
        return InvalidValueError(
            f"Invalid '{path}': string does not match pattern. Expected a string that matches "
            f"the pattern '{ctx.get('pattern')}'.",
            param=path,
        )
    if kind == "literal_error":
        return _enum_error(path, value, same_place)
    if kind == "value_error" and ":" in str(ctx.get("error", "")):
        code, _, detail = str(ctx["error"]).partition(":")
        return InvalidRequestError(f"Invalid '{path}': {detail}", param=path, code=code)
    return InvalidRequestError(f"Invalid '{path}': {err['msg']}.", param=path, code="invalid_value")


def _union_member_error(err: ErrorDetails, path: str) -> InvalidRequestError:
    value = err.get("input")
    ctx = err.get("ctx") or {}
    key = str(ctx.get("key", "type"))
    if not isinstance(value, dict):
        return InvalidRequestError(
            f"Invalid type for '{path}': expected an object, but got {describe(value)} instead.",
            param=path,
            code="invalid_type",
        )
    where = f"{path}.{key}" if path else key
    if key not in value:
        return InvalidRequestError(
            f"Missing required parameter: '{where}'.",
            param=where,
            code="missing_required_parameter",
        )
    choices = ", ".join(f"'{a}'" for a in str(ctx.get("allowed", "")).split(","))
    return InvalidValueError(
        f"Invalid value: {_show(value[key])}. Supported values are: {choices}.", param=where
    )


def _range_error(kind: str, path: str, value: Any, ctx: dict[str, Any]) -> InvalidRequestError:
    above = kind.startswith("less")
    bound = ctx.get("le", ctx.get("lt")) if above else ctx.get("ge", ctx.get("gt"))
    number = "decimal" if isinstance(bound, float) else "integer"
    if isinstance(bound, float) and bound.is_integer():
        bound = int(bound)
    sign = "<=" if kind == "less_than_equal" else "<" if above else ">=" if "equal" in kind else ">"
    direction = "above maximum" if above else "below minimum"
    return InvalidRequestError(
        f"Invalid '{path}': {number} {direction} value. Expected a value {sign} {bound}, "
        f"but got {_show(value)} instead.",
        param=path,
        code=f"{number}_{'above_max' if above else 'below_min'}_value",
    )


def _enum_error(path: str, value: Any, same_place: list[ErrorDetails]) -> InvalidValueError:
    allowed: list[str] = []
    for e in same_place:
        expected = str((e.get("ctx") or {}).get("expected", ""))
        allowed += [v.strip().strip("'") for v in expected.replace(" or ", ",").split(",")]
    choices = ", ".join(f"'{a}'" for a in dict.fromkeys(a for a in allowed if a))
    return InvalidValueError(
        f"Invalid value: {_show(value)}. Supported values are: {choices}.", param=path
    )
