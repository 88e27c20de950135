"""What both engines that serve Qwen-Omni know of it: its speakers and its system prompt.

OpenAI's voice names are mapped to the speakers a checkpoint ships.

Qwen2.5-Omni-3B and -7B carry two speakers in ``spk_dict.pt``: "Chelsie", a
female voice, and "Ethan", a male one. Qwen3-Omni-30B-A3B names three in its
talker's config (``speaker_id``): "Chelsie", "Ethan" and "Aiden", a relaxed
male voice. Each OpenAI voice maps to the first speaker of its list that the
checkpoint has, closest to how that voice sounds first:

    ==========  ===============  ===================================
    OpenAI      speakers         OpenAI's voice, as commonly heard
    ==========  ===============  ===================================
    alloy       Chelsie          neutral, slightly feminine
    ash         Ethan            male, clear
    ballad      Aiden, Ethan     male, warm
    coral       Chelsie          female, bright
    echo        Ethan            male, resonant
    fable       Aiden, Ethan     male, storyteller
    nova        Chelsie          female, lively
    onyx        Ethan            male, deep
    sage        Chelsie          female, calm
    shimmer     Chelsie          female, soft
    verse       Aiden, Ethan     male, expressive
    marin       Chelsie          female, natural
    cedar       Aiden, Ethan     male, natural
    ==========  ===============  ===================================

A checkpoint whose speakers differ (a fine-tune with speakers of its own)
keeps the mapping for the names it has; every other voice falls back to its
first speaker in alphabetical order, so any OpenAI voice name works.

Qwen2.5-Omni's talker speaks properly only under ``QWEN_SYSTEM_PROMPT`` (its model card
says so); Qwen3-Omni's needs no system prompt.

This module knows nothing of tensors or HTTP; it maps names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

FEMALE = "Chelsie"
MALE = "Ethan"
RELAXED_MALE = "Aiden"
SPEAKER_DESCRIPTIONS = {
    FEMALE: "speaker Chelsie (female)",
    MALE: "speaker Ethan (male)",
    RELAXED_MALE: "speaker Aiden (male, relaxed)",
}
VOICE_SPEAKERS: Mapping[str, tuple[str, ...]] = {
    "alloy": (FEMALE,),
    "ash": (MALE,),
    "ballad": (RELAXED_MALE, MALE),
    "coral": (FEMALE,),
    "echo": (MALE,),
    "fable": (RELAXED_MALE, MALE),
    "nova": (FEMALE,),
    "onyx": (MALE,),
    "sage": (FEMALE,),
    "shimmer": (FEMALE,),
    "verse": (RELAXED_MALE, MALE),
    "marin": (FEMALE,),
    "cedar": (RELAXED_MALE, MALE),
}
QWEN2_5_SPEAKERS = (FEMALE, MALE)
QWEN3_SPEAKERS = (RELAXED_MALE, FEMALE, MALE)
QWEN_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech."
)


def display_name(config_key: str) -> str:
    """A speaker key of Qwen3-Omni's config (``"chelsie"``) as a display name."""
    return config_key[:1].upper() + config_key[1:]


def speaker_for(voice: str, available: Iterable[str]) -> str:
    """The checkpoint's speaker that speaks for the OpenAI ``voice``."""
    names = sorted(available)
    if not names:
        raise ValueError("the checkpoint has no speakers")
    for wanted in VOICE_SPEAKERS.get(voice, ()):
        if wanted in names:
            return wanted
    return names[0]


def voice_table(available: Iterable[str] | None = None) -> dict[str, str]:
    """OpenAI voice -> a description of the speaker it maps to."""
    names = sorted(available) if available is not None else sorted(QWEN2_5_SPEAKERS)
    table = {}
    for voice in VOICE_SPEAKERS:
        speaker = speaker_for(voice, names)
        table[voice] = SPEAKER_DESCRIPTIONS.get(speaker, f"speaker {speaker}")
    return table
