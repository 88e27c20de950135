"""The cascade's voice on other servers: any ``/v1/audio/speech`` server (another
omnivox, Kokoro-FastAPI, speaches), reached through an ``UpstreamPool``.

``RemoteVoice`` stands where ``PiperSynthesizer`` does, behind a ``UnitSpeaker``:
each unit of text is one ``POST /audio/speech`` (the configured model, the voice
name as the client gave it, ``response_format=pcm``, the speed), and the raw
24 kHz 16-bit little-endian PCM it streams back leaves as a ``SpeechPiece`` per
chunk received, while the upstream is still speaking: nothing waits for the whole
answer. A chunk that ends inside a sample keeps its odd byte for the next one.
The voice names mean what the upstream makes of them; the delivery is the
upstream's too.

This module knows nothing of HTTP beyond the pool, or of the model slot.
"""

from __future__ import annotations

from collections.abc import Iterator

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import s16le_to_float
from omnivox.engines.cascade.speaking.synthesizer import VOICES, SpeechPiece
from omnivox.engines.upstream import UpstreamPool, split_urls
from omnivox.errors import UpstreamError, UpstreamUnavailableError

PCM_SAMPLE_RATE = OUTPUT_SAMPLE_RATE  # OpenAI's "pcm": 24 kHz mono s16le
# Answers that are not raw PCM, from a server that ignored response_format=pcm.
ENCODED_TYPES = (
    "audio/mpeg",
    "audio/mp3",
    "audio/wav",
    "audio/x-wav",
    "audio/ogg",
    "audio/opus",
    "audio/aac",
    "audio/flac",
    "application/json",
    "text/",
)


class RemoteVoice:
    def __init__(self, pool: UpstreamPool, upstream_model: str) -> None:
        self.pool = pool
        self.upstream_model = upstream_model

    @classmethod
    def connect(
        cls, urls: str, *, upstream_model: str, api_key: str | None, timeout_s: float
    ) -> RemoteVoice:
        """A pool of the upstreams in ``urls`` (comma-separated), each asked now whether it
        answers: one that does not is out of rotation (a warning) until it does."""
        pool = UpstreamPool(split_urls(urls), part="voice", api_key=api_key, timeout_s=timeout_s)
        pool.check_all()
        return cls(pool, upstream_model)

    def check_available(self) -> None:
        """503 ``upstream_unavailable`` now when no upstream is in rotation."""
        if not self.pool.available():
            raise UpstreamUnavailableError(
                "The voice is unavailable: no upstream server answers. Try again later."
            )

    def close(self) -> None:
        self.pool.close()

    def voice_table(self) -> dict[str, str]:
        return {
            voice: f"the upstream speech server's {voice!r} voice of {self.upstream_model!r}"
            for voice in VOICES
        }

    def play_rate(self, voice: str) -> int:
        return PCM_SAMPLE_RATE

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[SpeechPiece]:
        """``text`` spoken upstream: a piece per chunk of PCM as it arrives."""
        body = {
            "model": self.upstream_model,
            "input": text,
            "voice": voice,
            "response_format": "pcm",
            "speed": speed,
        }
        with self.pool.stream("POST", "/audio/speech", json=body) as response:
            content_type = response.headers.get("content-type", "").lower()
            if content_type.startswith(ENCODED_TYPES):
                raise UpstreamError(
                    f"The voice's upstream server answered {content_type}, not raw PCM "
                    "(response_format=pcm)."
                )
            odd = b""
            for chunk in response.iter_bytes():
                data = odd + chunk
                whole = len(data) - len(data) % 2
                odd = data[whole:]
                if whole:
                    yield SpeechPiece(s16le_to_float(data[:whole]), PCM_SAMPLE_RATE)
