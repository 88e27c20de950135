"""Chat Completions in vLLM-Omni's dialect: the request it takes, the answers it gives.

What is sent (``request_body``), as every vLLM-Omni version from 0.12 on reads it:

- ``messages``: the conversation; a user's audio as an ``input_audio`` part (16 kHz
  mono 16-bit wav, base64), an earlier spoken answer as the assistant's text (its
  transcript), tool calls and results as plain text (the engine offers no tools).
  Qwen2.5-Omni's system turn begins with the system prompt its talker needs.
- ``modalities``: ``["text", "audio"]`` to hear the answer, ``["text"]`` otherwise.
- the thinker's sampling: ``temperature``, ``top_p``, ``max_tokens``, ``stop``,
  ``seed``, ``presence_penalty``, ``frequency_penalty`` (what vLLM-Omni lays over its
  stage config's defaults; the talker and vocoder keep their configured sampling).
- ``speaker`` (the model's own speaker name, read by servers since per-request
  speakers came, ignored by older ones) and ``audio: {"format": "wav"}``.
- ``stream`` with ``stream_options.include_usage``, when streamed.

What comes back (``read_chunk`` for each streamed chunk, ``read_completion`` for a
whole answer), as ``Piece`` s: the answer's text, its speech (the decoded bytes of a
wav file, or bare PCM), and the usage. Streamed, each chunk says what it carries in
vLLM-Omni's ``modality`` field: ``"text"`` chunks carry text in ``delta.content``,
``"audio"`` chunks a base64 wav in the same ``delta.content``; the usage counted
for text is in the chunk without choices at the end (an audio chunk's usage counts
no completion tokens). Whole, the answer has two choices, both of index 0: the text
one (``message.content``) and the audio one (``message.audio.data``, a base64 wav,
with an empty transcript).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnivox.audio import INPUT_SAMPLE_RATE, float_to_s16le, resample
from omnivox.audio.encode import wav_header
from omnivox.engines.base import AudioClip, GenerationRequest, SamplingParams, Turn
from omnivox.engines.qwen_omni import QWEN2_5_SPEAKERS, QWEN3_SPEAKERS, QWEN_SYSTEM_PROMPT
from omnivox.errors import UpstreamError

WAV_BASE64_PREFIX = "UklGR"  # base64 of "RIFF"
# The prompt estimate until the upstream counts it (see ``estimate_tokens``).
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
AUDIO_TOKENS_PER_S = 25


@dataclass(frozen=True, slots=True)
class Family:
    """What the served checkpoint needs: its speakers, and the system prompt (if any)
    that leads the system turn."""

    name: str
    speakers: tuple[str, ...]
    system_prompt: str | None


QWEN2_5 = Family("Qwen2.5-Omni", QWEN2_5_SPEAKERS, QWEN_SYSTEM_PROMPT)
QWEN3 = Family("Qwen3-Omni", QWEN3_SPEAKERS, None)


def family_of(*names: str | None) -> Family:
    """The family of a served model from its names (its id, the path it was loaded
    from): Qwen3-Omni when one names it, Qwen2.5-Omni otherwise."""
    for name in names:
        flat = (name or "").lower().replace("_", "").replace("-", "").replace(".", "")
        if "qwen3omni" in flat:
            return QWEN3
    return QWEN2_5


# -- the request ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conversation:
    """The messages of a request, and what the prompt estimate needs of them."""

    messages: tuple[dict[str, Any], ...]
    text_chars: int  # billed as text: everything but the transcripts of earlier answers
    transcript_chars: int
    audio_s: float  # of the clips sent to be heard

    @property
    def has_audio(self) -> bool:
        return self.audio_s > 0 or self.transcript_chars > 0


def conversation(request: GenerationRequest, family: Family) -> Conversation:
    messages: list[dict[str, Any]] = []
    counts = _Counts()
    system = _system_text(request.turns, family.system_prompt)
    if system:
        counts.text += len(system)
        messages.append({"role": "system", "content": system})
    for turn in request.turns:
        if turn.role in ("system", "developer"):
            continue
        messages.append(_message(turn, counts))
    return Conversation(tuple(messages), counts.text, counts.transcripts, counts.audio_s)


@dataclass(slots=True)
class _Counts:
    text: int = 0
    transcripts: int = 0
    audio_s: float = 0.0


def _system_text(turns: Sequence[Turn], system_prompt: str | None) -> str:
    client = [t.text.strip() for t in turns if t.role in ("system", "developer") and t.text.strip()]
    return "\n\n".join([*([system_prompt] if system_prompt else []), *client])


def _message(turn: Turn, counts: _Counts) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for part in turn.parts:
        if isinstance(part, str):
            _add_text(parts, part)
            counts.text += len(part)
        elif turn.role == "assistant" and part.transcript is not None:
            _add_text(parts, part.transcript)  # the model's own words, heard before
            counts.transcripts += len(part.transcript)
        else:
            parts.append(input_audio_part(part))
            counts.audio_s += part.duration_s
    role = turn.role
    if role == "tool":
        label = f"Result of tool call {turn.tool_call_id}" if turn.tool_call_id else "Tool result"
        parts.insert(0, {"type": "text", "text": f"{label}: "})
        counts.text += len(label) + 2
        role = "user"
    if turn.role == "assistant" and turn.tool_calls:
        calls = " ".join(
            f"I called the tool {call.name} with arguments {_compact(call.arguments)} "
            f"(call {call.call_id})."
            for call in turn.tool_calls
        )
        _add_text(parts, ("\n" if parts else "") + calls)
        counts.text += len(calls) + 1
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _add_text(parts: list[dict[str, Any]], text: str) -> None:
    if parts and parts[-1]["type"] == "text":
        parts[-1] = {"type": "text", "text": parts[-1]["text"] + text}
    elif text:
        parts.append({"type": "text", "text": text})


def input_audio_part(clip: AudioClip) -> dict[str, Any]:
    """A clip as OpenAI's ``input_audio`` part: a 16 kHz mono 16-bit wav, base64."""
    samples = resample(clip.samples, clip.sample_rate, INPUT_SAMPLE_RATE)
    pcm = float_to_s16le(samples)
    data = wav_header(len(pcm), INPUT_SAMPLE_RATE) + pcm
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(data).decode("ascii"), "format": "wav"},
    }


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments


def request_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    sampling: SamplingParams,
    *,
    speaker: str | None,
    stream: bool,
) -> dict[str, Any]:
    """The upstream's request; ``speaker`` set asks for speech in that voice."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "modalities": ["text", "audio"] if speaker is not None else ["text"],
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if sampling.max_output_tokens is not None:
        body["max_tokens"] = sampling.max_output_tokens
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.presence_penalty:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        body["frequency_penalty"] = sampling.frequency_penalty
    if speaker is not None:
        body["speaker"] = speaker
        body["audio"] = {"format": "wav"}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


# -- the answer ----------------------------------------------------------------------------


@dataclass(slots=True)
class Piece:
    """Part of an answer: text, speech (decoded bytes), or news of its end."""

    text: str = ""
    audio: bytes = b""
    finish_reason: str | None = None  # the text's, when it says
    completion_tokens: int | None = None  # the text's, when the upstream counted them
    prompt_tokens: int | None = None


def read_chunk(chunk: Mapping[str, Any]) -> Iterator[Piece]:
    """The pieces of one streamed chunk, in order."""
    _raise_error(chunk)
    modality = chunk.get("modality")
    usage = chunk.get("usage")
    if isinstance(usage, Mapping) and modality != "audio":
        yield Piece(
            completion_tokens=_int(usage.get("completion_tokens")),
            prompt_tokens=_int(usage.get("prompt_tokens")),
        )
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, Mapping):
            continue
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            if modality == "audio" or (modality is None and _looks_like_wav(content)):
                yield Piece(audio=_b64(content))
            else:
                yield Piece(text=content)
        audio = delta.get("audio")
        if isinstance(audio, Mapping) and isinstance(audio.get("data"), str) and audio["data"]:
            yield Piece(audio=_b64(audio["data"]))  # OpenAI's own shape of audio deltas
        reason = choice.get("finish_reason")
        if modality != "audio" and isinstance(reason, str):
            yield Piece(finish_reason=reason)


def read_completion(answer: Mapping[str, Any]) -> list[Piece]:
    """The pieces of a whole answer: its text first, then its speech, then its usage."""
    _raise_error(answer)
    texts: list[Piece] = []
    speech: list[Piece] = []
    for choice in answer.get("choices") or ():
        if not isinstance(choice, Mapping):
            continue
        message = choice.get("message") or {}
        audio = message.get("audio")
        if isinstance(audio, Mapping) and isinstance(audio.get("data"), str):
            speech.append(Piece(audio=_b64(audio["data"])))
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(Piece(text=content))
        reason = choice.get("finish_reason")
        if isinstance(reason, str):
            texts.append(Piece(finish_reason=reason))
    usage = answer.get("usage")
    tail = []
    if isinstance(usage, Mapping):
        tail.append(
            Piece(
                completion_tokens=_int(usage.get("completion_tokens")),
                prompt_tokens=_int(usage.get("prompt_tokens")),
            )
        )
    return [*texts, *speech, *tail]


def parse_json(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise UpstreamError(
            f"The speech-to-speech model's upstream sent a chunk that is not JSON: {data[:200]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise UpstreamError(
            "The speech-to-speech model's upstream sent a chunk that is not a JSON object."
        )
    return value


def estimate_tokens(n_chars: int, n_messages: int, audio_s: float) -> int:
    """The prompt's tokens before the upstream counts them: about 4 characters a token,
    4 tokens of framing a message, and 25 tokens a second of audio heard (Qwen2.5-Omni's
    audio encoder; Qwen3-Omni's makes fewer)."""
    return (
        math.ceil(n_chars / CHARS_PER_TOKEN)
        + TOKENS_PER_MESSAGE * n_messages
        + math.ceil(audio_s * AUDIO_TOKENS_PER_S)
    )


def _raise_error(body: Mapping[str, Any]) -> None:
    error = body.get("error")
    if body.get("object") == "error":
        error = body
    if isinstance(error, Mapping):
        raise UpstreamError(
            "The speech-to-speech model's upstream failed while answering: "
            f"{error.get('message') or 'no reason given'}"
        )


def _looks_like_wav(content: str) -> bool:
    return content.startswith(WAV_BASE64_PREFIX) and len(content) > 64


def _b64(data: str) -> bytes:
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamError(
            "The speech-to-speech model's upstream sent speech that is not base64."
        ) from exc


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
