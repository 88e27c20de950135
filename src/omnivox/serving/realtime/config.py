"""A Realtime session's configuration: its defaults, updates, and what this server serves.

The session object is kept as the JSON the client is shown (``session.created`` and
every ``session.updated`` carry it whole). An update changes only the keys it has:
``audio``, ``audio.input`` and ``audio.output`` merge key by key, every other value
(``turn_detection`` included) replaces the old one, and ``turn_detection`` is then
completed with its defaults, so the effective values are always visible.

Turn detection defaults are OpenAI's documented ones (server VAD, threshold 0.5,
300 ms of padding before speech), except the silence that ends a turn: 500 ms
(OpenAI's prose says 500, its examples 200; 500 does not cut a speaker off at a
comma). ``semantic_vad`` is served by the same detector, its eagerness choosing the
silence that ends a turn (``SEMANTIC_SILENCE_MS``).

A session opened with a client secret (``POST /v1/realtime/client_secrets``) starts
from the secret's session (``preset``: a ``session.update``'s session, validated) over
the defaults, checked as an update is (``configured``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.engines.base import Engine, TranscribingEngine
from omnivox.errors import InvalidValueError, OmnivoxError
from omnivox.serving.inputs import voice_name

SessionType = Literal["realtime", "transcription"]

DEFAULT_VOICE = "alloy"
# GA sessions have no temperature; the beta protocol's lowest (its range was 0.6-1.2): the
# small embedded chat model drifts into nonsense at OpenAI's chat default of 1.0.
TEMPERATURE = 0.6
PCM_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": OUTPUT_SAMPLE_RATE}
DEFAULT_TRANSCRIPTION_MODEL = "whisper-1"
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# What a session always has: null for one of these in an update leaves it as it was.
KEPT_WHEN_NULL = frozenset({"audio", "input", "output", "format", "voice"})
# semantic_vad's eagerness -> the silence (ms) after which the turn ends.
SEMANTIC_SILENCE_MS = {"high": 300, "auto": 500, "medium": 500, "low": 1000}


def default_config(
    kind: SessionType, session_id: str, model: str, expires_at: int, speaks: bool
) -> dict[str, Any]:
    audio_input: dict[str, Any] = {
        "format": dict(PCM_FORMAT),
        "transcription": None,
        "noise_reduction": None,
        "turn_detection": dict(SERVER_VAD_DEFAULTS),
    }
    if kind == "transcription":
        audio_input["transcription"] = {
            "model": DEFAULT_TRANSCRIPTION_MODEL,
            "language": None,
            "prompt": None,
        }
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "expires_at": expires_at,
            "audio": {"input": audio_input},
            "include": None,
        }
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "expires_at": expires_at,
        "output_modalities": ["audio" if speaks else "text"],
        "instructions": "",
        "audio": {
            "input": audio_input,
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


def merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``given``'s keys over it; ``audio``, ``input`` and ``output`` merge
    key by key (only what is present changes), every other value replaces, except a
    null where a session always has a value (``KEPT_WHEN_NULL``), which changes nothing."""
    out = dict(base)
    for key, value in given.items():
        if value is None and key in KEPT_WHEN_NULL:
            continue
        if key in ("audio", "input", "output") and isinstance(value, dict):
            out[key] = merged(base.get(key) or {}, value)
        else:
            out[key] = value
    turn = (out.get("audio") or {}).get("input", {}).get("turn_detection")
    if isinstance(turn, dict):
        defaults = SERVER_VAD_DEFAULTS if turn["type"] == "server_vad" else SEMANTIC_VAD_DEFAULTS
        completed = {
            k: (turn.get(k) if turn.get(k) is not None else v) for k, v in defaults.items()
        }
        out["audio"] = {**out["audio"], "input": {**out["audio"]["input"]}}
        out["audio"]["input"]["turn_detection"] = completed
    return out


def with_preset(config: dict[str, Any], preset: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a client secret's session over it (its ``type`` is the session's)."""
    return merged(config, {key: value for key, value in preset.items() if key != "type"})


def configured(
    preset: dict[str, Any],
    *,
    session_id: str,
    model: str,
    expires_at: int,
    engine: Engine,
    check_transcription_model: Any,
) -> dict[str, Any]:
    """The session object a session started with ``preset`` shows (``session.created``),
    refused (``invalid_value`` naming ``session.<path>``) where this server can not serve it."""
    kind: SessionType = "transcription" if preset["type"] == "transcription" else "realtime"
    speaks = "speech" in engine.capabilities
    config = with_preset(default_config(kind, session_id, model, expires_at, speaks), preset)
    check_config(config, "session", engine, check_transcription_model)
    return config


@dataclass(frozen=True, slots=True)
class TurnRules:
    """Turn detection as the detector runs it (ms of the session's input audio)."""

    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    idle_timeout_ms: int | None
    create_response: bool
    interrupt_response: bool


def turn_rules(config: dict[str, Any]) -> TurnRules | None:
    turn = config["audio"]["input"]["turn_detection"]
    if turn is None:
        return None
    if turn["type"] == "semantic_vad":
        return TurnRules(
            threshold=SERVER_VAD_DEFAULTS["threshold"],
            prefix_padding_ms=SERVER_VAD_DEFAULTS["prefix_padding_ms"],
            silence_duration_ms=SEMANTIC_SILENCE_MS[turn["eagerness"]],
            idle_timeout_ms=None,
            create_response=turn["create_response"],
            interrupt_response=turn["interrupt_response"],
        )
    return TurnRules(
        threshold=turn["threshold"],
        prefix_padding_ms=turn["prefix_padding_ms"],
        silence_duration_ms=turn["silence_duration_ms"],
        idle_timeout_ms=turn["idle_timeout_ms"],
        create_response=turn["create_response"],
        interrupt_response=turn["interrupt_response"],
    )


def check_served(
    config: dict[str, Any], where: str, *, tools: bool, speaks: bool, transcribes: bool
) -> None:
    """Refuse (``invalid_value``, naming the parameter) what this server can not do."""
    audio_in = config["audio"].get("input") or {}
    audio_out = config["audio"].get("output") or {}
    unserved: dict[str, tuple[bool, str]] = {
        f"{where}.audio.input.transcription": (
            audio_in.get("transcription") is not None and not transcribes,
            "This model does not transcribe audio: use null.",
        ),
        f"{where}.audio.output.speed": (
            audio_out.get("speed") not in (None, 1.0),
            "Only speed 1.0 is supported.",
        ),
        f"{where}.tools": (
            bool(config.get("tools")) and not tools,
            "This model does not call tools: use [].",
        ),
        f"{where}.output_modalities": (
            config.get("output_modalities") == ["audio"] and not speaks,
            "This model does not speak: use output_modalities ['text'].",
        ),
    }
    for param, (broken, message) in unserved.items():
        if broken:
            raise InvalidValueError(message, param=param)
    choice = config.get("tool_choice")
    if isinstance(choice, dict):
        names = {tool["name"] for tool in config.get("tools") or ()}
        if choice["name"] not in names:
            raise InvalidValueError(
                f"Invalid value for 'tool_choice': no function named '{choice['name']}' was "
                "specified in the 'tools' parameter.",
                param=f"{where}.tool_choice",
            )


def check_config(
    config: dict[str, Any], where: str, engine: Engine, check_transcription_model: Any
) -> None:
    """Everything ``engine`` must serve of a session's config; the transcription model is
    asked of ``check_transcription_model`` (a catalog lookup), the voice of OpenAI's list."""
    check_served(
        config,
        where,
        tools="tools" in engine.capabilities,
        speaks="speech" in engine.capabilities,
        transcribes=isinstance(engine, TranscribingEngine),
    )
    transcription = config["audio"].get("input", {}).get("transcription")
    if transcription is not None and transcription.get("model"):
        checked_model(
            check_transcription_model,
            transcription["model"],
            f"{where}.audio.input.transcription.model",
        )
    output = config["audio"].get("output")
    if output is not None:
        voice = output.get("voice")
        voice_name(voice["id"] if isinstance(voice, dict) else voice, f"{where}.audio.output.voice")


def checked_model(check: Any, name: str, param: str) -> None:
    """``check(name)`` (a catalog lookup), its refusal made an ``invalid_value`` at ``param``."""
    try:
        check(name)
    except OmnivoxError as exc:
        raise InvalidValueError(exc.message, param=param) from None
