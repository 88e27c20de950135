"""Multipart forms (``/v1/audio/transcriptions``, ``/translations``, ``/v1/files``): read,
their text parts as a dict, and their ``file`` part; every fault a 400 in OpenAI's shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from omnivox.errors import InvalidRequestError
from omnivox.server.disconnect import ClientDisconnected

MAX_FORM_FILES = 1
# A client's malformed form is answered 400; the parser need not also warn in the log.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


async def read_form(request: Request, max_fields: int) -> FormData:
    content_type = request.headers.get("content-type") or ""
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequestError(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data."
        )
    try:
        return await request.form(max_files=MAX_FORM_FILES, max_fields=max_fields)
    except ClientDisconnect:
        raise ClientDisconnected from None
    except MultiPartException as exc:
        raise InvalidRequestError(f"Invalid multipart form: {exc.message}") from None
    except StarletteHTTPException as exc:  # Starlette's own words for a form it could not parse
        raise InvalidRequestError(f"Invalid multipart form: {exc.detail}") from None


def form_fields(form: FormData, array_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """The text parts as a dict: ``name[]`` parts (of ``array_fields``) as lists,
    ``name[key]`` parts as objects."""
    data: dict[str, Any] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            continue
        base, _, rest = name.partition("[")
        if base in array_fields:
            data.setdefault(base, []).append(value)
        elif rest:
            obj = data.setdefault(base, {})
            if isinstance(obj, dict):
                obj[rest.removesuffix("]")] = value
        else:
            data[name] = value
    return data


def file_part(form: FormData) -> UploadFile:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidRequestError(
            "Missing required parameter: 'file'.", param="file", code="missing_required_parameter"
        )
    return upload
