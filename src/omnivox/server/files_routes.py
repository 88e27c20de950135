"""The routes of the Files API: ``/v1/files``, ``/v1/files/{file_id}`` and its ``/content``.

A caller sees its own files only: the owner is the caller's key id ("" on a server
without keys), and another owner's file is answered as one that does not exist (404).
An upload is a multipart form whose ``file`` part the form parser spools to a
temporary file; it is checked and copied into the store from there in a worker
thread, never held whole in memory. Every file, whatever its purpose, is at most
``MAX_FILE_BYTES`` (the Batch API's limit); the headers middleware lets bodies of up
to ``MAX_UPLOAD_BODY_BYTES`` reach this route whatever ``max_body_bytes`` says. A
batch's input must be JSON Lines named ``.jsonl``, of at most ``MAX_BATCH_LINES``
lines that hold more than white space; what each line says is checked when a batch
reads it, not here. A batch file expires after ``BATCH_EXPIRES_AFTER_S`` unless the
upload says otherwise; other files stay until deleted. Contents are streamed from
disk, and stop when the client leaves. Files are not metered: no ledger rows.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.responses import StreamingResponse
from starlette.types import Send

from omnivox.access.gate import Caller
from omnivox.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from omnivox.protocol.files import CreateFileForm, ListFilesQuery
from omnivox.protocol.validation import to_openai_error
from omnivox.server.event_stream import EventStreamResponse
from omnivox.server.forms import file_part, form_fields, read_form
from omnivox.server.openapi import FILE_CONTENT_PATH, FILE_PATH, FILES_PATH
from omnivox.store.files import FileStore, StoredFile

MEBIBYTE = 1024 * 1024
MAX_FILE_BYTES = 200 * MEBIBYTE
FORM_ALLOWANCE_BYTES = MEBIBYTE  # the form's text parts and boundaries around the file
MAX_UPLOAD_BODY_BYTES = MAX_FILE_BYTES + FORM_ALLOWANCE_BYTES
MAX_BATCH_LINES = 50_000
BATCH_EXPIRES_AFTER_S = 30 * 24 * 3600
BATCH_EXTENSION = ".jsonl"
READ_CHUNK_BYTES = MEBIBYTE
MAX_FORM_FIELDS = 16
CONTENT_MEDIA_TYPE = "application/octet-stream"


def add_file_routes(
    app: FastAPI, authenticate: Callable[[Request], Caller], store: FileStore
) -> None:
    async def create_file(request: Request) -> Response:
        owner = authenticate(request).key_id
        form = await read_form(request, MAX_FORM_FIELDS)
        try:
            fields, upload = _upload_parts(form)
            stored = await asyncio.to_thread(_store_upload, store, owner, fields, upload)
        finally:
            await form.close()
        return _json(stored.to_json())

    async def list_files(request: Request) -> Response:
        owner = authenticate(request).key_id
        query = _validated_query(dict(request.query_params))
        page, has_more = await asyncio.to_thread(
            store.list,
            owner,
            purpose=query.purpose,
            limit=query.limit,
            order=query.order,
            after=query.after,
        )
        return _json(
            {
                "object": "list",
                "data": [stored.to_json() for stored in page],
                "first_id": page[0].file_id if page else None,
                "last_id": page[-1].file_id if page else None,
                "has_more": has_more,
            }
        )

    async def retrieve_file(request: Request) -> Response:
        owner = authenticate(request).key_id
        file_id = request.path_params["file_id"]
        stored = await asyncio.to_thread(store.get, owner, file_id)
        if stored is None:
            raise _no_such_file(file_id)
        return _json(stored.to_json())

    async def delete_file(request: Request) -> Response:
        owner = authenticate(request).key_id
        file_id = request.path_params["file_id"]
        if not await asyncio.to_thread(store.delete, owner, file_id):
            raise _no_such_file(file_id)
        return _json({"id": file_id, "object": "file", "deleted": True})

    async def file_content(request: Request) -> Response:
        owner = authenticate(request).key_id
        file_id = request.path_params["file_id"]
        opened = await asyncio.to_thread(_open_content, store, owner, file_id)
        if opened is None:
            raise _no_such_file(file_id)
        return FileBytesResponse(*opened)

    router = app.router
    router.add_route(FILES_PATH, create_file, methods=["POST"], include_in_schema=False)
    router.add_route(FILES_PATH, list_files, methods=["GET"], include_in_schema=False)
    router.add_route(FILE_PATH, retrieve_file, methods=["GET"], include_in_schema=False)
    router.add_route(FILE_PATH, delete_file, methods=["DELETE"], include_in_schema=False)
    router.add_route(FILE_CONTENT_PATH, file_content, methods=["GET"], include_in_schema=False)


class FileBytesResponse(EventStreamResponse):
    """A file's bytes as they lie on disk, a chunk at a time, read off the event loop; the
    stream stops when the client leaves, and the file is closed however it ends."""

    def __init__(self, file: IO[bytes], n_bytes: int) -> None:
        async def close() -> None:
            await asyncio.to_thread(file.close)

        super().__init__(_chunks(file), media_type=CONTENT_MEDIA_TYPE, on_end=close)
        self.headers["content-length"] = str(n_bytes)

    async def stream_response(self, send: Send) -> None:
        await StreamingResponse.stream_response(self, send)  # bytes as they are, no SSE rules


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, READ_CHUNK_BYTES):
        yield chunk


def _open_content(store: FileStore, owner: str, file_id: str) -> tuple[IO[bytes], int] | None:
    path = store.path(owner, file_id)
    if path is None:
        return None
    try:
        file = open(path, "rb")  # noqa: SIM115 (the response closes it)
    except FileNotFoundError:  # deleted since
        return None
    return file, os.fstat(file.fileno()).st_size


def _upload_parts(form: FormData) -> tuple[CreateFileForm, UploadFile]:
    """The text parts, validated (``name[key]`` parts as objects), and the ``file`` part."""
    data = form_fields(form)
    try:
        fields = CreateFileForm.model_validate(data)
    except ValidationError as exc:
        raise to_openai_error(exc, data) from None
    return fields, file_part(form)


def _store_upload(
    store: FileStore, owner: str, fields: CreateFileForm, upload: UploadFile
) -> StoredFile:
    """Check the upload against its purpose's rules, then keep it (a worker thread's work)."""
    source = upload.file
    source.seek(0, 2)
    n_bytes = source.tell()
    if n_bytes > MAX_FILE_BYTES:
        raise RequestTooLargeError(
            f"File too large: {n_bytes} bytes. A file may be at most {MAX_FILE_BYTES} bytes.",
            param="file",
        )
    filename = upload.filename or ""
    expires_after_s = fields.expires_after.seconds if fields.expires_after else None
    if fields.purpose == "batch":
        if not filename.lower().endswith(BATCH_EXTENSION):
            raise InvalidRequestError(
                "Invalid file format for Batch API. Must be .jsonl", param="file"
            )
        source.seek(0)
        if count_lines(source, MAX_BATCH_LINES) > MAX_BATCH_LINES:
            raise InvalidRequestError(
                f"The batch input file has more than {MAX_BATCH_LINES} lines: a batch may hold "
                f"at most {MAX_BATCH_LINES} requests. Split it into several batches.",
                param="file",
            )
        if expires_after_s is None:
            expires_after_s = BATCH_EXPIRES_AFTER_S
    source.seek(0)
    return store.create_from(
        owner, filename, fields.purpose, source, expires_after_s=expires_after_s
    )


def count_lines(source: IO[bytes], stop_after: int) -> int:
    """The lines of ``source`` that hold more than white space, counted until there are more
    than ``stop_after``; read a chunk at a time from the current position."""
    n_lines = 0
    open_line = False  # the line the last chunk ended in holds something
    while chunk := source.read(READ_CHUNK_BYTES):
        pieces = chunk.split(b"\n")
        for piece in pieces[:-1]:
            if open_line or piece.strip():
                n_lines += 1
                if n_lines > stop_after:
                    return n_lines
            open_line = False
        open_line = open_line or bool(pieces[-1].strip())
    return n_lines + int(open_line)


def _validated_query(data: dict[str, str]) -> ListFilesQuery:
    try:
        return ListFilesQuery.model_validate(data)
    except ValidationError as exc:
        raise to_openai_error(exc, data) from None


def _no_such_file(file_id: str) -> NotFoundError:
    return NotFoundError(f"No such File object: {file_id}", param="id")


def _json(body: dict[str, Any]) -> Response:
    return Response(content=json.dumps(body), media_type="application/json")
