"""The models omnivox answers to: one served model, its dated snapshot, its aliases.

``omnivox-audio`` resolves to ``omnivox-audio-2026-11-22``; OpenAI's audio
model names are aliases of it (unless configured off) so that unchanged client
code works. Responses name the snapshot of the name asked for, as OpenAI's do:
``gpt-4o-audio-preview`` answers as ``gpt-4o-audio-preview-2025-06-03`` (the
snapshot its model page lists first), a dated name as itself, so that clients
which price calls by the model in the response (LiteLLM, cost dashboards) find
the model they asked for. Every such name is served by the same engine.

The audio endpoints answer to OpenAI's speech names (``tts-1``, ``tts-1-hd``,
``gpt-4o-mini-tts``) and transcription names (``whisper-1``,
``gpt-4o-transcribe``, ``gpt-4o-mini-transcribe``) when the engine can read
aloud or transcribe; each answers as itself. A name used with an endpoint it
does not serve (``whisper-1`` for a chat completion) is a 404, as an unknown one.

``/v1/realtime`` answers to the served model, its snapshot and OpenAI's realtime
names (``gpt-realtime``, ``gpt-realtime-mini``, ``gpt-4o-realtime-preview``,
``gpt-4o-mini-realtime-preview``), each as itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from omnivox.engines.base import Engine
from omnivox.errors import ModelNotFoundError

# OpenAI's alias -> the dated snapshot it points at, then its other dated snapshots.
OPENAI_SNAPSHOTS: dict[str, tuple[str, ...]] = {
    "gpt-4o-audio-preview": (
        "gpt-4o-audio-preview-2025-06-03",
        "gpt-4o-audio-preview-2024-12-17",
        "gpt-4o-audio-preview-2024-10-01",
    ),
    "gpt-4o-mini-audio-preview": ("gpt-4o-mini-audio-preview-2024-12-17",),
    "gpt-audio": ("gpt-audio-2025-08-28",),
    "gpt-audio-mini": ("gpt-audio-mini-2025-10-06",),
}
OPENAI_ALIASES = tuple(OPENAI_SNAPSHOTS)
OWNER = "omnivox"

Use = Literal["chat", "responses", "speech", "transcription", "realtime"]
ENDPOINTS: dict[Use, str] = {
    "chat": "/v1/chat/completions",
    "responses": "/v1/responses",
    "speech": "/v1/audio/speech",
    "transcription": "/v1/audio/transcriptions and /v1/audio/translations",
    "realtime": "/v1/realtime",
}
OPENAI_AUDIO_MODELS: dict[Use, tuple[str, ...]] = {
    # OpenAI's text models that agent frameworks name by default (the OpenAI Agents
    # SDK: gpt-5.6-luna), answered on /v1/responses by the served model
    "responses": ("gpt-5.6-luna", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"),
    "speech": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
    "transcription": (
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-transcribe",
    ),
    "realtime": (
        "gpt-realtime",
        "gpt-realtime-mini",
        "gpt-realtime-2.1",
        "gpt-4o-realtime-preview",
        "gpt-4o-mini-realtime-preview",
    ),
}


CONVERSING: frozenset[Use] = frozenset({"chat", "responses"})  # what every chat name serves


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    model_id: str
    created: int
    snapshot: str
    uses: frozenset[Use] = frozenset({"chat"})


class ModelCatalog:
    """``uses``: what the engine serves besides chat ("speech", "transcription")."""

    def __init__(
        self,
        model_id: str,
        snapshot_date: str,
        openai_aliases: bool,
        uses: Iterable[Use] = ("chat",),
    ) -> None:
        self.model_id = model_id
        self.snapshot = f"{model_id}-{snapshot_date}"
        served: frozenset[Use] = frozenset((*uses, "chat", "responses"))
        created = int(dt.datetime.fromisoformat(snapshot_date).replace(tzinfo=dt.UTC).timestamp())
        self._entries = {
            model_id: CatalogEntry(model_id, created, self.snapshot, served),
            self.snapshot: CatalogEntry(self.snapshot, created, self.snapshot, served),
        }
        if openai_aliases:
            for alias, snapshots in OPENAI_SNAPSHOTS.items():
                self._entries[alias] = CatalogEntry(alias, created, snapshots[0], CONVERSING)
                for dated in snapshots:
                    self._entries[dated] = CatalogEntry(dated, _created(dated), dated, CONVERSING)
            for use, names in OPENAI_AUDIO_MODELS.items():
                if use in served:
                    for name in names:
                        self._entries[name] = CatalogEntry(name, created, name, frozenset({use}))

    def resolve(self, name: str) -> str:
        """The snapshot a requested model name answers with."""
        return self.get(name).snapshot

    def has(self, name: str, use: Use = "chat") -> bool:
        entry = self._entries.get(name)
        return entry is not None and use in entry.uses

    def get(self, name: str, use: Use = "chat") -> CatalogEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFoundError(
                f"The model `{name}` does not exist or you do not have access to it.",
            )
        if use not in entry.uses:
            raise ModelNotFoundError(
                f"The model `{name}` is not served on {ENDPOINTS[use]}; it serves "
                f"{' and '.join(ENDPOINTS[u] for u in sorted(entry.uses))}.",
            )
        return entry

    def find_snapshot(self, name: str) -> str:
        """The snapshot ``name`` answers with, or "" for a name that is not served."""
        entry = self._entries.get(name)
        return entry.snapshot if entry is not None else ""

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())


def served_uses(engine: Engine) -> tuple[Use, ...]:
    """What the engine serves: chat, responses and realtime always; speech and
    transcription by its capabilities."""
    uses: list[Use] = ["chat", "responses", "realtime"]
    if "text_to_speech" in engine.capabilities:
        uses.append("speech")
    if "transcription" in engine.capabilities:
        uses.append("transcription")
    return tuple(uses)


def _created(dated_name: str) -> int:
    """Midnight UTC of the date a dated snapshot's name ends with."""
    day = dt.date.fromisoformat(dated_name[-10:])
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
