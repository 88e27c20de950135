"""Turn a unit of chat-model text into what a speech synthesizer should say.

Chat models write markdown even when asked not to. Read aloud, ``**`` and
``#`` become noise, so ``speakable_text`` drops emphasis marks, heading marks,
list bullets and numbers at the start of a line, block quotes, code fences and
backticks, table bars, link targets (``[text](url)`` -> ``text``) and emoji.
It returns "" when nothing speakable is left.

It changes only the audio: the transcript the client receives keeps the model's
text as written. This module knows nothing of segmenting or synthesis.
"""

from __future__ import annotations

import re
import unicodedata

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_FENCE = re.compile(r"```[\w+-]*")
_LINE_MARK = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•]\s+|\d{1,3}[.)]\s+)+", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*{1,3}|_{1,3}|~~)(?=\S)(.+?)(?<=\S)\1")
_STRAY_MARKS = re.compile(r"[*`#|~]+|(?<!\w)_+|_+(?!\w)")
_SPACES = re.compile(r"\s+")
_HAS_WORD = re.compile(r"\w")
FIRST_PICTOGRAPH_CODEPOINT = 0x2190


def speakable_text(text: str) -> str:
    """``text`` without markdown marks or emoji, white space collapsed."""
    text = _LINK.sub(r"\1", text)
    text = _FENCE.sub(" ", text)
    text = _LINE_MARK.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _STRAY_MARKS.sub(" ", text)
    text = "".join(ch for ch in text if not _is_emoji(ch))
    text = _SPACES.sub(" ", text).strip()
    return text if _HAS_WORD.search(text) else ""


def _is_emoji(ch: str) -> bool:
    # Emoji and pictographs are "So" (other symbol) from the arrows block up; lower
    # symbols such as the degree sign are read aloud. The variation selector and the
    # zero-width joiner glue emoji sequences together.
    if ch in "\ufe0f\u200d":
        return True
    return ord(ch) >= FIRST_PICTOGRAPH_CODEPOINT and unicodedata.category(ch) == "So"
