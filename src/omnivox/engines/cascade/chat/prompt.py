"""Turn a conversation of ``Turn`` s into chat messages for a text-only chat model.

- Audio parts become their transcripts (looked up by the clip's ``sha256``);
  a turn's pieces are joined with a line break.
- ``developer`` messages become ``system`` messages (chat templates know no
  developer role); messages keep their order.
- With no system or developer message from the client, ``DEFAULT_SYSTEM_PROMPT``
  (short, speakable answers) comes first. With one, the client's words are kept
  as they are; when the answer is to be spoken, ``SPEAK_PLAINLY`` is appended to
  the first system message, because markdown read aloud is noise whoever asked.
- When the model may call tools (``tools`` given and ``tool_choice`` not
  "none"), ``tools.tool_section`` (the tools and the call format) ends the
  first system message; with a JSON ``response_format``, a line saying so
  (``structured.format_hint``) comes before it.
- Earlier tool calls are written as the model writes them (``tools.render_calls``,
  after the turn's text); tool results are ``tool`` messages holding the
  result. A chat template that knows no ``tool`` role can be served with
  ``tool_role=False``: results then become user messages that say which call
  they answer.

This module knows nothing of models, tokens or audio samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from omnivox.engines.base import AudioClip, GenerationRequest, Turn
from omnivox.engines.cascade.chat.tools import render_calls, tool_section
from omnivox.engines.cascade.grammar.structured import format_hint

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Your replies are read aloud, so answer in a few "
    "short, plain sentences. Do not use markdown, lists, headings, code blocks or emoji."
)
SPEAK_PLAINLY = (
    "Your reply will be read aloud: write plain sentences, without markdown, lists or emoji."
)

Message = dict[str, str]


def build_messages(
    request: GenerationRequest,
    transcript_of: Callable[[AudioClip], str],
    *,
    tool_role: bool = True,
) -> list[Message]:
    """The request's conversation as ``{"role", "content"}`` messages."""
    messages = [_message(turn, transcript_of, tool_role) for turn in request.turns]
    additions = _system_additions(request)
    system_index = next((i for i, m in enumerate(messages) if m["role"] == "system"), None)
    if system_index is None:
        content = "\n\n".join([DEFAULT_SYSTEM_PROMPT, *additions])
        return [{"role": "system", "content": content}, *messages]
    if request.speech is not None:
        additions.insert(0, SPEAK_PLAINLY)
    first = messages[system_index]
    content = "\n\n".join([first["content"], *additions]).strip()
    messages[system_index] = {"role": "system", "content": content}
    return messages


def offers_tools(request: GenerationRequest) -> bool:
    """Whether the model may call a tool in this answer."""
    return bool(request.tools) and request.tool_choice != "none"


def _system_additions(request: GenerationRequest) -> list[str]:
    additions = []
    hint = format_hint(request.response_format)
    if hint is not None:
        additions.append(hint)
    if offers_tools(request):
        additions.append(tool_section(request.tools))
    return additions


def _message(turn: Turn, transcript_of: Callable[[AudioClip], str], tool_role: bool) -> Message:
    content = _join(part if isinstance(part, str) else transcript_of(part) for part in turn.parts)
    if turn.role in ("system", "developer"):
        return {"role": "system", "content": content}
    if turn.role == "tool":
        if tool_role:
            return {"role": "tool", "content": content}
        label = f"Result of tool call {turn.tool_call_id}" if turn.tool_call_id else "Tool result"
        return {"role": "user", "content": f"{label}: {content}"}
    if turn.role == "assistant" and turn.tool_calls:
        return {"role": "assistant", "content": _join([content, render_calls(turn.tool_calls)])}
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
