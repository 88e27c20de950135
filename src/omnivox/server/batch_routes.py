"""The routes of ``/v1/batches``, and how a batch's line is put through the API's path.

``POST /v1/batches`` creates a batch from an uploaded ``batch`` file, ``GET`` shows one
or lists them (newest first, paged by ``after``), ``POST .../cancel`` cancels one; a
batch is its creator's key's alone (another key gets 404). ``BatchLines.run`` answers
one line as ``POST /v1/chat/completions`` (or ``/v1/responses``, or the audio route of
the batch) would answer it for the batch's key: the body validated, access asked (a
ledger row marked ``batch``, at half the price, outside the key's RPM and TPM), the
engine's answer folded into one completion (or one response object, stored as the
route stores it); what the API would refuse is its status and OpenAI's error body.
``InteractiveLoad`` tells the runner when the server answers nobody else: batch lines
run only then.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from omnivox import ids
from omnivox.access.gate import AccessControl, Caller
from omnivox.engines.base import TranscriptionTask
from omnivox.errors import InvalidRequestError, OmnivoxError
from omnivox.protocol.audio import (
    CreateSpeechRequest,
    CreateTranscriptionForm,
    CreateTranslationForm,
)
from omnivox.protocol.batches import CreateBatchRequest
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.protocol.responses_api import CreateResponseRequest
from omnivox.protocol.validation import to_openai_error
from omnivox.server.admission import admitted, refused_before_admission
from omnivox.server.bodies import INVALID_JSON_MESSAGE, check_json_media_type, parse_json
from omnivox.server.event_stream import EventStreamResponse
from omnivox.server.openapi import (
    BATCHES_PATH,
    CHAT_PATH,
    RESPONSES_PATH,
    SPEECH_PATH,
    TRANSCRIPTIONS_PATH,
    TRANSLATIONS_PATH,
)
from omnivox.serving import fold, speech, transcription
from omnivox.serving.batches import BatchService, LineAnswer
from omnivox.serving.catalog import ModelCatalog, Use
from omnivox.serving.chat import ChatService
from omnivox.serving.inputs import output_token_limit
from omnivox.serving.responses_api import ResponsesService
from omnivox.serving.speech import SpeechService
from omnivox.serving.transcription import TranscriptionService
from omnivox.serving.usage import estimate_prompt_tokens
from omnivox.store.batches import STORE_FILE

DEFAULT_LIST_LIMIT = 20
# A batch's endpoint -> what its lines' models must serve.
BATCH_USES: dict[str, Use] = {
    CHAT_PATH: "chat",
    RESPONSES_PATH: "responses",
    SPEECH_PATH: "speech",
    TRANSCRIPTIONS_PATH: "transcription",
    TRANSLATIONS_PATH: "transcription",
}
MAX_LIST_LIMIT = 100


def batch_store_path(data_dir: Path) -> Path:
    return data_dir / STORE_FILE


class InteractiveLoad:
    """How many interactive requests the server is answering; waits for none."""

    def __init__(self) -> None:
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.active += 1
        self._idle.clear()

    def end(self) -> None:
        self.active = max(0, self.active - 1)
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def serve(
        self, answer: Callable[[Request], Awaitable[Response]], request: Request
    ) -> Response:
        """``answer(request)`` counted as interactive until its response is over (for a
        stream: until the stream ends)."""
        self.begin()
        try:
            response = await answer(request)
        except BaseException:
            self.end()
            raise
        if isinstance(response, EventStreamResponse):
            response.also_on_end(self.end)
        else:
            self.end()
        return response


class BatchLines:
    """One batch line through the chat path, for the key that created the batch."""

    def __init__(
        self,
        gate: AccessControl,
        catalog: ModelCatalog,
        service: ChatService,
        speaker: SpeechService,
        transcriber: TranscriptionService,
        responder: ResponsesService,
    ) -> None:
        self.gate = gate
        self.catalog = catalog
        self.service = service
        self.speaker = speaker
        self.transcriber = transcriber
        self.responder = responder
        self._answers: dict[str, Callable[[Caller, dict[str, Any], str], Awaitable[LineAnswer]]]
        self._answers = {
            CHAT_PATH: self._answer,
            RESPONSES_PATH: self._responses,
            SPEECH_PATH: self._speech,
            TRANSCRIPTIONS_PATH: self._transcription,
            TRANSLATIONS_PATH: self._translation,
        }

    async def run(self, owner: str, endpoint: str, body: dict[str, Any]) -> LineAnswer:
        request_id = ids.request_id()
        caller = self.gate.caller_of(owner)
        if caller is None:
            return _refused(
                InvalidRequestError(
                    "The API key that created this batch has been revoked.",
                    code="invalid_api_key",
                ),
                request_id,
                401,
            )
        try:
            return await self._answers[endpoint](caller, body, request_id)
        except OmnivoxError as exc:
            return _refused(exc, request_id, exc.status)

    async def _answer(self, caller: Caller, body: dict[str, Any], request_id: str) -> LineAnswer:
        async with refused_before_admission(
            self.gate, caller, request_id, lambda: _model_of(body), self.catalog.find_snapshot
        ):
            req = _validated(CreateChatCompletionRequest, body)
            snapshot = self.catalog.get(req.model).snapshot
            max_output = output_token_limit(req)[0]
        estimate = estimate_prompt_tokens(req) if caller.key is not None else 0
        async with admitted(
            self.gate, caller, req.model, snapshot, max_output, estimate, request_id, batch=True
        ) as admission:
            run = await self.service.start(req, background=True)
            await admission.charge(run)
            completion = await fold.fold(run, want_logprobs=bool(req.logprobs))
        return LineAnswer(200, json.loads(completion.dump()), request_id)

    async def _responses(self, caller: Caller, body: dict[str, Any], request_id: str) -> LineAnswer:
        """As ``POST /v1/responses`` answers it, not streamed (a ``stream`` line fails the
        batch's validation); a stored response is then the key's to retrieve."""
        async with refused_before_admission(
            self.gate, caller, request_id, lambda: _model_of(body), self.catalog.find_snapshot
        ):
            req = _validated(CreateResponseRequest, body)
            plan = await self.responder.plan(req, caller.key_id)
            max_output = output_token_limit(plan.chat.request)[0]
        estimate = self.responder.prompt_estimate(plan) if caller.key is not None else 0
        async with admitted(
            self.gate,
            caller,
            req.model,
            plan.snapshot,
            max_output,
            estimate,
            request_id,
            batch=True,
        ) as admission:
            run = await self.responder.start(plan, streaming=False, background=True)
            await admission.charge(run.chat)
            async for _event in run.events:
                pass
        return LineAnswer(200, json.loads(to_json(run.response)), request_id)

    async def _speech(self, caller: Caller, body: dict[str, Any], request_id: str) -> LineAnswer:
        async with refused_before_admission(
            self.gate, caller, request_id, lambda: _model_of(body), self.catalog.find_snapshot
        ):
            req = _validated(CreateSpeechRequest, body)
            snapshot = self.catalog.get(req.model, "speech").snapshot
        estimate = speech.estimate_speech_tokens(req) if caller.key is not None else 0
        async with admitted(
            self.gate, caller, req.model, snapshot, None, estimate, request_id, batch=True
        ) as admission:
            run = await self.speaker.start(req, background=True)
            await admission.charge(run)
            audio = b"".join([chunk async for chunk in run.chunks])
        answer = {
            "object": "audio.speech",
            "model": req.model,
            "format": req.response_format,
            "content_type": run.media_type,
            "data": base64.b64encode(audio).decode("ascii"),
        }
        return LineAnswer(200, answer, request_id)

    async def _transcription(
        self, caller: Caller, body: dict[str, Any], request_id: str
    ) -> LineAnswer:
        return await self._written_down(caller, body, request_id, "transcribe")

    async def _translation(
        self, caller: Caller, body: dict[str, Any], request_id: str
    ) -> LineAnswer:
        return await self._written_down(caller, body, request_id, "translate")

    async def _written_down(
        self, caller: Caller, body: dict[str, Any], request_id: str, task: TranscriptionTask
    ) -> LineAnswer:
        async with refused_before_admission(
            self.gate, caller, request_id, lambda: _model_of(body), self.catalog.find_snapshot
        ):
            fields = {k: v for k, v in body.items() if k not in ("file", "filename")}
            form_model: type[CreateTranscriptionForm | CreateTranslationForm] = (
                CreateTranscriptionForm if task == "transcribe" else CreateTranslationForm
            )
            form = _validated(form_model, fields)
            try:
                audio = base64.b64decode(str(body.get("file", "")), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequestError(
                    "Invalid 'file': expected the audio file, base64-encoded.",
                    param="file",
                    code="invalid_value",
                ) from None
            snapshot = self.catalog.get(form.model, "transcription").snapshot
        estimate = transcription.estimate_transcription_tokens(len(audio))
        async with admitted(
            self.gate,
            caller,
            form.model,
            snapshot,
            None,
            estimate if caller.key else 0,
            request_id,
            batch=True,
        ) as admission:
            run = await self.transcriber.start(form, audio, task, background=True)
            await admission.charge(run)
            text = await transcription.render(run)
        is_json = run.media_type.startswith("application/json")
        return LineAnswer(200, json.loads(text) if is_json else {"text": text}, request_id)


def _model_of(body: dict[str, Any]) -> str:
    return body["model"] if isinstance(body.get("model"), str) else ""


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise to_openai_error(exc, data) from None


def _refused(exc: OmnivoxError, request_id: str, status: int) -> LineAnswer:
    return LineAnswer(status, exc.body(), request_id)


def add_batch_routes(
    app: FastAPI,
    authenticate: Callable[[Request], Caller],
    batches: BatchService,
) -> None:
    def json_answer(body: Any) -> Response:
        return Response(json.dumps(body), media_type="application/json")

    async def create_batch(request: Request) -> Response:
        caller = authenticate(request)
        check_json_media_type(request.headers.get("content-type"))
        data = await parse_json(await request.body())
        if not isinstance(data, dict):
            raise InvalidRequestError(INVALID_JSON_MESSAGE)
        try:
            req = CreateBatchRequest.model_validate(data)
        except ValidationError as exc:
            raise to_openai_error(exc, data) from None
        return json_answer(await batches.create(caller.key_id, req))

    async def retrieve_batch(request: Request) -> Response:
        caller = authenticate(request)
        batch_id = request.path_params["batch_id"]
        return json_answer(await batches.retrieve(caller.key_id, batch_id))

    async def cancel_batch(request: Request) -> Response:
        caller = authenticate(request)
        batch_id = request.path_params["batch_id"]
        return json_answer(await batches.cancel(caller.key_id, batch_id))

    async def list_batches(request: Request) -> Response:
        caller = authenticate(request)
        after = request.query_params.get("after")
        raw_limit = request.query_params.get("limit", str(DEFAULT_LIST_LIMIT))
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequestError(
                f"Invalid 'limit': expected an integer from 1 to {MAX_LIST_LIMIT}.",
                param="limit",
                code="invalid_value",
            )
        data, more = await batches.page(caller.key_id, after, limit)
        return json_answer(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    app.add_api_route(BATCHES_PATH, create_batch, methods=["POST"], include_in_schema=False)
    app.add_api_route(BATCHES_PATH, list_batches, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        BATCHES_PATH + "/{batch_id}", retrieve_batch, methods=["GET"], include_in_schema=False
    )
    app.add_api_route(
        BATCHES_PATH + "/{batch_id}/cancel",
        cancel_batch,
        methods=["POST"],
        include_in_schema=False,
    )
