"""OpenAI's Realtime API (GA): a session's events (``session``), its configuration
(``config``), turn detection (``turns``), audio in and out (``audio_io``), the
conversation's items (``conversation``) and responses (``responses``)."""

from omnivox.serving.realtime.session import SESSION_LIMIT_S, RealtimeSession

__all__ = ["SESSION_LIMIT_S", "RealtimeSession"]
