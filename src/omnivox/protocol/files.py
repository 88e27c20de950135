"""The Files API's wire format: ``/v1/files`` and ``/v1/files/{file_id}``.

An upload is a multipart form: the ``file`` part (checked by the server) and text
parts, ``purpose`` and the object ``expires_after`` as ``expires_after[anchor]``
and ``expires_after[seconds]``. Its model is lax (every part arrives as text) and
ignores parts it does not know, as the audio forms do. A list's query is the same.
The answers are described here for the OpenAPI document; the server renders them
from the store's own objects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from omnivox.protocol.responses import WireOut

MIN_EXPIRES_AFTER_S = 3600
MAX_EXPIRES_AFTER_S = 30 * 24 * 3600
MAX_LIST_LIMIT = 10_000

FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]


# ---- requests --------------------------------------------------------------------------------


class FileExpirationAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=MIN_EXPIRES_AFTER_S, le=MAX_EXPIRES_AFTER_S)


class CreateFileForm(BaseModel):
    """The text parts of ``POST /v1/files``."""

    model_config = ConfigDict(extra="ignore")

    purpose: FilePurpose
    expires_after: FileExpirationAfter | None = None


class ListFilesQuery(BaseModel):
    """The query of ``GET /v1/files``."""

    model_config = ConfigDict(extra="ignore")

    purpose: str | None = None
    limit: int = Field(default=MAX_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None


# ---- responses -------------------------------------------------------------------------------


class OpenAIFile(WireOut):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None


class ListFilesResponse(WireOut):
    object: Literal["list"] = "list"
    data: list[OpenAIFile]
    first_id: str | None
    last_id: str | None
    has_more: bool


class DeleteFileResponse(WireOut):
    id: str
    object: Literal["file"] = "file"
    deleted: bool
