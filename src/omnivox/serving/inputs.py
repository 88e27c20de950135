"""Turn a validated request into the engine's ``GenerationRequest``.

Here live the rules that need more than one field or more than the schema:
decoding and size-checking input audio, resolving earlier answers by audio id,
the voice, the audio-output rules (§1.5, §1.6 of the wire spec), token limits,
and which parameters an engine supports; the tools and the choice among them
are read by ``tool_choice``, OpenAI's rules for ``strict`` schemas are checked
by ``strict_schemas``. Errors carry OpenAI's ``param`` paths.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from omnivox.audio import INPUT_SAMPLE_RATE
from omnivox.audio.decode import decode_audio
from omnivox.audio.pcm import s16le_to_float
from omnivox.engines.base import (
    AudioClip,
    Engine,
    GenerationRequest,
    Part,
    ResponseFormat,
    SamplingParams,
    SpeechOutput,
    ToolCall,
    Turn,
)
from omnivox.errors import (
    AudioNotFoundError,
    AudioTooLongError,
    InvalidRequestError,
    InvalidValueError,
    UnsupportedAudioFormatError,
    UnsupportedValueError,
)
from omnivox.protocol import requests as wire
from omnivox.serving.strict_schemas import check_strict_schemas
from omnivox.serving.tool_choice import check_tool_messages, check_tool_rules, tool_specs
from omnivox.store.audio import AudioStore

MAX_OUTPUT_TOKENS = 16_384
# The largest token id an engine can hold in an int64 tensor; vocabularies are far smaller.
MAX_TOKEN_ID = 2**63 - 1
# MIME encoders (base64(1), email, PEM) break base64 into 76-character lines; OpenAI's
# decoder skips the line breaks, so this one deletes ASCII whitespace before validating.
BASE64_WHITESPACE = str.maketrans("", "", " \t\n\r\f\v")
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


@dataclass(frozen=True, slots=True)
class InputLimits:
    max_input_audio_s: float


@dataclass(frozen=True, slots=True)
class AudioTokenSeconds:
    """Seconds of audio in the prompt: what the client spoke, and earlier answers."""

    user_s: float
    assistant_s: float


def voice_name(voice: str | wire.VoiceId, param: str) -> str:
    """The OpenAI voice a request names, as a string or as ``{"id": ...}``; 400 on ``param``
    for any other (custom voices are not served)."""
    name = voice if isinstance(voice, str) else voice.id
    if name not in OPENAI_VOICES:
        listed = ", ".join(f"'{v}'" for v in OPENAI_VOICES)
        raise InvalidValueError(
            f"Invalid value: '{name}'. Supported values are: {listed}.", param=param
        )
    return name


def check_request_rules(req: wire.CreateChatCompletionRequest, engine: Engine) -> None:
    """Cross-field rules and engine capabilities; raises before any work is done."""
    for name in wire.UNSUPPORTED_PARAMETERS:
        if getattr(req, name) is not None:
            raise InvalidRequestError(
                f"Unsupported parameter: '{name}' is not supported with this model.",
                param=name,
                code="unsupported_parameter",
            )
    if req.wants_audio:
        _check_audio_output(req, engine)
    if req.top_logprobs is not None and not req.logprobs:
        raise InvalidRequestError(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
            "'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    if req.logprobs and "logprobs" not in engine.capabilities:
        _unsupported_parameter("logprobs")
    uses_tools = bool(req.tools or req.functions)
    if uses_tools and "tools" not in engine.capabilities:
        _unsupported_parameter("tools" if req.tools else "functions")
    check_tool_rules(req)
    check_tool_messages(req.messages)
    fmt = req.response_format
    if fmt is not None and fmt.type != "text" and "response_format" not in engine.capabilities:
        _unsupported_parameter("response_format")
    check_strict_schemas(req)
    if isinstance(fmt, wire.ResponseFormatJSONObject) and not _mentions_json(req):
        raise InvalidRequestError(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="messages",
        )
    if req.stream_options is not None and not req.streaming:
        raise InvalidRequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    max_tokens, name = output_token_limit(req)
    if max_tokens is not None and max_tokens > MAX_OUTPUT_TOKENS:
        raise InvalidValueError(
            f"{name} is too large: {max_tokens}. This model supports at most "
            f"{MAX_OUTPUT_TOKENS} completion tokens, whereas you provided {max_tokens}.",
            param=name,
        )


def _mentions_json(req: wire.CreateChatCompletionRequest) -> bool:
    """Whether a text of the conversation says "json"; spoken words are not known yet,
    so a conversation with audio in it is given the benefit of the doubt."""
    for message in req.messages:
        content = getattr(message, "content", None)
        parts = [content] if isinstance(content, str) else list(content or [])
        for part in parts:
            if isinstance(part, wire.ChatCompletionContentPartInputAudio):
                return True
            text = part if isinstance(part, str) else getattr(part, "text", "")
            if "json" in (text or "").lower():
                return True
        if getattr(message, "audio", None) is not None:
            return True
    return False


def _unsupported_parameter(name: str) -> None:
    raise InvalidRequestError(
        f"Unsupported parameter: '{name}' is not supported by this server's engine.",
        param=name,
        code="unsupported_parameter",
    )


def _check_audio_output(req: wire.CreateChatCompletionRequest, engine: Engine) -> None:
    if "speech" not in engine.capabilities:
        raise UnsupportedValueError(
            "Unsupported value: 'modalities' does not support 'audio' with this engine. "
            "Supported values are: 'text'.",
            param="modalities",
        )
    if req.audio is None:
        raise InvalidRequestError(
            "Missing required parameter: 'audio'. It is required when 'modalities' "
            "includes 'audio'.",
            param="audio",
            code="missing_required_parameter",
        )
    if req.streaming and req.audio.format != "pcm16":
        raise UnsupportedValueError(
            f"Unsupported value: 'audio.format' does not support '{req.audio.format}' when "
            "stream=true. Supported values are: 'pcm16'.",
            param="audio.format",
        )
    voice_name(req.audio.voice, "audio.voice")
    # n > 1 is a text-only feature here: n spoken answers would each need their own
    # synthesis and audio id, which no OpenAI client is written to consume.
    if req.n is not None and req.n > 1:
        raise UnsupportedValueError(
            f"Unsupported value: 'n' does not support {req.n} with audio output. "
            "Supported values are: 1.",
            param="n",
        )
    if req.logprobs:
        raise UnsupportedValueError(
            "Unsupported value: 'logprobs' does not support true with audio output. "
            "Supported values are: false.",
            param="logprobs",
        )
    # Like OpenAI's audio models: structured output is a text-mode feature. Spoken
    # JSON is noise, and its transcript would be the only useful part anyway.
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        raise UnsupportedValueError(
            f"Unsupported value: 'response_format.type' does not support '{fmt.type}' with "
            "audio output. Supported values are: 'text'.",
            param="response_format.type",
        )


def output_token_limit(req: wire.CreateChatCompletionRequest) -> tuple[int | None, str]:
    if req.max_completion_tokens is not None:
        return req.max_completion_tokens, "max_completion_tokens"
    return req.max_tokens, "max_tokens"


def sampling_params(req: wire.CreateChatCompletionRequest) -> SamplingParams:
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    bias = {_token_id(key): float(value) for key, value in (req.logit_bias or {}).items()}
    return SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        max_output_tokens=output_token_limit(req)[0],
        stop=stop,
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        logit_bias=bias,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
    )


def _token_id(logit_bias_key: str) -> int:
    """The token id a ``logit_bias`` key names: ASCII digits only.

    ``str.isdigit()`` also admits "²", and ``int()`` also admits "+5", " 5", "1_0" and
    other scripts' digits; a negative id names no token (a tensor index of -5 is the
    fifth token from the end). Whether the id is in the vocabulary is the engine's check.
    """
    digits = logit_bias_key.lstrip("0") or "0"
    if not (
        logit_bias_key.isascii()
        and logit_bias_key.isdigit()
        and len(digits) <= len(str(MAX_TOKEN_ID))  # before int(), which refuses 4301 digits
        and int(digits) <= MAX_TOKEN_ID
    ):
        raise InvalidValueError(
            f"Invalid key in 'logit_bias': {logit_bias_key}. Keys must be token ids.",
            param="logit_bias",
        )
    return int(digits)


def response_format(req: wire.CreateChatCompletionRequest) -> ResponseFormat:
    fmt = req.response_format
    if isinstance(fmt, wire.ResponseFormatJSONObject):
        return ResponseFormat(kind="json_object")
    if isinstance(fmt, wire.ResponseFormatJSONSchema):
        return ResponseFormat(
            kind="json_schema",
            schema=fmt.json_schema.schema_ or {},
            strict=bool(fmt.json_schema.strict),
        )
    return ResponseFormat()


async def build_turns(
    messages: Sequence[wire.ChatCompletionMessageParam],
    store: AudioStore,
    limits: InputLimits,
) -> tuple[tuple[Turn, ...], AudioTokenSeconds]:
    turns: list[Turn] = []
    user_s = assistant_s = 0.0
    for i, message in enumerate(messages):
        turn = await _turn(i, message, store, limits)
        for part in turn.parts:
            if isinstance(part, AudioClip):
                if turn.role == "assistant":
                    assistant_s += part.duration_s
                else:
                    user_s += part.duration_s
        turns.append(turn)
    return tuple(turns), AudioTokenSeconds(user_s, assistant_s)


async def _turn(
    i: int, message: wire.ChatCompletionMessageParam, store: AudioStore, limits: InputLimits
) -> Turn:
    if isinstance(message, wire.ChatCompletionUserMessageParam):
        return Turn("user", await _user_parts(i, message.content, limits), name=message.name)
    if isinstance(message, wire.ChatCompletionAssistantMessageParam):
        return await _assistant_turn(i, message, store)
    if isinstance(message, wire.ChatCompletionToolMessageParam):
        return Turn("tool", (_text_of(message.content),), tool_call_id=message.tool_call_id)
    if isinstance(message, wire.ChatCompletionFunctionMessageParam):
        return Turn("tool", (message.content or "",), name=message.name)
    return Turn(message.role, (_text_of(message.content),), name=message.name)


def _text_of(content: str | Sequence[wire.ChatCompletionContentPartText]) -> str:
    return content if isinstance(content, str) else "".join(p.text for p in content)


async def _user_parts(i: int, content: object, limits: InputLimits) -> tuple[Part, ...]:
    if isinstance(content, str):
        return (content,)
    assert isinstance(content, list)  # the schema allows only a string or a list of parts
    parts: list[Part] = []
    for j, part in enumerate(content):
        if isinstance(part, wire.ChatCompletionContentPartText):
            parts.append(part.text)
        elif isinstance(part, wire.ChatCompletionContentPartInputAudio):
            parts.append(await _decode_part(i, j, part.input_audio.data, limits))
        else:
            raise InvalidRequestError(
                f"Invalid content type. {part.type} is only supported by certain models.",
                param=f"messages.[{i}].content.[{j}].type",
            )
    return tuple(parts)


async def _decode_part(i: int, j: int, data_b64: str, limits: InputLimits) -> AudioClip:
    param = f"messages[{i}].content[{j}].input_audio.data"
    if data_b64.startswith("data:"):  # tolerated extension: a data URI
        data_b64 = data_b64.partition(",")[2]
    try:
        # base64, hashing and decoding take time in proportion to the clip (25 MB: tens
        # of ms before decoding): all of it off the event loop.
        return await asyncio.to_thread(_decode_clip, data_b64, limits.max_input_audio_s)
    except _NotBase64:
        raise InvalidValueError(
            f"Invalid '{param}': the audio data is not valid base64.", param=param
        ) from None
    except UnsupportedAudioFormatError as exc:
        raise UnsupportedAudioFormatError(exc.message, param="messages") from None
    except AudioTooLongError as exc:
        raise AudioTooLongError(exc.message, param=param) from None


class _NotBase64(Exception):
    pass


def _decode_clip(data_b64: str, max_input_audio_s: float) -> AudioClip:
    try:
        raw = base64.b64decode(data_b64.translate(BASE64_WHITESPACE), validate=True)
    except (binascii.Error, ValueError):
        raise _NotBase64 from None
    samples = decode_audio(raw, sample_rate=INPUT_SAMPLE_RATE, max_duration_s=max_input_audio_s)
    return AudioClip(samples, INPUT_SAMPLE_RATE, hashlib.sha256(raw).hexdigest())


async def _assistant_turn(
    i: int, message: wire.ChatCompletionAssistantMessageParam, store: AudioStore
) -> Turn:
    parts: list[Part] = []
    if isinstance(message.content, str):
        parts.append(message.content)
    elif message.content:
        parts += [
            p.text if isinstance(p, wire.ChatCompletionContentPartText) else p.refusal
            for p in message.content
        ]
    if message.audio is not None:
        stored = await asyncio.to_thread(store.get, message.audio.id)
        if stored is None:
            raise AudioNotFoundError(
                f"Assistant audio {message.audio.id} not found.",
                param=f"content.messages[{i}].audio.id",  # OpenAI's own path, verbatim
            )
        clip = AudioClip(
            s16le_to_float(stored.pcm_s16le),
            stored.sample_rate,
            "audio:" + stored.audio_id,
            transcript=stored.transcript,
        )
        # The audio replaces a transcript the client echoed back in ``content``.
        parts = [clip]
    calls = tuple(
        ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
    )
    if message.function_call is not None:
        fc = message.function_call
        calls += (ToolCall("function_call", fc.name, fc.arguments),)
    return Turn("assistant", tuple(parts), name=message.name, tool_calls=calls)


async def build_generation_request(
    req: wire.CreateChatCompletionRequest,
    store: AudioStore,
    limits: InputLimits,
) -> tuple[GenerationRequest, AudioTokenSeconds]:
    turns, audio_s = await build_turns(req.messages, store, limits)
    tools, choice, parallel = tool_specs(req)
    speech = None
    if req.wants_audio and req.audio is not None:
        voice = req.audio.voice
        speech = SpeechOutput(voice if isinstance(voice, str) else voice.id)
    generation = GenerationRequest(
        turns=turns,
        sampling=sampling_params(req),
        speech=speech,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=response_format(req),
    )
    return generation, audio_s
