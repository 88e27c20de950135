"""One Realtime session (OpenAI's GA protocol): client events in, server events out.

The server hands each client event to ``RealtimeSession.receive`` as the JSON text it
came in, and gives the session a ``send`` that writes one server event. Every server
event has an ``event_id`` and the shape of the SDK's ``RealtimeServerEvent``; errors
are ``error`` events in OpenAI's shape with the client's ``event_id``, and the session
goes on.

A session is a realtime one (``type: "realtime"``: a conversation with responses) or
a transcription one (``?intent=transcription``: the input buffer and its transcripts,
no responses). What runs when, with server VAD (the default, as OpenAI's):

1. Each ``input_audio_buffer.append`` is decoded (PCM16 24 kHz, or G.711 8 kHz) and
   scored by the VAD, 32 ms at a time (``turns.TurnDetector``).
2. Speech begins: ``input_audio_buffer.speech_started`` with the id the user item
   will have; an answer still running is cancelled (``interrupt_response``,
   ``status_details.reason: "turn_detected"``).
3. The first silent window (``turns.EARLY_PAUSE_MS``, 32 ms) when no other session's
   user is speaking (``peers``) and the engine is idle (``IdlingEngine``: nothing in the
   cascade's compute slot for a moment but answers well ahead of their listeners) or
   busy with what this turn threw away at a pause (``OWN_WORK_MS``), else 160 ms of
   silence (``turns.PAUSE_MS``): the turn so far becomes a clip (with 160 ms of silence
   after the speech, as zeros where it has not come yet) and, when the turn will be
   answered (``create_response``), its answer begins at once: the engine recognises the
   clip (the cascade's Whisper) and starts writing and speaking, its events held back.
   Speech again throws it away.
4. ``silence_duration_ms`` of silence: ``speech_stopped``, ``committed``, the user
   item (the same clip), and the response, which takes over the answer begun at 3
   (the clip and the conversation are unchanged) and sends what it has made so far.
   The response is admitted and charged only now; it is a ``MeteredRun`` like a chat
   request (``meter``, given by the server). With ``audio.input.transcription`` the
   item's transcript is made beside the response (``...input_audio_transcription.
   delta/completed``).

With ``turn_detection: null`` the client commits the buffer and asks for responses
itself. One response runs at a time; ``response.cancel`` stops it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from omnivox.engines.base import (
    AudioClip,
    Engine,
    GenerationRequest,
    HearingEngine,
    IdlingEngine,
    PreparedGeneration,
    SamplingParams,
    SpeechOutput,
    ToolSpec,
    TranscribingEngine,
    TranscriptionRequest,
    check_context_window,
)
from omnivox.engines.events import TranscriptionEvent, TranscriptionFinished, TranscriptSegment
from omnivox.errors import InvalidRequestError, InvalidValueError, OmnivoxError, ServerError
from omnivox.ids import new_id
from omnivox.protocol import realtime as wire
from omnivox.protocol.validation import describe, to_openai_error
from omnivox.serving.inputs import InputLimits
from omnivox.serving.realtime.audio_io import InputAudio, OutputAudio, clip_of, joined
from omnivox.serving.realtime.config import (
    TEMPERATURE,
    SessionType,
    check_config,
    checked_model,
    default_config,
    merged,
    turn_rules,
    with_preset,
)
from omnivox.serving.realtime.conversation import Item, turns_of
from omnivox.serving.realtime.conversation import truncate as truncate_item
from omnivox.serving.realtime.responses import (
    Generation,
    ResponseWriter,
    truncation_of,
    usage_json,
    with_instructions,
)
from omnivox.serving.realtime.turns import (
    IdleTimeout,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    TurnSignal,
    tail_ms,
)
from omnivox.serving.runs import MeteredRun, ending
from omnivox.serving.transcription import DURATION_BILLED_MODELS
from omnivox.serving.usage import INPUT_AUDIO_TOKENS_PER_S, UsageCounter, input_audio_tokens

SESSION_LIMIT_S = 60 * 60  # a session ends after an hour, as OpenAI's do
MIN_COMMIT_MS = 100
# After a turn's speculation is thrown away, how long the engine's work may be its own (a
# recognition pass of 0.3-0.8 s, then the cascade's 0.25 s before it counts as idle).
OWN_WORK_MS = 1_000
# A long turn is recognised in pieces while it goes on: at a pause of 160 ms, once the speech
# since the last cut is this long, the pause's speculation hears only that piece, and the piece
# stays heard if the user goes on. The turn's end then waits for the recognition of its last
# piece alone, not of all of it (docs/wire-format.md, "Answering early").
PIECE_MIN_MS = 6_000
# The VAD hears speech begin a window or two late: a piece is kept only when speech came back
# this long after its end, so that the first sound of the next word is not in it.
PIECE_MARGIN_MS = 100
MAX_EVENT_CHARS = 15 * 1024 * 1024  # an event's JSON text, as OpenAI limits an append
OUTPUT_BYTES_PER_MS = 48  # the engines' 24 kHz PCM16
KEEP_BEFORE_SPEECH_MS = 1_000  # the silence kept in the buffer while nobody speaks
CHAT_TOOL_PARAM = re.compile(r"^tools\[(\d+)\](?:\.function)?(.*)$")
ITEM_ACTIONS = {"retrieve": "retrieving", "delete": "deleting", "truncate": "truncating"}
CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
)
RESPONSE_EVENTS = frozenset(
    {"response.create", "response.cancel", "conversation.item.create", "conversation.item.truncate"}
)

Send = Callable[[dict[str, Any]], Awaitable[None]]
# Admits a response and charges its exact prompt; raises an ``OmnivoxError`` to refuse it.
Meter = Callable[[MeteredRun, int | None], Awaitable[None]]

log = logging.getLogger("omnivox.serving")
M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class _Response:
    response_id: str
    task: asyncio.Task[None] | None = None
    reason: str | None = None  # why it was cancelled: "client_cancelled", "turn_detected"
    writer: ResponseWriter | None = None
    started: bool = False  # its task runs: cancelling it now reaches its handlers


@dataclass(slots=True)
class _Speculation:
    """A turn's answer begun before the turn is known to be over."""

    end_ms: int
    parts: tuple[AudioClip, ...]  # the turn's pieces: those cut at its pauses, then the rest
    version: int  # of the conversation it answers
    generation: Generation


@dataclass(slots=True)
class _UserTurn:
    item_id: str
    start_ms: int
    speculation: _Speculation | None = None
    dropped_ms: float = -math.inf  # when speech last threw its speculation away
    pieces: list[AudioClip] = field(default_factory=list)  # cut at pauses, in order
    pieces_end_ms: int | None = None  # where the last piece ends (None: no piece yet)
    cut: tuple[int, AudioClip] | None = None  # the piece this pause ends, if speech goes on

    @property
    def rest_ms(self) -> int:
        """Where the speech not yet in a piece begins."""
        return self.start_ms if self.pieces_end_ms is None else self.pieces_end_ms


@dataclass(slots=True)
class _Plan:
    """What one response is: its settings and the turns it answers."""

    config: dict[str, Any]
    metadata: dict[str, str] | None
    in_conversation: bool
    request: GenerationRequest
    user_audio_s: float
    event_id: str | None = None  # the client's response.create, named in its errors
    heard: tuple[Item, ...] = ()  # the conversation's items it answers (none: its own input)


@dataclass(slots=True)
class RealtimeSession:
    engine: Engine
    model: str  # the name the client connected with
    limits: InputLimits
    send_event: Send
    meter: Meter
    kind: SessionType = "realtime"
    # Check a realtime model name and an input-transcription one (catalog lookups); each
    # raises to refuse the name.
    check_model: Callable[[str], object] = lambda name: None
    check_transcription_model: Callable[[str], object] = lambda name: None
    # A client secret's session (``config.with_preset``), already checked: the session
    # starts with it over the defaults.
    preset: dict[str, Any] | None = None
    # The server's open sessions by id (this one's own while it is open): a turn is begun
    # at its first silent window only while no other session's user is speaking.
    peers: dict[str, RealtimeSession] = field(default_factory=dict)
    session_id: str = field(default_factory=lambda: new_id("sess_", 24))
    created: int = field(default_factory=lambda: int(time.time()))
    config: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    # Where the model's view of the conversation begins once a truncation cut it: the
    # turns after keep hearing the same history, until the next overflow moves it.
    heard_from: Item | None = None
    response: _Response | None = None
    version: int = 0  # changes whenever the conversation does
    input: InputAudio = field(init=False)
    detector: TurnDetector | None = None
    turn: _UserTurn | None = None
    side_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        speaks = "speech" in self.engine.capabilities
        expires_at = self.created + SESSION_LIMIT_S
        self.config = default_config(self.kind, self.session_id, self.model, expires_at, speaks)
        if self.preset is not None:
            self.config = with_preset(self.config, self.preset)
        self.input = InputAudio(self.config["audio"]["input"]["format"])

    # ---- the events --------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        await self.send_event({"event_id": new_id("event_"), **event})

    async def error(self, exc: OmnivoxError, client_event_id: str | None = None) -> None:
        param = exc.param
        if param is not None and (chat_tool := CHAT_TOOL_PARAM.match(param)):
            # an engine names a tool as chat does: here it is the session's
            param = f"session.tools[{chat_tool[1]}]{chat_tool[2]}"
        await self.send(
            {
                "type": "error",
                "error": {
                    "type": exc.error_type(),
                    "code": exc.code,
                    "message": exc.message,
                    "param": param,
                    "event_id": client_event_id,
                },
            }
        )

    async def open(self) -> None:
        self.peers[self.session_id] = self
        self._configure_turns()
        await self.send({"type": "session.created", "session": self.config})

    async def expire(self) -> None:
        await self.error(
            InvalidRequestError(
                f"Your session hit the maximum duration of {SESSION_LIMIT_S // 60} minutes.",
                code="session_expired",
            )
        )

    async def close(self) -> None:
        """The client left or the session ended: whatever still runs is stopped."""
        self.peers.pop(self.session_id, None)
        await self._drop_speculation()
        if self.response is not None and self.response.task is not None:
            task = self.response.task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in list(self.side_tasks):
            task.cancel()
        for task in list(self.side_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def receive(self, text: str) -> None:
        """One client event; whatever is wrong with it is answered with an ``error``."""
        if len(text) > MAX_EVENT_CHARS:
            await self.error(
                InvalidRequestError(
                    f"An event may be at most {MAX_EVENT_CHARS // (1024 * 1024)} MiB.",
                    code="event_too_large",
                )
            )
            return
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
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
        if kind not in CLIENT_EVENTS:
            supported = ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
            raise InvalidValueError(
                f"Invalid value: '{kind}'. Supported values are: {supported}.", param="type"
            )
        if self.kind == "transcription" and kind in RESPONSE_EVENTS:
            raise InvalidRequestError(
                f"'{kind}' is not supported in a transcription session.", param="type"
            )
        if kind == "session.update":
            await self._session_update(event)
        elif kind == "input_audio_buffer.append":
            await self._append(event)
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            await self._forget_turn()
            self.input.clear()
            await self.send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            await self._item_create(event)
        elif kind == "conversation.item.retrieve":
            item = self._item(event, "retrieve")
            await self.send({"type": "conversation.item.retrieved", "item": item.wire})
        elif kind == "conversation.item.truncate":
            await self._truncate(event)
        elif kind == "conversation.item.delete":
            item = self._item(event, "delete")
            if item is self.heard_from:
                self.heard_from = self._user_item_after(item)
            self.items.remove(item)
            self._changed()
            await self.send({"type": "conversation.item.deleted", "item_id": item.id})
        elif kind == "response.create":
            await self._response_create(event)
        else:
            await self._response_cancel(event)

    def _changed(self) -> None:
        self.version += 1

    # ---- session ------------------------------------------------------------------------

    async def _session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session")
        given_type = session.get("type") if isinstance(session, dict) else None
        if given_type in ("realtime", "transcription") and given_type != self.kind:
            raise InvalidValueError(
                f"Passing a {given_type} session update event to a {self.kind} session is "
                "not allowed.",
                param="session.type",
            )
        update = (
            _validated(wire.SessionUpdateEvent, event).session
            if self.kind == "realtime"
            else _validated(wire.TranscriptionSessionUpdateEvent, event).session
        )
        given = update.model_dump(exclude_unset=True, mode="json")
        given.pop("type")
        if "model" in given:
            checked_model(self.check_model, given["model"], "session.model")
        config = merged(self.config, given)
        self._check(config, "session")
        old_format = self.config["audio"]["input"]["format"]
        old_turns = self.config["audio"]["input"]["turn_detection"]
        self.config = config
        if config["audio"]["input"]["format"] != old_format:
            dropped = bool(self.input.buffer) or self.turn is not None
            await self._forget_turn()
            self.input.set_format(config["audio"]["input"]["format"])
            if dropped:  # the buffered audio was in the old format: the client is told
                await self.send({"type": "input_audio_buffer.cleared"})
        if config["audio"]["input"]["turn_detection"] != old_turns:
            await self._forget_turn()
            self._configure_turns()
        await self.send({"type": "session.updated", "session": self.config})

    def _check(self, config: dict[str, Any], where: str) -> None:
        check_config(config, where, self.engine, self.check_transcription_model)

    def _configure_turns(self) -> None:
        rules = turn_rules(self.config)
        if rules is None:
            self.detector = None
            self.input.stop_vad()
            return
        self.detector = TurnDetector(rules)
        if not self.input.vad_on:
            self.input.start_vad()

    # ---- input audio ----------------------------------------------------------------------

    async def _append(self, event: dict[str, Any]) -> None:
        pcm = self.input.decode(_base64_audio(_required_str(event, "audio"), "audio"))
        max_bytes = int(self.limits.max_input_audio_s * self.input.rate) * 2
        if len(self.input.buffer) + len(pcm) > max_bytes:
            raise InvalidRequestError(
                f"The input audio buffer may hold at most {self.limits.max_input_audio_s:g} "
                "seconds of audio.",
                param="audio",
                code="input_audio_buffer_too_large",
            )
        windows = await self.input.append(pcm)
        for window in windows:
            detector = self.detector
            if detector is None:
                break
            for signal in detector.window(window.probability, window.start_ms, window.end_ms):
                await self._turn_signal(signal)
        if self.detector is not None and self.turn is None and not self.detector.in_speech:
            keep_ms = max(KEEP_BEFORE_SPEECH_MS, self.detector.rules.prefix_padding_ms)
            self.input.drop_before(self.input.now_ms - keep_ms)

    async def _turn_signal(self, signal: TurnSignal) -> None:
        detector = self.detector
        assert detector is not None
        rules = detector.rules
        if isinstance(signal, SpeechStarted):
            start_ms = max(signal.audio_start_ms, self.input.start_ms)
            if self.turn is None:
                self.turn = _UserTurn(new_id("item_"), start_ms)
            await self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": start_ms,
                    "item_id": self.turn.item_id,
                }
            )
            if rules.interrupt_response and self.response is not None:
                await self._cancel_response(self.response, "turn_detected")
        elif isinstance(signal, SpeechPaused):
            if (
                self.turn is not None
                and rules.create_response
                and self.kind == "realtime"
                and (not signal.early or self._may_begin_early())
            ):
                await self._speculate(
                    self.turn, signal.end_ms + tail_ms(rules), may_cut=not signal.early
                )
        elif isinstance(signal, SpeechResumed):
            turn = self.turn
            if turn is not None:
                if turn.speculation is not None:
                    turn.dropped_ms = self.input.now_ms
                cut, turn.cut = turn.cut, None
                if cut is not None and self.input.now_ms - cut[0] >= PIECE_MARGIN_MS:
                    turn.pieces_end_ms = cut[0]  # the piece before the pause stays
                    turn.pieces.append(cut[1])
            await self._drop_speculation()
        elif isinstance(signal, SpeechStopped):
            turn = self.turn
            if turn is None:
                return
            await self.send(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": signal.end_ms,
                    "item_id": turn.item_id,
                }
            )
            end_ms = signal.end_ms + tail_ms(rules)
            speculation = turn.speculation
            turn.speculation = None
            self.turn = None
            if speculation is not None and (
                speculation.end_ms != end_ms or speculation.version != self.version
            ):
                await speculation.generation.cancel()
                speculation = None
            if speculation is not None:
                parts = speculation.parts
            else:
                rest = await clip_of(self.input.span(turn.rest_ms, end_ms), self.input.rate)
                parts = (*turn.pieces, rest)
            self.input.clear()
            await self._add_user_audio(
                turn.item_id, parts, speculation.generation if speculation is not None else None
            )
            if rules.create_response and self.kind == "realtime":
                await self._settle_cancelled()
                if self.response is None:
                    await self._start_response(
                        self._plan(self.config, None, True, None),
                        speculation.generation if speculation is not None else None,
                    )
                elif speculation is not None:
                    await speculation.generation.cancel()
        elif isinstance(signal, IdleTimeout):
            item_id = new_id("item_")
            await self.send(
                {
                    "type": "input_audio_buffer.timeout_triggered",
                    "audio_start_ms": signal.start_ms,
                    "audio_end_ms": signal.end_ms,
                    "item_id": item_id,
                }
            )
            pcm = bytes(self.input.buffer)
            self.input.clear()
            if len(pcm) / 2 / self.input.rate * 1000 >= MIN_COMMIT_MS:
                await self._add_user_audio(item_id, (await clip_of(pcm, self.input.rate),))
            if rules.create_response and self.kind == "realtime" and self.response is None:
                await self._start_response(self._plan(self.config, None, True, None), None)

    def _may_begin_early(self) -> bool:
        """Whether a turn may be begun at its first silent window: no other session's user is
        speaking, and the engine is idle (answers ahead of their listeners may be running),
        or busy with what this turn threw away less than ``OWN_WORK_MS`` ago (its own
        recognition pass) while no other session is being answered. That speculation is
        thrown away at every short pause in speech (~20 a minute, against ~4 at 160 ms),
        each a pass that holds the engine: another speaker's turn that ended meanwhile
        would wait for it."""
        others = [peer for key, peer in self.peers.items() if key != self.session_id]
        if any(peer.turn is not None for peer in others):
            return False
        if _engine_idle(self.engine):
            return True
        turn = self.turn  # busy: with its own work, if nobody else is being answered
        return (
            turn is not None
            and self.input.now_ms - turn.dropped_ms < OWN_WORK_MS
            and not any(peer.response is not None for peer in others)
        )

    async def _speculate(self, turn: _UserTurn, end_ms: int, *, may_cut: bool) -> None:
        """Answer the turn as if it ended at ``end_ms``; with ``may_cut`` (the audio up to
        there has come), a long enough rest of it becomes a piece if the user goes on."""
        await self._settle_cancelled()
        if self.response is not None:
            return
        known = turn.speculation
        if known is None or known.end_ms != end_ms or known.version != self.version:
            await self._drop_speculation()  # (else begun at this pause's early signal)
            pcm = self.input.span_ahead(turn.rest_ms, end_ms)
            if len(pcm) / 2 / self.input.rate * 1000 < MIN_COMMIT_MS:
                return
            parts = (*turn.pieces, await clip_of(pcm, self.input.rate))
            user = Item(_user_audio_wire(turn.item_id), parts)
            plan = self._plan(self.config, None, True, None, extra=user)
            generation = self._generation(plan)
            generation.release()
            known = turn.speculation = _Speculation(end_ms, parts, self.version, generation)
        if (
            may_cut
            and isinstance(self.engine, HearingEngine)  # (it keeps what it heard, clip by clip)
            and known.parts[-1].duration_s * 1000 >= PIECE_MIN_MS
        ):
            turn.cut = (end_ms, known.parts[-1])

    async def _settle_cancelled(self) -> None:
        """Wait for a response being cancelled to end (its ``response.done`` sent)."""
        response = self.response
        if response is not None and response.reason is not None and response.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(response.task)

    async def _drop_speculation(self) -> None:
        if self.turn is not None and self.turn.speculation is not None:
            speculation, self.turn.speculation = self.turn.speculation, None
            await speculation.generation.cancel()

    async def _forget_turn(self) -> None:
        await self._drop_speculation()
        self.turn = None
        if self.detector is not None:
            self.detector.reset()

    async def _commit(self) -> None:
        heard_ms = self.input.buffered_ms
        if heard_ms < MIN_COMMIT_MS:
            raise InvalidRequestError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {heard_ms:.2f}ms of audio.",
                param=None,
                code="input_audio_buffer_commit_empty",
            )
        item_id = self.turn.item_id if self.turn is not None else new_id("item_")
        await self._forget_turn()
        pcm = bytes(self.input.buffer)
        self.input.clear()
        await self._add_user_audio(item_id, (await clip_of(pcm, self.input.rate),))

    async def _add_user_audio(
        self, item_id: str, parts: tuple[AudioClip, ...], answer: Generation | None = None
    ) -> None:
        """The committed audio (in ``parts``, the pieces it was heard in) as a user item; its
        transcript written down when the session asks, by ``answer``'s recognition of it
        when it has one (a cascade)."""
        previous = self._last_item_id()
        await self.send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item = Item(_user_audio_wire(item_id), parts)
        await self._add_item(item, previous)
        transcription = self.config["audio"]["input"]["transcription"]
        if transcription is not None and isinstance(self.engine, TranscribingEngine):
            self._side_task(self._transcribe(item, parts, transcription, answer))

    def _side_task(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run())
        self.side_tasks.add(task)
        task.add_done_callback(self.side_tasks.discard)

    async def _transcribe(
        self,
        item: Item,
        parts: tuple[AudioClip, ...],
        transcription: dict[str, Any],
        answer: Generation | None,
    ) -> None:
        engine = self.engine
        assert isinstance(engine, TranscribingEngine)
        at = {"item_id": item.id, "content_index": 0}
        pieces: list[str] = []
        output_tokens = 0
        try:
            heard = await _heard(engine, parts, answer)  # the answer's own recognition
            if heard is not None:
                events = _heard_as_events(heard)
            else:
                clip = parts[0] if len(parts) == 1 else joined(parts)
                language, prompt = transcription.get("language"), transcription.get("prompt")
                events = engine.transcribe(
                    TranscriptionRequest(clip, language=language, prompt=prompt)
                )
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if isinstance(event, TranscriptSegment) and event.text:
                        piece = event.text if not pieces else " " + event.text
                        pieces.append(piece)
                        await self.send(
                            {
                                "type": "conversation.item.input_audio_transcription.delta",
                                **at,
                                "delta": piece,
                            }
                        )
                    elif isinstance(event, TranscriptionFinished):
                        output_tokens = event.output_text_tokens
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, OmnivoxError):
                log.exception("input transcription of %s failed", item.id)
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    **at,
                    "error": {
                        "type": "server_error",
                        "code": None,
                        "message": _failure(exc),
                        "param": None,
                    },
                }
            )
            return
        transcript = "".join(pieces)
        if item.wire["content"]:
            item.wire["content"][0]["transcript"] = transcript
        if transcription.get("model") in DURATION_BILLED_MODELS:
            usage: dict[str, Any] = {"type": "duration", "seconds": round(item.user_audio_s, 3)}
        else:
            audio_tokens = math.ceil(item.user_audio_s * INPUT_AUDIO_TOKENS_PER_S)
            usage = {
                "type": "tokens",
                "input_tokens": audio_tokens,
                "output_tokens": output_tokens,
                "total_tokens": audio_tokens + output_tokens,
                "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
            }
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **at,
                "transcript": transcript,
                "usage": usage,
            }
        )

    # ---- items --------------------------------------------------------------------------

    async def _item_create(self, event: dict[str, Any]) -> None:
        create = _validated(wire.ItemCreate, event)
        previous = self._last_item_id()
        if create.previous_item_id not in (None, previous, "root" if not self.items else None):
            raise InvalidValueError(
                "Items are added at the end of the conversation only: previous_item_id must "
                "be the last item's id or null.",
                param="previous_item_id",
            )
        item = await self._item_of(create.item, "item")
        if any(known.id == item.id for known in self.items):
            raise InvalidRequestError(
                f"Error adding item: an item with id '{item.id}' already exists.",
                param="item.id",
                code="item_create_duplicate_item_id",
            )
        await self._add_item(item, previous)

    async def _item_of(self, item: Any, param: str) -> Item:
        """A client's item (``conversation.item.create``, a response's ``input``)."""
        item_id = item.id or new_id("item_")
        base = {"id": item_id, "object": "realtime.item", "status": "completed"}
        if isinstance(item, wire.FunctionCallItem):
            return Item(
                {
                    **base,
                    "type": "function_call",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                }
            )
        if isinstance(item, wire.FunctionCallOutputItem):
            return Item(
                {
                    **base,
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": item.output,
                }
            )
        content: list[dict[str, Any]] = []
        parts: list[str | AudioClip] = []
        for part in item.content:
            if isinstance(part, wire.InputAudioContent):
                parts.append(await self._clip(part.audio, f"{param}.content"))
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
        return Item(
            {**base, "type": "message", "role": item.role, "content": content}, tuple(parts)
        )

    async def _clip(self, audio_b64: str, param: str) -> AudioClip:
        pcm = self.input.decode(_base64_audio(audio_b64, param))
        if len(pcm) / 2 / self.input.rate > self.limits.max_input_audio_s:
            raise InvalidRequestError(
                f"Audio content may be at most {self.limits.max_input_audio_s:g} seconds long.",
                param=param,
                code="audio_too_long",
            )
        return await clip_of(pcm, self.input.rate)

    def _item(self, event: dict[str, Any], doing: str) -> Item:
        """The conversation's item that ``event["item_id"]`` names; none is OpenAI's
        ``item_<doing>_invalid_item_id`` error, which clients tell apart (a truncate
        that comes after its item was dropped is a benign race to them)."""
        item_id = _required_str(event, "item_id")
        for item in self.items:
            if item.id == item_id:
                return item
        raise InvalidRequestError(
            f"Error {ITEM_ACTIONS[doing]} item: the item with id '{item_id}' does not exist.",
            param="item_id",
            code=f"item_{doing}_invalid_item_id",
        )

    def _last_item_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    async def _add_item(self, item: Item, previous: str | None) -> None:
        self.items.append(item)
        self._changed()
        for kind in ("conversation.item.added", "conversation.item.done"):
            await self.send({"type": kind, "previous_item_id": previous, "item": item.wire})

    async def _truncate(self, event: dict[str, Any]) -> None:
        request = _validated(wire.ItemTruncate, event)
        item = self._item(event, "truncate")
        if item.audio is None or item.wire.get("role") != "assistant":
            raise InvalidValueError(
                "Only an assistant message with audio can be truncated.", param="item_id"
            )
        if request.content_index != 0:
            raise InvalidValueError(
                "The item has one content part: content_index must be 0.", param="content_index"
            )
        audio_ms = item.audio.n_bytes / OUTPUT_BYTES_PER_MS
        if request.audio_end_ms > audio_ms:
            raise InvalidValueError(
                f"Audio content of {audio_ms:.0f}ms is already shorter than "
                f"{request.audio_end_ms}ms",
                param="audio_end_ms",
            )
        cut_bytes = request.audio_end_ms * OUTPUT_BYTES_PER_MS
        response = self.response
        writer = response.writer if response is not None else None
        if writer is not None and item in writer.generating:
            item.cut_bytes = cut_bytes  # the answer goes on; the item is cut when it ends
        else:
            truncate_item(item, cut_bytes)
        self._changed()
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": 0,
                "audio_end_ms": request.audio_end_ms,
            }
        )

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
        in_conversation = given.pop("conversation", "auto") != "none"
        given.pop("input", None)
        if "audio" in given:
            given["audio"] = {"output": given["audio"].get("output") or {}}
        config = merged(self.config, given)
        self._check(config, "response")
        inputs = None
        if params.input is not None:
            inputs = [await self._input_item(entry, i) for i, entry in enumerate(params.input)]
        plan = self._plan(config, metadata, in_conversation, inputs)
        plan.event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        await self._start_response(plan, None)

    async def _input_item(self, entry: Any, i: int) -> Item:
        if isinstance(entry, wire.ItemReference):
            for item in self.items:
                if item.id == entry.id:
                    return item
            raise InvalidValueError(
                f"Item with item_id not found: {entry.id}", param=f"response.input[{i}].id"
            )
        return await self._item_of(entry, f"response.input[{i}]")

    def _plan(
        self,
        config: dict[str, Any],
        metadata: dict[str, str] | None,
        in_conversation: bool,
        inputs: list[Item] | None,
        extra: Item | None = None,
    ) -> _Plan:
        if inputs is not None:
            items = list(inputs)
        elif config.get("truncation") == "disabled":
            items = list(self.items)  # the whole conversation: it fits or fails
        else:
            items = self._heard_items()
        if extra is not None:
            items.append(extra)
        speak = config["output_modalities"] == ["audio"]
        max_output = config["max_output_tokens"]
        voice = config["audio"]["output"]["voice"]
        tools = tuple(
            ToolSpec(t["name"], t.get("description"), t.get("parameters")) for t in config["tools"]
        )
        choice = config["tool_choice"]
        request = GenerationRequest(
            turns=with_instructions(turns_of(items), config["instructions"]),
            sampling=SamplingParams(
                temperature=TEMPERATURE,
                max_output_tokens=None if max_output == "inf" else max_output,
            ),
            speech=SpeechOutput(voice["id"] if isinstance(voice, dict) else voice)
            if speak
            else None,
            tools=tools,
            tool_choice=(choice["name"] if isinstance(choice, dict) else choice)
            if tools
            else "none",
            parallel_tool_calls=config.get("parallel_tool_calls") is not False,
        )
        user_s = sum(item.user_audio_s for item in items)
        heard = tuple(items) if inputs is None else ()
        return _Plan(config, metadata, in_conversation, request, user_s, heard=heard)

    def _heard_items(self) -> list[Item]:
        """The conversation as the model hears it, from ``heard_from`` on: a list of its own
        (a speculated turn is added to it, never to the conversation)."""
        for index, item in enumerate(self.items):
            if item is self.heard_from:
                return self.items[index:]
        return list(self.items)

    def _user_item_after(self, item: Item) -> Item | None:
        """The first user message after ``item`` in the conversation (None: none)."""
        index = next(i for i, known in enumerate(self.items) if known is item)
        return next((later for later in self.items[index + 1 :] if _is_user(later)), None)

    def _cut_heard(self, plan: _Plan, generation: Generation) -> float:
        """After ``generation`` dropped its plan's oldest turns, the model's view begins
        at its first kept user turn for the turns after; the user audio it heard, in s."""
        users = [index for index, item in enumerate(plan.heard) if _is_user(item)]
        kept = plan.heard[users[generation.dropped_user_turns] :]
        if any(item is kept[0] for item in self.items):  # (a speculated turn's is not, yet)
            self.heard_from = kept[0]
        return sum(item.user_audio_s for item in kept)

    def _generation(self, plan: _Plan) -> Generation:
        max_tokens = plan.request.sampling.max_output_tokens
        window = self.engine.context_window_tokens

        def check(prepared: PreparedGeneration) -> None:
            check_context_window(
                self.engine.context_window_tokens, prepared.context_tokens, max_tokens
            )

        return Generation(
            self.engine,
            plan.request,
            check,
            truncation=truncation_of(plan.config.get("truncation"), window, max_tokens),
        )

    async def _start_response(self, plan: _Plan, generation: Generation | None) -> None:
        response = _Response(new_id("resp_"))
        self.response = response
        response.task = asyncio.create_task(
            self._respond(response, plan, generation or self._generation(plan))
        )

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        response = self.response
        wanted = event.get("response_id")
        if (
            response is None
            or response.reason is not None  # already being cancelled
            or (wanted is not None and wanted != response.response_id)
        ):
            raise InvalidRequestError(
                "Cancellation failed: no active response found.",
                code="response_cancel_not_active",
            )
        await self._cancel_response(response, "client_cancelled")

    async def _cancel_response(self, response: _Response, reason: str) -> None:
        """A task not started yet sees ``reason`` when it starts (a task cancelled before its
        first step would never run its handlers, and its response would never end)."""
        if response.reason is None and response.task is not None:
            response.reason = reason
            if response.started:
                response.task.cancel()

    async def _respond(self, response: _Response, plan: _Plan, generation: Generation) -> None:
        response.started = True
        try:
            await self._run_response(response, plan, generation)
        except asyncio.CancelledError:
            if response.reason is None:
                raise  # the session is closing: nobody to tell
        except Exception:  # a bug: the session goes on without this response
            log.exception("realtime response %s failed", response.response_id)
            await self.error(ServerError())
        finally:
            await generation.cancel()
            if self.response is response:
                self.response = None

    async def _run_response(self, response: _Response, plan: _Plan, generation: Generation) -> None:
        config = plan.config
        speak = config["output_modalities"] == ["audio"]
        voice = config["audio"]["output"]["voice"]
        out_format = config["audio"]["output"]["format"]
        shown: dict[str, Any] = {
            "id": response.response_id,
            "object": "realtime.response",
            "conversation_id": (
                "conv_" + self.session_id.removeprefix("sess_") if plan.in_conversation else None
            ),
            "output_modalities": config["output_modalities"],
            "max_output_tokens": config["max_output_tokens"],
            "audio": {"output": {"format": out_format, "voice": voice}},
            "metadata": plan.metadata,
        }
        usage = UsageCounter(0, input_audio_tokens(plan.user_audio_s, 0.0))
        writer = ResponseWriter(
            self.send,
            shown,
            speak=speak,
            output=OutputAudio(out_format),
            conversation=self.items if plan.in_conversation else None,
            usage=usage,
        )
        run = MeteredRun(response.response_id, usage)
        try:
            if response.reason is not None:  # cancelled before it started
                raise asyncio.CancelledError
            prepared = await generation.prepared()
            usage.prompt_text_tokens = prepared.prompt_text_tokens
            if generation.dropped_user_turns and plan.heard:
                heard_s = self._cut_heard(plan, generation)
                usage.prompt_audio_tokens = input_audio_tokens(heard_s, 0.0)
            max_tokens = plan.request.sampling.max_output_tokens
            await self.meter(run, max_tokens)
        except asyncio.CancelledError:
            if response.reason is None:
                raise
            _uncancel()
            await writer.created()
            writer.ended("cancelled", {"type": "cancelled", "reason": response.reason})
            await self._response_done(writer, [])
            return
        except OmnivoxError as exc:
            await self.error(exc, plan.event_id)
            return
        response.writer = writer
        try:
            await writer.created()
            async with ending(run) as end:
                async for event in generation.events():
                    await writer.event(event)
                    if run.checkpoints:
                        await run.checkpoint()
                await end.completed()
        except asyncio.CancelledError:
            if response.reason is None:
                raise
            _uncancel()
            writer.ended("cancelled", {"type": "cancelled", "reason": response.reason})
        except Exception as exc:  # the engine failed mid-answer: the response fails
            if not isinstance(exc, OmnivoxError):
                log.exception("realtime response %s failed", response.response_id)
            writer.ended(
                "failed",
                {
                    "type": "failed",
                    "error": {"type": "server_error", "code": None, "message": _failure(exc)},
                },
            )
        finally:
            if run.finalizers:  # cancelled before its generation began
                await asyncio.shield(run.finish("cancelled"))
        await generation.cancel()
        items = await writer.finish()
        if plan.in_conversation:
            self._changed()
        await self._response_done(writer, items)
        if self.detector is not None:
            answer_ms = sum(i.audio.n_bytes for i in items if i.audio) // OUTPUT_BYTES_PER_MS
            self.detector.arm_idle(self.input.now_ms + answer_ms)

    async def _response_done(self, writer: ResponseWriter, items: list[Item]) -> None:
        await self.send(
            {
                "type": "response.done",
                "response": {
                    **writer.shown,
                    "status": writer.status,
                    "status_details": writer.details,
                    "output": [item.wire for item in items],
                    "usage": usage_json(writer.usage),
                },
            }
        )


def _engine_idle(engine: Engine) -> bool:
    """Whether work that may be thrown away delays nobody now (False when unknown)."""
    return isinstance(engine, IdlingEngine) and engine.idle()


async def _heard(
    engine: Engine, parts: tuple[AudioClip, ...], answer: Generation | None
) -> str | None:
    """What an engine that recognises speech for its prompts heard in ``parts`` (a turn's
    pieces), once the answer being prepared on it has recognised them; None when there is
    no such answer."""
    if answer is None or not isinstance(engine, HearingEngine):
        return None
    if not await answer.was_prepared():  # the answer's refusal is the answer's to report
        return None
    heard = [engine.heard(part) for part in parts]
    if any(words is None for words in heard):
        return None
    return " ".join(words.strip() for words in heard if words and words.strip())


async def _heard_as_events(text: str) -> AsyncIterator[TranscriptionEvent]:
    """A transcript already made, as the one segment a recogniser would have yielded."""
    yield TranscriptSegment(0, 0, 0.0, 0.0, text, (), 0.0, 0.0, 0.0, 0.0)


def _required_str(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if key not in event or value is None:
        raise InvalidRequestError(
            f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter"
        )
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"Invalid type for '{key}': expected a string, but got {describe(value)} instead.",
            param=key,
            code="invalid_type",
        )
    return value


def _base64_audio(data: str, param: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValueError(
            f"Invalid '{param}': expected base64-encoded audio in the session's input format.",
            param=param,
        ) from None


def _user_audio_wire(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def _is_user(item: Item) -> bool:
    return item.kind == "message" and item.wire.get("role") == "user"


def _uncancel() -> None:
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()


def _failure(exc: BaseException) -> str:
    if isinstance(exc, OmnivoxError):
        return exc.message
    return "The server had an error while processing your request. Sorry about that!"


def _validated(model: type[M], event: dict[str, Any]) -> M:
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise to_openai_error(exc, event) from None


__all__ = ["SESSION_LIMIT_S", "RealtimeSession"]
