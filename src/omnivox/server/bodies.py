"""The JSON body of a request: its media type, its parse, what Python's JSON can not hold.

A body must be declared JSON (``application/json`` or ``application/*+json``), else
415: a web page can send a cross-site POST without asking first (no CORS preflight)
only as ``text/plain``, a form or multipart, so this refusal alone keeps any page the
operator visits from driving a server that runs without keys.

Parsing is Python's ``json``; a large body is parsed in a worker thread so that one
20 MB prompt does not hold up every other client. Two things ``json`` accepts or fails
on in its own way are client mistakes here, each a 400: nesting deeper than
``MAX_JSON_DEPTH`` (deeper still, ``json`` itself runs out of recursion), and a lone
UTF-16 surrogate escape (``"\\ud800"``), which decodes to a string no UTF-8 text can
carry and would fail wherever the text is used.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from omnivox.errors import InvalidRequestError, UnsupportedMediaTypeError
from omnivox.protocol.validation import to_openai_error
from omnivox.server.disconnect import ClientDisconnected

INVALID_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
OFF_LOOP_BODY_BYTES = 256 * 1024  # below this, a thread hand-off costs more than the parse
MAX_JSON_DEPTH = 128  # arrays and objects within each other; OpenAI's deepest schemas need ~30
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def check_json_media_type(content_type: str | None) -> None:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    shown = f"'{content_type}'" if content_type else "none"
    raise UnsupportedMediaTypeError(
        f"Unsupported Content-Type: {shown}. The request body must be JSON, sent with the "
        "header 'Content-Type: application/json'."
    )


async def read_json_object(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The body (raw, and parsed) of a request that must be one JSON object. The model
    it names, if any, is kept in ``request.state.model``: whose limits the headers of an
    answer show, even one that refuses the body."""
    check_json_media_type(request.headers.get("content-type"))
    try:
        raw = await request.body()
    except ClientDisconnect:  # the upload was abandoned: nobody to answer
        raise ClientDisconnected from None
    data: Any = await parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequestError(INVALID_JSON_MESSAGE)
    if isinstance(data.get("model"), str):
        request.state.model = data["model"]
    return raw, data


M = TypeVar("M", bound=BaseModel)


async def read_request(request: Request, model: type[M], *, strict: bool) -> M:
    """The body as ``model``, refused in OpenAI's words. Not ``strict``: top-level keys
    ``model`` does not know are dropped, not refused (the documented leniency). A large
    body is validated in a worker thread, as it is parsed."""
    raw, data = await read_json_object(request)
    if not strict:
        known = {field.alias or name for name, field in model.model_fields.items()}
        data = {k: v for k, v in data.items() if k in known}
    if len(raw) > OFF_LOOP_BODY_BYTES:
        return await asyncio.to_thread(validated, model, data)
    return validated(model, data)


def validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_openai_error(exc, data) from None


async def parse_json(raw: bytes) -> Any:
    if len(raw) > OFF_LOOP_BODY_BYTES:
        return await asyncio.to_thread(parse_json_now, raw)
    return parse_json_now(raw)


def parse_json_now(raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(INVALID_JSON_MESSAGE) from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    if SURROGATE_ESCAPE.search(raw) is not None:
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise InvalidRequestError(
                "The request body contains a lone UTF-16 surrogate escape (such as \\ud800), "
                "which is not a Unicode character: escape characters beyond U+FFFF as a "
                "surrogate pair, or send them as UTF-8."
            ) from None
    return data


def _depth(data: Any) -> int:
    """How deeply arrays and objects nest in ``data``, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_JSON_DEPTH:
                return deepest
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest


def _too_deep() -> InvalidRequestError:
    return InvalidRequestError(
        f"The JSON body of your request nests arrays and objects more than {MAX_JSON_DEPTH} "
        "levels deep, which this server does not accept."
    )
