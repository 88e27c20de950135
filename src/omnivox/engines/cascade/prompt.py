"""Turn a conversation of ``Turn`` s into chat messages for a text-only chat model.

- Audio parts become their transcripts (looked up by the clip's ``sha256``);
  a turn's pieces are joined with a line break.
- ``developer`` messages become ``system`` messages (chat templates know no
  developer role); messages keep their order.
- With no system or developer message from the client, ``DEFAULT_SYSTEM_PROMPT``
  (short, speakable answers) comes first. With one, the client's words are kept
  as they are; when the answer is to be spoken, ``SPEAK_PLAINLY`` is appended to
  the first system message, because markdown read aloud is noise whoever asked.
- Tool calls and tool results are written as plain text (assistant and user
  messages): the default chat model has no tool format of its own.

This module knows nothing of models, tokens or audio samples.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from omnivox.engines.base import AudioClip, GenerationRequest, Turn

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are read aloud, so answer in a few "
    "short, plain sentences. Do not use markdown, lists, headings, code blocks or emoji."
)
SPEAK_PLAINLY = (
    "Your reply will be read aloud: write plain sentences, without markdown, lists or emoji."
)

Message = dict[str, str]


def build_messages(
    request: GenerationRequest, transcript_of: Callable[[AudioClip], str]
) -> list[Message]:
    """The request's conversation as ``{"role", "content"}`` messages."""
    messages = [_message(turn, transcript_of) for turn in request.turns]
    system_index = next((i for i, m in enumerate(messages) if m["role"] == "system"), None)
    if system_index is None:
        return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *messages]
    if request.speech is not None:
        first = messages[system_index]
        content = f"{first['content']}\n\n{SPEAK_PLAINLY}".strip()
        messages[system_index] = {"role": "system", "content": content}
    return messages


def _message(turn: Turn, transcript_of: Callable[[AudioClip], str]) -> Message:
    content = _join(part if isinstance(part, str) else transcript_of(part) for part in turn.parts)
    if turn.role in ("system", "developer"):
        return {"role": "system", "content": content}
    if turn.role == "tool":
        label = f"Result of tool call {turn.tool_call_id}" if turn.tool_call_id else "Tool result"
        return {"role": "user", "content": f"{label}: {content}"}
    if turn.role == "assistant" and turn.tool_calls:
        calls = [
            f"I called the tool {call.name} with arguments {_compact(call.arguments)} "
            f"(call {call.call_id})."
            for call in turn.tool_calls
        ]
        return {"role": "assistant", "content": _join([content, *calls])}
    return {"role": turn.role, "content": content}


def client_audio_transcripts(
    request: GenerationRequest, transcript_of: Callable[[AudioClip], str]
) -> list[str]:
    """Transcripts of every audio part: billed as audio tokens, not as text."""
    return [
        transcript_of(part)
        for turn in request.turns
        for part in turn.parts
        if isinstance(part, AudioClip)
    ]


def _join(pieces: Iterable[str]) -> str:
    return "\n".join(piece.strip() for piece in pieces if piece.strip())


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments
