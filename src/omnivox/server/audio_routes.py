"""The routes of ``/v1/audio/speech``, ``/v1/audio/transcriptions`` and ``/translations``.

Each asks access as chat does (``admission``): who calls, the refusal of a bad
body recorded, admission with an estimate, the exact charge once the work has
started, the row's outcome however the request ends. Speech is a JSON body;
transcriptions and translations are multipart forms whose ``file`` part is the
audio and whose other parts are text (``name[]`` for arrays). Every answer that
can be made while the work goes on is streamed; a client that leaves stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from omnivox.access.gate import AccessControl, Caller
from omnivox.engines.base import TranscriptionTask
from omnivox.protocol.audio import (
    CreateSpeechRequest,
    CreateTranscriptionForm,
    CreateTranslationForm,
)
from omnivox.protocol.validation import to_openai_error
from omnivox.server.admission import admitted, close_run, refused_before_admission
from omnivox.server.bodies import read_json_object
from omnivox.server.disconnect import cancelled_if_client_leaves
from omnivox.server.event_stream import EventStreamResponse
from omnivox.server.forms import file_part, form_fields, read_form
from omnivox.server.openapi import SPEECH_PATH, TRANSCRIPTIONS_PATH, TRANSLATIONS_PATH
from omnivox.serving import speech, sse, transcription
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.speech import SpeechService
from omnivox.serving.transcription import TranscriptionService

MAX_FORM_FIELDS = 64
ARRAY_FIELDS = ("timestamp_granularities", "include")
M = TypeVar("M", bound=BaseModel)


def add_audio_routes(
    app: FastAPI,
    authenticate: Callable[[Request], Caller],
    gate: AccessControl,
    catalog: ModelCatalog,
    speaker: SpeechService,
    transcriber: TranscriptionService,
) -> None:
    async def create_speech(request: Request) -> Response:
        caller = authenticate(request)
        request_id = request.state.request_id
        async with refused_before_admission(
            gate, caller, request_id, lambda: _named_model(request), catalog.find_snapshot
        ):
            req = await _speech_request(request)
            snapshot = catalog.get(req.model, "speech").snapshot
        estimate = speech.estimate_speech_tokens(req) if caller.key is not None else 0
        async with admitted(
            gate, caller, req.model, snapshot, None, estimate, request_id
        ) as admission:
            run = await speaker.start(req)
            await admission.charge(run)
            chunks = speech.sse_chunks(run) if req.stream_format == "sse" else run.chunks
            response = EventStreamResponse(
                chunks, media_type=run.media_type, on_end=lambda: close_run(run, run.chunks)
            )
        response.headers.update(admission.headers)
        return response

    async def create_transcription(request: Request, task: TranscriptionTask) -> Response:
        caller = authenticate(request)
        request_id = request.state.request_id
        async with refused_before_admission(
            gate, caller, request_id, lambda: _named_model(request), catalog.find_snapshot
        ):
            form, audio = await _transcription_form(request, task)
            snapshot = catalog.get(form.model, "transcription").snapshot
        estimate = transcription.estimate_transcription_tokens(len(audio))
        streaming = isinstance(form, CreateTranscriptionForm) and form.stream
        async with admitted(
            gate, caller, form.model, snapshot, None, estimate if caller.key else 0, request_id
        ) as admission:
            run = await transcriber.start(form, audio, task)
            await admission.charge(run)
            response: Response
            if streaming:
                response = EventStreamResponse(
                    transcription.sse_chunks(run),
                    media_type=sse.SSE_MEDIA_TYPE,
                    on_end=lambda: close_run(run, run.events),
                )
            else:
                async with cancelled_if_client_leaves(request.receive):
                    body = await transcription.render(run)
                response = Response(content=body, media_type=run.media_type)
        response.headers.update(admission.headers)
        return response

    async def create_transcription_route(request: Request) -> Response:
        return await create_transcription(request, "transcribe")

    async def create_translation_route(request: Request) -> Response:
        return await create_transcription(request, "translate")

    router = app.router
    router.add_route(SPEECH_PATH, create_speech, methods=["POST"], include_in_schema=False)
    router.add_route(
        TRANSCRIPTIONS_PATH, create_transcription_route, methods=["POST"], include_in_schema=False
    )
    router.add_route(
        TRANSLATIONS_PATH, create_translation_route, methods=["POST"], include_in_schema=False
    )


def _named_model(request: Request) -> str:
    return getattr(request.state, "model", "")


async def _speech_request(request: Request) -> CreateSpeechRequest:
    _, data = await read_json_object(request)
    return _validated(CreateSpeechRequest, data)


async def _transcription_form(
    request: Request, task: TranscriptionTask
) -> tuple[CreateTranscriptionForm | CreateTranslationForm, bytes]:
    form = await read_form(request, MAX_FORM_FIELDS)
    try:
        data = form_fields(form, ARRAY_FIELDS)
        _remember_model(request, data)
        model: type[CreateTranscriptionForm | CreateTranslationForm] = (
            CreateTranscriptionForm if task == "transcribe" else CreateTranslationForm
        )
        parsed = _validated(model, data)
        audio = await file_part(form).read()
    finally:
        await form.close()
    return parsed, audio


def _remember_model(request: Request, data: dict[str, Any]) -> None:
    if isinstance(data.get("model"), str):  # whose limits an invalid request's headers show
        request.state.model = data["model"]


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_openai_error(exc, data) from None
