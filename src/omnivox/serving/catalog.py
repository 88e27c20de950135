"""The models omnivox answers to: one served model, its dated snapshot, its aliases.

``omnivox-audio`` resolves to ``omnivox-audio-2026-11-22``; OpenAI's audio
model names are aliases of it (unless configured off) so that unchanged client
code works. Responses name the snapshot of the name asked for, as OpenAI's do:
``gpt-4o-audio-preview`` answers as ``gpt-4o-audio-preview-2025-06-03`` (the
snapshot its model page lists first), a dated name as itself, so that clients
which price calls by the model in the response (LiteLLM, cost dashboards) find
the model they asked for. Every such name is served by the same engine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    model_id: str
    created: int
    snapshot: str


class ModelCatalog:
    def __init__(self, model_id: str, snapshot_date: str, openai_aliases: bool) -> None:
        self.snapshot = f"{model_id}-{snapshot_date}"
        created = int(dt.datetime.fromisoformat(snapshot_date).replace(tzinfo=dt.UTC).timestamp())
        self._entries = {
            model_id: CatalogEntry(model_id, created, self.snapshot),
            self.snapshot: CatalogEntry(self.snapshot, created, self.snapshot),
        }
        if openai_aliases:
            for alias, snapshots in OPENAI_SNAPSHOTS.items():
                self._entries[alias] = CatalogEntry(alias, created, snapshots[0])
                for dated in snapshots:
                    self._entries[dated] = CatalogEntry(dated, _created(dated), dated)

    def resolve(self, name: str) -> str:
        """The snapshot a requested model name answers with."""
        return self.get(name).snapshot

    def get(self, name: str) -> CatalogEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFoundError(
                f"The model `{name}` does not exist or you do not have access to it.",
            )
        return entry

    def find_snapshot(self, name: str) -> str:
        """The snapshot ``name`` answers with, or "" for a name that is not served."""
        entry = self._entries.get(name)
        return entry.snapshot if entry is not None else ""

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())


def _created(dated_name: str) -> int:
    """Midnight UTC of the date a dated snapshot's name ends with."""
    day = dt.date.fromisoformat(dated_name[-10:])
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
