"""Cut streamed text at the first of the client's stop sequences.

``StopScanner.feed`` returns the text that can be shown now: everything up to
the point where a stop sequence might still begin is held back until the next
piece shows whether it does. Once a stop sequence is seen, ``stopped`` is True
and nothing more is returned; the stop sequence itself is never returned.

Every engine that streams text cuts it here. This module knows nothing of tokens
or models.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add ``text``; return what is certainly before any stop sequence."""
        if self.stopped:
            return ""
        buffer = self._held + text
        hits = [i for i in (buffer.find(stop) for stop in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buffer[: min(hits)]
        keep = self._partial_stop_length(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """The text ended: return what was held back."""
        held, self._held = ("" if self.stopped else self._held), ""
        return held

    def _partial_stop_length(self, buffer: str) -> int:
        """Length of the longest end of ``buffer`` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:length]):
                    longest = length
                    break
        return longest
