"""OpenAI's voice names mapped to the speakers a Qwen2.5-Omni checkpoint ships.

Qwen2.5-Omni-3B and -7B carry two speakers in ``spk_dict.pt``: "Chelsie", a
female voice, and "Ethan", a male one. Each OpenAI voice maps to the one closer
to how that voice sounds:

    ==========  ========  ===================================
    OpenAI      speaker   OpenAI's voice, as commonly heard
    ==========  ========  ===================================
    alloy       Chelsie   neutral, slightly feminine
    ash         Ethan     male, clear
    ballad      Ethan     male, warm
    coral       Chelsie   female, bright
    echo        Ethan     male, resonant
    fable       Ethan     male, storyteller
    nova        Chelsie   female, lively
    onyx        Ethan     male, deep
    sage        Chelsie   female, calm
    shimmer     Chelsie   female, soft
    verse       Ethan     male, expressive
    marin       Chelsie   female, natural
    cedar       Ethan     male, natural
    ==========  ========  ===================================

A checkpoint whose speakers differ (a fine-tune with its own ``spk_dict.pt``)
keeps the mapping for the names it has; every other voice falls back to its
first speaker in alphabetical order, so any OpenAI voice name works.

This module knows nothing of tensors; it maps names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FEMALE = "Chelsie"
MALE = "Ethan"
SPEAKER_DESCRIPTIONS = {
    FEMALE: "Qwen2.5-Omni speaker Chelsie (female)",
    MALE: "Qwen2.5-Omni speaker Ethan (male)",
}
VOICE_SPEAKERS: Mapping[str, str] = {
    "alloy": FEMALE,
    "ash": MALE,
    "ballad": MALE,
    "coral": FEMALE,
    "echo": MALE,
    "fable": MALE,
    "nova": FEMALE,
    "onyx": MALE,
    "sage": FEMALE,
    "shimmer": FEMALE,
    "verse": MALE,
    "marin": FEMALE,
    "cedar": MALE,
}


def speaker_for(voice: str, available: Iterable[str]) -> str:
    """The checkpoint's speaker that speaks for the OpenAI ``voice``."""
    names = sorted(available)
    if not names:
        raise ValueError("the checkpoint has no speakers (spk_dict.pt is empty)")
    wanted = VOICE_SPEAKERS.get(voice)
    return wanted if wanted in names else names[0]


def voice_table(available: Iterable[str] | None = None) -> dict[str, str]:
    """OpenAI voice -> a description of the speaker it maps to."""
    names = sorted(available) if available is not None else sorted(SPEAKER_DESCRIPTIONS)
    table = {}
    for voice in VOICE_SPEAKERS:
        speaker = speaker_for(voice, names)
        table[voice] = SPEAKER_DESCRIPTIONS.get(speaker, f"speaker {speaker}")
    return table
