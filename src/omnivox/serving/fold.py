"""Fold a completion's events into one non-streaming ``ChatCompletion`` (§2).

The same events ``sse`` streams are accumulated per choice; spoken answers are
encoded once, at the end, into the requested format. In audio mode ``content``
is null and the words are ``message.audio.transcript``. Tool calls become
``message.tool_calls`` (``content`` null when there are no words), or, for the
legacy ``functions``, ``message.function_call``.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field

from omnivox.audio.encode import encode_audio
from omnivox.engines.events import TokenLogprob
from omnivox.protocol.responses import (
    ChatCompletion,
    ChatCompletionAudio,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    CompletionUsage,
    FinishReason,
    Function,
)
from omnivox.serving.chat import CompletionRun
from omnivox.serving.outputs import (
    AudioDone,
    AudioStarted,
    ChoiceAudio,
    ChoiceFinish,
    ChoiceText,
    ChoiceToolCall,
    UsageReady,
    wire_logprobs,
)


@dataclass(slots=True)
class _ToolCallParts:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _ChoiceParts:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    pcm: list[bytes] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    audio: AudioDone | None = None
    finish_reason: FinishReason = "stop"


async def fold(run: CompletionRun, want_logprobs: bool = False) -> ChatCompletion:
    choices = [_ChoiceParts() for _ in range(run.n_choices)]
    usage: CompletionUsage | None = None
    async for event in run.events:
        if isinstance(event, ChoiceText):
            choices[event.index].text.append(event.text)
            choices[event.index].logprobs.extend(event.logprobs)
        elif isinstance(event, ChoiceAudio):
            choices[event.index].pcm.append(event.pcm_s16le)
        elif isinstance(event, ChoiceToolCall):
            call = choices[event.index].tool_calls.setdefault(event.call_index, _ToolCallParts())
            call.call_id = event.call_id or call.call_id
            call.name = event.name or call.name
            call.arguments.append(event.arguments)
        elif isinstance(event, AudioDone):
            choices[event.index].audio = event
        elif isinstance(event, ChoiceFinish):
            choices[event.index].finish_reason = event.reason
        elif isinstance(event, UsageReady):
            usage = event.usage
        elif isinstance(event, AudioStarted):
            pass
    assert usage is not None, "every completion stream ends with its usage"
    return ChatCompletion(
        id=run.completion_id,
        created=run.created,
        model=run.model,
        choices=[await _choice(i, parts, run, want_logprobs) for i, parts in enumerate(choices)],
        usage=usage,
        service_tier=run.service_tier,
        system_fingerprint=run.system_fingerprint,
    )


async def _choice(
    index: int, parts: _ChoiceParts, run: CompletionRun, want_logprobs: bool
) -> Choice:
    audio_format = run.audio_format
    text = "".join(parts.text)
    message = ChatCompletionMessage(
        content=None if audio_format is not None or (parts.tool_calls and not text) else text,
        refusal=None,
        annotations=[],
    )
    if audio_format is not None and parts.audio is not None:
        encoded = await asyncio.to_thread(encode_audio, audio_format, b"".join(parts.pcm))
        message.audio = ChatCompletionAudio(
            id=parts.audio.audio_id,
            data=base64.b64encode(encoded).decode(),
            expires_at=parts.audio.expires_at,
            transcript=text,
        )
    calls = [call for _, call in sorted(parts.tool_calls.items())]
    if calls and run.legacy_functions:
        first = calls[0]  # legacy functions never run in parallel
        message.function_call = Function(name=first.name, arguments="".join(first.arguments))
    elif calls:
        message.tool_calls = [
            ChatCompletionMessageToolCall(
                id=call.call_id,
                function=Function(name=call.name, arguments="".join(call.arguments)),
            )
            for call in calls
        ]
    logprobs = wire_logprobs(parts.logprobs) if want_logprobs else None
    return Choice(
        index=index, message=message, logprobs=logprobs, finish_reason=parts.finish_reason
    )
