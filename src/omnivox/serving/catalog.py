"""The models omnivox answers to: one served model, its dated snapshot, its aliases.

``omnivox-audio`` resolves to ``omnivox-audio-2026-11-22``; OpenAI's audio
model names are aliases of it (unless configured off) so that unchanged client
code works. Responses name the resolved snapshot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from omnivox.errors import ModelNotFoundError

OPENAI_ALIASES = (
    "gpt-4o-audio-preview",
    "gpt-4o-mini-audio-preview",
    "gpt-audio",
    "gpt-audio-mini",
)
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
        names = [model_id, self.snapshot]
        if openai_aliases:
            names += OPENAI_ALIASES
        self._entries = {name: CatalogEntry(name, created, self.snapshot) for name in names}

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
