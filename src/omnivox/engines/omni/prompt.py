"""A conversation of ``Turn`` s as Qwen-Omni's ChatML, with the audio left in place.

The model hears audio itself, so a clip is not transcribed: it stays in the
prompt as an ``AudioClip`` between the text pieces, and ``OmniEncoder`` later
swaps it for the family's audio start token, one placeholder per audio-encoder
output, and its end token. The layout is the one of the checkpoints' chat
templates (Qwen2.5-Omni and Qwen3-Omni alike):

    <|im_start|>system\\n{system}<|im_end|>\\n
    <|im_start|>user\\n{text and audio, as sent}<|im_end|>\\n
    <|im_start|>assistant\\n{earlier answer}<|im_end|>\\n
    ...
    <|im_start|>assistant\\n

- Qwen2.5-Omni: the system turn always begins with ``QWEN_SYSTEM_PROMPT``:
  Qwen's model card says the talker speaks properly only under it. The
  client's system and developer messages follow it in the same turn, in order.
- Qwen3-Omni needs no such prompt (its talker never reads the system turn):
  the system turn holds the client's system and developer messages, and is
  left out when there are none, as its chat template does.
- An earlier assistant answer referenced by its audio id arrives as a clip with
  its ``transcript``: the model wrote those words, so they go back as text (and
  are billed as audio, since the client sent audio). A clip without a
  transcript is heard, whoever's turn it is in.
- Tool calls and results become plain text, as in the cascade: this engine
  offers no tools.

This module knows nothing of tokens, tensors or features.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from omnivox.engines.base import AudioClip, GenerationRequest, Turn
from omnivox.engines.qwen_omni import QWEN_SYSTEM_PROMPT

__all__ = ["QWEN_SYSTEM_PROMPT", "ChatPrompt", "Markup", "build_prompt"]

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


class Markup(str):
    """Text of the template itself: its special tokens (``<|im_start|>``) are meant.

    A plain ``str`` piece is the client's text; any special token in it is
    tokenized as ordinary characters, so a message can not forge a turn.
    """


PromptPiece = str | AudioClip


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """The prompt as text pieces and clips to be heard, in order.

    ``audio_transcripts`` are text pieces that stand for audio the client sent
    (earlier spoken answers): counted in the prompt, billed as audio.
    """

    pieces: tuple[PromptPiece, ...]
    audio_transcripts: tuple[str, ...]


def build_prompt(
    request: GenerationRequest, system_prompt: str | None = QWEN_SYSTEM_PROMPT
) -> ChatPrompt:
    """The prompt of ``request``; ``system_prompt`` (the family's) leads the system turn."""
    pieces: list[PromptPiece] = []
    system = _system_text(request, system_prompt)
    if system:
        pieces.extend([Markup(f"{IM_START}system\n"), system, Markup(f"{IM_END}\n")])
    transcripts: list[str] = []
    for turn in request.turns:
        if turn.role in ("system", "developer"):
            continue
        role, body = _turn_body(turn, transcripts)
        pieces.append(Markup(f"{IM_START}{role}\n"))
        pieces.extend(body)
        pieces.append(Markup(f"{IM_END}\n"))
    pieces.append(Markup(f"{IM_START}assistant\n"))
    return ChatPrompt(tuple(_merge_text(pieces)), tuple(transcripts))


def _system_text(request: GenerationRequest, system_prompt: str | None) -> str:
    client = [
        _text_of(turn).strip()
        for turn in request.turns
        if turn.role in ("system", "developer") and _text_of(turn).strip()
    ]
    return "\n\n".join([*([system_prompt] if system_prompt else []), *client])


def _turn_body(turn: Turn, transcripts: list[str]) -> tuple[str, list[PromptPiece]]:
    body: list[PromptPiece] = []
    for part in turn.parts:
        if isinstance(part, str):
            body.append(part)
        elif turn.role == "assistant" and part.transcript is not None:
            body.append(part.transcript)
            transcripts.append(part.transcript)
        else:
            body.append(part)
    if turn.role == "tool":
        label = f"Result of tool call {turn.tool_call_id}" if turn.tool_call_id else "Tool result"
        return "user", [f"{label}: ", *body]
    if turn.role == "assistant" and turn.tool_calls:
        calls = " ".join(
            f"I called the tool {call.name} with arguments {_compact(call.arguments)} "
            f"(call {call.call_id})."
            for call in turn.tool_calls
        )
        body.append(("\n" if body else "") + calls)
    return turn.role, body


def _text_of(turn: Turn) -> str:
    return "\n".join(
        part if isinstance(part, str) else (part.transcript or "") for part in turn.parts
    )


def _merge_text(pieces: list[PromptPiece]) -> list[PromptPiece]:
    """Join neighbouring text pieces of one kind, so that the tokenizer sees whole strings."""
    merged: list[PromptPiece] = []
    for piece in pieces:
        if isinstance(piece, str) and piece == "":
            continue
        last = merged[-1] if merged else None
        if isinstance(piece, str) and isinstance(last, str) and type(piece) is type(last):
            merged[-1] = type(piece)(last + piece)
        else:
            merged.append(piece)
    return merged


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        return arguments
