"""Cut a stream of s16le PCM into pieces that base64-encode without padding.

A piece whose length is a multiple of 6 bytes holds whole 2-byte samples and whole
3-byte base64 groups, so its base64 text has no "=" and the texts of consecutive
pieces concatenate into valid base64 of the whole stream. This module does not
base64-encode anything itself, and does not know the sample rate or what the
pieces are sent in.
"""

from __future__ import annotations

PIECE_ALIGN_BYTES = 6  # lcm of the 2-byte sample and the 3-byte base64 group


class PcmChunker:
    """Buffers PCM so that every piece it returns is a non-empty multiple of 6 bytes.

    ``push`` returns a list of pieces (often one, empty when fewer than 6 bytes are
    waiting); with ``max_bytes`` no piece is longer than that, rounded down to a
    multiple of 6. ``flush`` returns what is left at the end: fewer than 6 bytes,
    which is 0, 2 or 4 when the input was whole samples (always 0 for answers, which
    ``serving.chat`` ends on a multiple of 6 bytes).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes < PIECE_ALIGN_BYTES:
            raise ValueError(f"max_bytes must be at least {PIECE_ALIGN_BYTES}, got {max_bytes}")
        self._piece_bytes = None if max_bytes is None else _align_down(max_bytes)
        self._pending = bytearray()

    def push(self, pcm_s16le: bytes) -> list[bytes]:
        """Add PCM; returns the aligned pieces now ready, in order."""
        self._pending += pcm_s16le
        n_ready_bytes = _align_down(len(self._pending))
        if n_ready_bytes == 0:
            return []
        ready = bytes(self._pending[:n_ready_bytes])
        del self._pending[:n_ready_bytes]
        step = self._piece_bytes or n_ready_bytes
        return [ready[start : start + step] for start in range(0, n_ready_bytes, step)]

    def flush(self) -> bytes:
        """End the stream; returns the unaligned remainder (fewer than 6 bytes, maybe b"")."""
        rest = bytes(self._pending)
        self._pending.clear()
        return rest


def _align_down(n_bytes: int) -> int:
    return n_bytes - n_bytes % PIECE_ALIGN_BYTES
