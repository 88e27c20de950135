"""One Realtime session (OpenAI's GA protocol): client events in, server events out.

The server hands each client event to ``RealtimeSession.receive`` as the JSON text it
came in, and gives the session a ``send`` that writes one server event. Every
server event has an ``event_id`` (``event_`` + 21 alphanumerics) and the shape of
the SDK's ``RealtimeServerEvent``. What is served:

- ``session.update``: only the keys given change; an unknown key refuses the whole
  update (``unknown_parameter``), and so does a value not served yet (server or
  semantic VAD, G.711 audio, input transcription, noise reduction, tools:
  ``invalid_value``). Audio is PCM16 at 24 kHz both ways; the client commits the
  input buffer itself (``turn_detection`` is null).
- ``input_audio_buffer.append`` / ``.commit`` / ``.clear``; a commit of less than
  100 ms is ``input_audio_buffer_commit_empty``; the committed audio becomes a user
  item with ``input_audio`` content.
- ``conversation.item.create`` for user, system and assistant messages, added at the
  end of the conversation.
- ``response.create``: one generation over the whole conversation, streamed as
  text (``output_modalities: ["text"]``) or as audio with its transcript; then the
  answer is an assistant item of the conversation. ``response.cancel`` stops it
  (``status: "cancelled"``). One response at a time.

Errors are ``error`` events in OpenAI's shape, with the client's ``event_id``; the
session goes on. Each response is a ``MeteredRun`` (a new ``response_id`` each):
``meter`` (given by the server) admits it and charges its exact prompt before the
first event, and its finalizers run once it ends, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from omnivox.audio import INPUT_SAMPLE_RATE, OUTPUT_BYTES_PER_S, OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import resample, s16le_to_float
from omnivox.engines.base import (
    AudioClip,
    Engine,
    GenerationRequest,
    SamplingParams,
    SpeechOutput,
    Turn,
    check_context_window,
)
from omnivox.engines.events import AudioDelta, Finished, TextDelta
from omnivox.errors import InvalidRequestError, InvalidValueError, OmnivoxError, ServerError
from omnivox.protocol import realtime as wire
from omnivox.protocol.validation import to_openai_error
from omnivox.serving.inputs import InputLimits, voice_name
from omnivox.serving.runs import MeteredRun, ending
from omnivox.serving.usage import OutputCount, UsageCounter, input_audio_tokens

SESSION_LIMIT_S = 60 * 60  # a session ends after an hour, as OpenAI's do
MIN_COMMIT_MS = 100
DEFAULT_VOICE = "alloy"
PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": OUTPUT_SAMPLE_RATE}
UNSERVED_EVENTS = frozenset(
    {
        "conversation.item.truncate",
        "output_audio_buffer.clear",
    }
)

Send = Callable[[dict[str, Any]], Awaitable[None]]
# Admits a response and charges its exact prompt; raises an ``OmnivoxError`` to refuse it.
Meter = Callable[[MeteredRun, int | None], Awaitable[None]]

log = logging.getLogger("omnivox.serving")
M = TypeVar("M", bound=BaseModel)
_ALPHANUMERIC = string.ascii_letters + string.digits


def new_id(prefix: str, n_chars: int = 21) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(n_chars))


@dataclass(slots=True)
class _Item:
    wire: dict[str, Any]  # as the client is shown it
    turn: Turn
    user_audio_s: float = 0.0


@dataclass(slots=True)
class _Response:
    response_id: str
    task: asyncio.Task[None] | None = None
    cancelled: bool = False
    generating: bool = False  # cancelling stops the engine only while this holds


@dataclass(slots=True)
class RealtimeSession:
    engine: Engine
    model: str  # the name the client connected with
    limits: InputLimits
    send_event: Send
    meter: Meter
    session_id: str = field(default_factory=lambda: new_id("sess_", 24))
    created: int = field(default_factory=lambda: int(time.time()))
    config: dict[str, Any] = field(default_factory=dict)
    items: list[_Item] = field(default_factory=list)
    buffer: bytearray = field(default_factory=bytearray)
    response: _Response | None = None

    def __post_init__(self) -> None:
        speaks = "speech" in self.engine.capabilities
        self.config = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.session_id,
            "model": self.model,
            "expires_at": self.created + SESSION_LIMIT_S,
            "output_modalities": ["audio" if speaks else "text"],
            "instructions": "",
            "audio": {
                "input": {
                    "format": dict(PCM_FORMAT),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": None,
                },
                "output": {"format": dict(PCM_FORMAT), "voice": DEFAULT_VOICE, "speed": 1.0},
            },
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "include": None,
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
        }

    # ---- the events --------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        await self.send_event({"event_id": new_id("event_"), **event})

    async def error(self, exc: OmnivoxError, client_event_id: str | None = None) -> None:
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": exc.error_type(),
                    "code": exc.code,
                    "message": exc.message,
                    "param": exc.param,
                    "event_id": client_event_id,
                },
            }
        )

    async def open(self) -> None:
        await self.send({"type": "session.created", "session": self.config})

    async def expire(self) -> None:
        await self.error(
            InvalidRequestError(
                f"Your session hit the maximum duration of {SESSION_LIMIT_S // 60} minutes.",
                code="session_expired",
            )
        )

    async def close(self) -> None:
        """The client left or the session ended: a response still running is stopped."""
        if self.response is not None and self.response.task is not None:
            task = self.response.task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def receive(self, text: str) -> None:
        """One client event; whatever is wrong with it is answered with an ``error``."""
        try:
            event = json.loads(text)
        except ValueError:
            await self.error(
                InvalidRequestError(
                    "We could not parse the JSON body of your event.", code="invalid_json"
                )
            )
            return
        if not isinstance(event, dict):
            await self.error(InvalidRequestError("An event must be a JSON object."))
            return
        client_event_id = event.get("event_id")
        if not isinstance(client_event_id, str):
            client_event_id = None
        try:
            await self._handle(event)
        except OmnivoxError as exc:
            await self.error(exc, client_event_id)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            await self._session_update(event)
        elif kind == "input_audio_buffer.append":
            self._append(event)
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            self.buffer.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            await self._item_create(event)
        elif kind == "conversation.item.retrieve":
            item = self._item(event)
            await self.send({"type": "conversation.item.retrieved", "item": item.wire})
        elif kind == "conversation.item.delete":
            item = self._item(event)
            self.items.remove(item)
            await self.send({"type": "conversation.item.deleted", "item_id": item.wire["id"]})
        elif kind == "response.create":
            await self._response_create(event)
        elif kind == "response.cancel":
            await self._response_cancel(event)
        elif kind in UNSERVED_EVENTS:
            raise InvalidValueError(
                f"The event type '{kind}' is not supported by this server.", param="type"
            )
        else:
            raise InvalidValueError(
                f"Invalid value: '{kind}'. Supported values are: 'session.update', "
                "'input_audio_buffer.append', 'input_audio_buffer.commit', "
                "'input_audio_buffer.clear', 'conversation.item.create', "
                "'conversation.item.retrieve', 'conversation.item.delete', "
                "'response.create' and 'response.cancel'.",
                param="type",
            )

    # ---- session ------------------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        update = _validated(wire.SessionUpdateEvent, event).session
        given = update.model_dump(exclude_unset=True, mode="json")
        given.pop("type")
        if given.pop("model", self.model) != self.model:
            raise InvalidValueError(
                "The session's model is the one it was opened with.", param="session.model"
            )
        config = _merged(self.config, given)
        self._check_served(config, "session")
        self.config = config
        await self.send({"type": "session.updated", "session": self.config})

    def _check_served(self, config: dict[str, Any], where: str) -> None:
        audio_in = config["audio"]["input"]
        audio_out = config["audio"]["output"]
        unserved = {
            f"{where}.audio.input.turn_detection": (
                audio_in.get("turn_detection") is not None,
                "Only turn_detection null is supported: the client commits the input "
                "audio buffer (input_audio_buffer.commit).",
            ),
            f"{where}.audio.input.transcription": (
                audio_in.get("transcription") is not None,
                "Input audio transcription is not supported; use null.",
            ),
            f"{where}.audio.input.noise_reduction": (
                audio_in.get("noise_reduction") is not None,
                "Noise reduction is not supported; use null.",
            ),
            f"{where}.audio.input.format": (
                not _is_pcm(audio_in.get("format")),
                "Only {'type': 'audio/pcm', 'rate': 24000} is supported.",
            ),
            f"{where}.audio.output.format": (
                not _is_pcm(audio_out.get("format")),
                "Only {'type': 'audio/pcm', 'rate': 24000} is supported.",
            ),
            f"{where}.audio.output.speed": (
                audio_out.get("speed") not in (None, 1.0),
                "Only speed 1.0 is supported.",
            ),
            f"{where}.tools": (
                bool(config.get("tools")),
                "Function tools are not supported in Realtime sessions yet; use [].",
            ),
            f"{where}.output_modalities": (
                config["output_modalities"] == ["audio"]
                and "speech" not in self.engine.capabilities,
                "This model does not speak: use output_modalities ['text'].",
            ),
        }
        for param, (broken, message) in unserved.items():
            if broken:
                raise InvalidValueError(message, param=param)
        voice = audio_out.get("voice")
        voice_name(voice["id"] if isinstance(voice, dict) else voice, f"{where}.audio.output.voice")

    # ---- input audio and items ------------------------------------------------------------

    def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise InvalidRequestError(
                "Missing required parameter: 'audio'.",
                param="audio",
                code="missing_required_parameter",
            )
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidValueError(
                "Invalid 'audio': expected base64-encoded PCM16 audio.", param="audio"
            ) from None
        max_bytes = int(self.limits.max_input_audio_s * OUTPUT_BYTES_PER_S)
        if len(self.buffer) + len(pcm) > max_bytes:
            raise InvalidRequestError(
                f"The input audio buffer may hold at most {self.limits.max_input_audio_s:g} "
                "seconds of audio.",
                param="audio",
                code="input_audio_buffer_too_large",
            )
        self.buffer += pcm

    async def _commit(self) -> None:
        pcm = bytes(self.buffer[: len(self.buffer) // 2 * 2])
        heard_ms = len(pcm) / OUTPUT_BYTES_PER_S * 1000
        if heard_ms < MIN_COMMIT_MS:
            raise InvalidRequestError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {heard_ms:.2f}ms of audio.",
                param=None,
                code="input_audio_buffer_commit_empty",
            )
        self.buffer.clear()
        samples = await asyncio.to_thread(
            lambda: resample(s16le_to_float(pcm), OUTPUT_SAMPLE_RATE, INPUT_SAMPLE_RATE)
        )
        clip = AudioClip(samples, INPUT_SAMPLE_RATE, "realtime:" + secrets.token_hex(16))
        item_id = new_id("item_")
        previous = self._last_item_id()
        wire_item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        await self._add_item(_Item(wire_item, Turn("user", (clip,)), clip.duration_s), previous)

    async def _item_create(self, event: dict[str, Any]) -> None:
        create = _validated(wire.ItemCreate, event)
        previous = self._last_item_id()
        if create.previous_item_id not in (None, previous, "root" if not self.items else None):
            raise InvalidValueError(
                "Items are added at the end of the conversation only: previous_item_id must "
                "be the last item's id or null.",
                param="previous_item_id",
            )
        item = create.item
        item_id = item.id or new_id("item_")
        if any(known.wire["id"] == item_id for known in self.items):
            raise InvalidValueError(f"Item '{item_id}' already exists.", param="item.id")
        content: list[dict[str, Any]] = []
        parts: list[str | AudioClip] = []
        user_audio_s = 0.0
        for part in item.content:
            if isinstance(part, wire.InputAudioContent):
                clip = await self._clip(part.audio)
                user_audio_s += clip.duration_s
                parts.append(clip)
                content.append({"type": "input_audio", "transcript": part.transcript})
            elif isinstance(part, wire.InputText):
                parts.append(part.text)
                content.append({"type": "input_text", "text": part.text})
            elif isinstance(part, wire.OutputText):
                parts.append(part.text)
                content.append({"type": "output_text", "text": part.text})
            else:
                parts.append(part.transcript or "")
                content.append({"type": "output_audio", "transcript": part.transcript})
        wire_item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": item.role,
            "status": "completed",
            "content": content,
        }
        await self._add_item(
            _Item(wire_item, Turn(item.role, tuple(parts)), user_audio_s), previous
        )

    async def _clip(self, audio_b64: str) -> AudioClip:
        try:
            pcm = base64.b64decode(audio_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidValueError(
                "Invalid 'item.content.audio': expected base64-encoded PCM16 audio.",
                param="item.content",
            ) from None
        pcm = pcm[: len(pcm) // 2 * 2]
        if len(pcm) / OUTPUT_BYTES_PER_S > self.limits.max_input_audio_s:
            raise InvalidRequestError(
                f"Audio content may be at most {self.limits.max_input_audio_s:g} seconds long.",
                param="item.content",
                code="audio_too_long",
            )
        samples = await asyncio.to_thread(
            lambda: resample(s16le_to_float(pcm), OUTPUT_SAMPLE_RATE, INPUT_SAMPLE_RATE)
        )
        return AudioClip(samples, INPUT_SAMPLE_RATE, "realtime:" + secrets.token_hex(16))

    def _item(self, event: dict[str, Any]) -> _Item:
        """The conversation's item that ``event["item_id"]`` names (400 when none does)."""
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise InvalidRequestError(
                "Missing required parameter: 'item_id'.",
                param="item_id",
                code="missing_required_parameter",
            )
        for item in self.items:
            if item.wire["id"] == item_id:
                return item
        raise InvalidValueError(f"Item with item_id not found: {item_id}", param="item_id")

    def _last_item_id(self) -> str | None:
        return self.items[-1].wire["id"] if self.items else None

    async def _add_item(self, item: _Item, previous: str | None) -> None:
        self.items.append(item)
        for kind in ("conversation.item.added", "conversation.item.done"):
            await self.send({"type": kind, "previous_item_id": previous, "item": item.wire})

    # ---- responses ----------------------------------------------------------------------

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self.response is not None:
            raise InvalidRequestError(
                "Conversation already has an active response in progress: "
                f"{self.response.response_id}. Wait until the response is finished before "
                "creating a new one.",
                code="conversation_already_has_active_response",
            )
        params = _validated(wire.ResponseCreate, event).response or wire.ResponseParams()
        given = params.model_dump(exclude_unset=True, mode="json")
        metadata = given.pop("metadata", None)
        given.pop("conversation", None)
        if "audio" in given:
            given["audio"] = {"output": given["audio"].get("output") or {}}
        config = _merged(self.config, given)
        self._check_served(config, "response")
        response = _Response(new_id("resp_"))
        self.response = response
        response.task = asyncio.create_task(self._respond(response, config, metadata))

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        response = self.response
        wanted = event.get("response_id")
        if response is None or (wanted is not None and wanted != response.response_id):
            raise InvalidRequestError(
                "Cancellation failed: no active response found.",
                code="response_cancel_not_active",
            )
        response.cancelled = True
        if response.task is not None and response.generating:
            response.task.cancel()

    async def _respond(
        self, response: _Response, config: dict[str, Any], metadata: dict[str, str] | None
    ) -> None:
        try:
            await self._run_response(response, config, metadata)
        except Exception:  # a bug: the session goes on without this response
            log.exception("realtime response %s failed", response.response_id)
            await self.error(ServerError())
        finally:
            self.response = None

    async def _run_response(
        self, response: _Response, config: dict[str, Any], metadata: dict[str, str] | None
    ) -> None:
        speak = config["output_modalities"] == ["audio"]
        max_output = config["max_output_tokens"]
        max_tokens = None if max_output == "inf" else int(max_output)
        voice = config["audio"]["output"]["voice"]
        turns = [item.turn for item in self.items]
        if config["instructions"]:
            turns.insert(0, Turn("system", (config["instructions"],)))
        generation = GenerationRequest(
            turns=tuple(turns),
            sampling=SamplingParams(max_output_tokens=max_tokens),
            speech=SpeechOutput(voice["id"] if isinstance(voice, dict) else voice)
            if speak
            else None,
        )
        try:
            prepared = await self.engine.prepare(generation)
            check_context_window(
                self.engine.context_window_tokens, prepared.context_tokens, max_tokens
            )
            user_s = sum(item.user_audio_s for item in self.items)
            usage = UsageCounter(prepared.prompt_text_tokens, input_audio_tokens(user_s, 0.0))
            run = MeteredRun(response.response_id, usage)
            await self.meter(run, max_tokens)
        except OmnivoxError as exc:
            await self.error(exc)
            return
        try:
            item_id = new_id("item_")
            previous = self._last_item_id()
            shown: dict[str, Any] = {
                "id": response.response_id,
                "object": "realtime.response",
                "conversation_id": "conv_" + self.session_id.removeprefix("sess_"),
                "output_modalities": config["output_modalities"],
                "max_output_tokens": max_output,
                "audio": {"output": {"format": dict(PCM_FORMAT), "voice": voice}},
                "metadata": metadata,
            }
            await self.send(
                {
                    "type": "response.created",
                    "response": {
                        **shown,
                        "status": "in_progress",
                        "status_details": None,
                        "output": [],
                        "usage": None,
                    },
                }
            )
            item: dict[str, Any] = {
                "id": item_id,
                "object": "realtime.item",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            at = {"response_id": response.response_id, "item_id": item_id, "output_index": 0}
            await self.send(
                {"type": "response.output_item.added", **_without(at, "item_id"), "item": item}
            )
            await self.send(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
            )
            part: dict[str, Any] = (
                {"type": "audio", "transcript": ""} if speak else {"type": "text", "text": ""}
            )
            at["content_index"] = 0
            await self.send({"type": "response.content_part.added", **at, "part": part})
            text: list[str] = []
            count = OutputCount(usage)
            status: str = "completed"
            details: dict[str, Any] | None = None
            response.generating = True
            try:
                async with ending(run) as end:
                    async for event in self.engine.generate(prepared):
                        if isinstance(event, TextDelta):
                            count.text(len(event.logprobs) or 1)
                            text.append(event.text)
                            kind = (
                                "response.output_audio_transcript.delta"
                                if speak
                                else ("response.output_text.delta")
                            )
                            await self.send({"type": kind, **at, "delta": event.text})
                        elif isinstance(event, AudioDelta):
                            count.audio(len(event.pcm_s16le))
                            delta = base64.b64encode(event.pcm_s16le).decode()
                            await self.send(
                                {"type": "response.output_audio.delta", **at, "delta": delta}
                            )
                        elif isinstance(event, Finished):
                            count.finished(event.completion_text_tokens)
                            if event.prompt_text_tokens is not None:
                                usage.prompt_text_tokens = event.prompt_text_tokens
                            if event.reason == "length":
                                status = "incomplete"
                                details = {"type": "incomplete", "reason": "max_output_tokens"}
                        if run.checkpoints:
                            await run.checkpoint()
                    await end.completed()
            except asyncio.CancelledError:
                if not response.cancelled:
                    raise  # the session is closing: nobody to tell
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
            except Exception as exc:  # the engine failed mid-answer: the response fails
                if not isinstance(exc, OmnivoxError):
                    log.exception("realtime response %s failed", response.response_id)
                status = "failed"
                details = {
                    "type": "failed",
                    "error": {"type": "server_error", "code": None, "message": _failure(exc)},
                }
            response.generating = False
            said = "".join(text)
            if speak:
                await self.send({"type": "response.output_audio.done", **at})
                await self.send(
                    {"type": "response.output_audio_transcript.done", **at, "transcript": said}
                )
                part = {"type": "audio", "transcript": said}
                content = {"type": "output_audio", "transcript": said}
            else:
                await self.send({"type": "response.output_text.done", **at, "text": said})
                part = {"type": "text", "text": said}
                content = {"type": "output_text", "text": said}
            await self.send({"type": "response.content_part.done", **at, "part": part})
            item = {**item, "status": "completed" if status == "completed" else "incomplete"}
            item["content"] = [content]
            await self.send(
                {
                    "type": "response.output_item.done",
                    **_without(at, "item_id", "content_index"),
                    "item": item,
                }
            )
            self.items.append(_Item(item, Turn("assistant", (said,))))
            await self.send(
                {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
            )
            await self.send(
                {
                    "type": "response.done",
                    "response": {
                        **shown,
                        "status": status,
                        "status_details": details,
                        "output": [item],
                        "usage": _usage(usage),
                    },
                }
            )
        finally:
            if run.finalizers:  # cancelled before its generation began
                await asyncio.shield(run.finish("cancelled"))


def _failure(exc: Exception) -> str:
    if isinstance(exc, OmnivoxError):
        return exc.message
    return "The server had an error while processing your request. Sorry about that!"


def _without(at: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in at.items() if k not in keys}


def _is_pcm(fmt: Any) -> bool:
    return (
        isinstance(fmt, dict)
        and fmt.get("type") == "audio/pcm"
        and fmt.get("rate")
        in (
            None,
            OUTPUT_SAMPLE_RATE,
        )
    )


def _merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``given``'s keys over it; ``audio``, ``input`` and ``output`` merge
    key by key (only what is present changes), every other value replaces."""
    merged = dict(base)
    for key, value in given.items():
        if key in ("audio", "input", "output") and isinstance(value, dict):
            merged[key] = _merged(base.get(key) or {}, value)
        else:
            merged[key] = value
    return merged


def _validated(model: type[M], event: dict[str, Any]) -> M:
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise to_openai_error(exc, event) from None


def _usage(usage: UsageCounter) -> dict[str, Any]:
    input_tokens = usage.prompt_text_tokens + usage.prompt_audio_tokens
    output_tokens = usage.completion_text_tokens + usage.completion_audio_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": usage.prompt_text_tokens,
            "audio_tokens": usage.prompt_audio_tokens,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {
            "text_tokens": usage.completion_text_tokens,
            "audio_tokens": usage.completion_audio_tokens,
        },
    }
