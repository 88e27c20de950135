"""A Realtime conversation's items, as the client is shown them and as the engine hears them.

Each item keeps its wire JSON (what ``conversation.item.*`` events carry) beside what
it means for a generation: a message's parts, a function call, or a function call's
output. ``turns_of`` makes the engine's turns from items in order: a function call
joins the assistant turn before it (the calls of one answer are one turn), and an
output is a tool turn.

An assistant message the server spoke keeps an ``AudioTrack``: how many bytes of
speech it has and where each piece of text begins in it, as the engine said while
speaking (``AudioDelta.spoken``). ``heard_text`` is what a listener who stopped the
audio at a point heard: the pieces spoken before it, and the leading words of the
piece it cut, in proportion to the part of that piece's audio that was played. An
engine that does not say which text it speaks is cut in proportion over the whole
transcript, by words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omnivox.engines.base import AudioClip, Part, ToolCall, Turn


@dataclass(slots=True)
class AudioTrack:
    n_bytes: int = 0
    units: list[tuple[int, str]] = field(default_factory=list)  # (byte offset, text)


@dataclass(slots=True)
class Item:
    wire: dict[str, Any]  # as the client is shown it
    parts: tuple[Part, ...] = ()
    audio: AudioTrack | None = None
    cut_bytes: int | None = None  # truncated while still being spoken: applied at its end

    @property
    def user_audio_s(self) -> float:
        """Seconds of the input audio in its parts (the user's speech it holds)."""
        return sum(part.duration_s for part in self.parts if isinstance(part, AudioClip))

    @property
    def id(self) -> str:
        return str(self.wire["id"])

    @property
    def kind(self) -> str:
        return str(self.wire["type"])


def turns_of(items: list[Item]) -> list[Turn]:
    turns: list[Turn] = []
    for item in items:
        wire = item.wire
        if item.kind == "function_call":
            call = ToolCall(wire["call_id"], wire["name"], wire["arguments"])
            last = turns[-1] if turns else None
            if last is not None and last.role == "assistant":
                turns[-1] = Turn("assistant", last.parts, tool_calls=(*last.tool_calls, call))
            else:
                turns.append(Turn("assistant", (), tool_calls=(call,)))
        elif item.kind == "function_call_output":
            turns.append(Turn("tool", (wire["output"],), tool_call_id=wire["call_id"]))
        else:
            turns.append(Turn(wire["role"], item.parts))
    return turns


def truncate(item: Item, cut_bytes: int) -> None:
    """Cut an assistant message's audio at ``cut_bytes``: its transcript (and what the
    engine hears of it later) becomes the words heard before that point."""
    track = item.audio
    assert track is not None
    content = item.wire["content"][0]
    heard = heard_text(content.get("transcript") or "", track, cut_bytes)
    track.n_bytes = min(track.n_bytes, cut_bytes)
    track.units = [(start, text) for start, text in track.units if start < track.n_bytes]
    item.wire = {**item.wire, "content": [{**content, "transcript": heard}]}
    item.parts = (heard,)
    item.cut_bytes = None


def heard_text(transcript: str, track: AudioTrack, cut_bytes: int) -> str:
    """The words of ``transcript`` a listener heard when the audio stopped at ``cut_bytes``."""
    if cut_bytes >= track.n_bytes:
        return transcript
    if not track.units:
        return _leading_words(transcript, cut_bytes / track.n_bytes if track.n_bytes else 0.0)
    heard: list[str] = []
    for i, (start, text) in enumerate(track.units):
        end = track.units[i + 1][0] if i + 1 < len(track.units) else track.n_bytes
        if cut_bytes >= end:
            heard.append(text)
        elif cut_bytes > start:
            heard.append(_leading_words(text, (cut_bytes - start) / max(1, end - start)))
            break
        else:
            break
    return " ".join(t.strip() for t in heard if t.strip())


def _leading_words(text: str, fraction: float) -> str:
    words = text.split()
    return " ".join(words[: math.floor(len(words) * fraction + 1e-9)])
