"""The Batch API's requests (``POST /v1/batches``) and the lines of a batch's input file.

Both forbid unknown keys, as OpenAI does. ``endpoint`` takes every value OpenAI lists, so
that one this server does not run a batch for is refused by name (``serving.batches``)
rather than as a malformed request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnivox.protocol.requests import checked_metadata

BatchEndpoint = Literal[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
]
OPENAI_BATCH_ENDPOINTS: tuple[str, ...] = get_args(BatchEndpoint)
# omnivox runs batches of its audio endpoints too; their lines are JSON (see serving.batches)
AudioBatchEndpoint = Literal[
    "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/audio/translations"
]
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputExpiresAfter(_Strict):
    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=3600, le=2_592_000)]


Metadata = dict[
    Annotated[str, Field(max_length=MAX_METADATA_KEY_CHARS)],
    Annotated[str, Field(max_length=MAX_METADATA_VALUE_CHARS)],
]


class CreateBatchRequest(_Strict):
    input_file_id: str
    endpoint: BatchEndpoint | AudioBatchEndpoint
    completion_window: Literal["24h"]
    metadata: Metadata | None = None
    output_expires_after: OutputExpiresAfter | None = None

    _metadata_size = field_validator("metadata")(classmethod(lambda cls, v: checked_metadata(v)))


class BatchRequestInput(_Strict):
    """One line of a batch's input file."""

    custom_id: Annotated[str, Field(min_length=1)]
    method: Literal["POST"]
    url: str
    body: dict[str, Any]
