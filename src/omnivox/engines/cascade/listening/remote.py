"""The cascade's recogniser on other servers: any ``/v1/audio/transcriptions`` server
(another omnivox, speaches, vLLM serving Whisper), reached through an ``UpstreamPool``.

``RemoteRecogniser`` stands where ``WhisperRecogniser`` does. A conversation's clip
is sent whole, as a 16 kHz mono 16-bit WAV, to ``POST /audio/transcriptions``
(``response_format=json``, the conversation's language when known) and its
``text`` is the transcript. The silence is not cut here: finding the speech
would load the VAD model on a server that holds no model, and the upstream's
recogniser finds it itself (a clip of silence comes back empty). The clips of one
request are sent at once, one request each (``hear``); none takes the local
model slot, since the work is done elsewhere.

``transcription`` serves the engine's own transcription endpoints: the uploaded
clip goes upstream with ``response_format=verbose_json`` and the segment (and,
when asked, word) timestamps, the prompt, language and temperature; a
translation goes to ``/audio/translations``. ``verbose_events`` turns the
answer into the engine's events: the language as a code, the segments with the
words that fall in each, and token counts (the segments' tokens, or an estimate
from the characters when the upstream lists none).

An upstream begins its answer only once it has heard the whole clip, so the wait
for it is bounded by the configured timeout plus the clip's length (an upstream
hears at least as fast as the clip plays).

This module knows nothing of HTTP beyond the pool, or of the model slot.
"""

from __future__ import annotations

import io
import math
import threading
import wave
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from omnivox.audio.pcm import float_to_s16le, resample
from omnivox.engines.base import AudioClip, TranscriptionRequest
from omnivox.engines.cascade.listening.recogniser import SAMPLE_RATE
from omnivox.engines.cascade.listening.transcripts import TranscriptBook
from omnivox.engines.events import (
    TranscribedWord,
    TranscriptionEvent,
    TranscriptionFinished,
    TranscriptionStarted,
    TranscriptSegment,
)
from omnivox.engines.languages import language_code
from omnivox.engines.upstream import UpstreamPool, split_urls
from omnivox.errors import UpstreamError, UpstreamUnavailableError

CHARS_PER_TOKEN = 4  # the estimate when the upstream lists no tokens
MAX_PARALLEL_CLIPS = 8
DEFAULT_LANGUAGE = "en"  # said of an answer that names no language, when none was asked for


class RemoteRecogniser:
    def __init__(
        self,
        pool: UpstreamPool,
        upstream_model: str,
        *,
        language: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.pool = pool
        self.upstream_model = upstream_model
        self.sample_rate = SAMPLE_RATE
        self.language = language
        self.timeout_s = timeout_s

    @classmethod
    def connect(
        cls,
        urls: str,
        *,
        upstream_model: str,
        language: str | None,
        api_key: str | None,
        timeout_s: float,
    ) -> RemoteRecogniser:
        """A pool of the upstreams in ``urls`` (comma-separated), each asked now whether it
        answers: one that does not is out of rotation (a warning) until it does."""
        pool = UpstreamPool(
            split_urls(urls), part="recogniser", api_key=api_key, timeout_s=timeout_s
        )
        pool.check_all()
        return cls(pool, upstream_model, language=language, timeout_s=timeout_s)

    def check_available(self) -> None:
        """503 ``upstream_unavailable`` now when no upstream is in rotation."""
        if not self.pool.available():
            raise UpstreamUnavailableError(
                "The recogniser is unavailable: no upstream server answers. Try again later."
            )

    def close(self) -> None:
        self.pool.close()

    # -- a conversation's clips ----------------------------------------------------------

    def speech(self, samples: np.ndarray) -> list[np.ndarray]:
        """The whole clip (16 kHz mono float32) as one chunk: the upstream finds its speech."""
        samples = np.asarray(samples, dtype=np.float32)
        return [samples] if samples.size else []

    def transcribe(self, samples: np.ndarray) -> str:
        """The words spoken in ``samples`` (16 kHz mono float32)."""
        return self.transcribe_clips([self.speech(samples)])[0]

    def transcribe_clips(self, clips: Sequence[Sequence[np.ndarray]]) -> list[str]:
        """The words of each clip (given as its chunks), one upstream request each, at once."""
        audio = [np.concatenate(chunks) if chunks else None for chunks in clips]
        sent = [samples for samples in audio if samples is not None]
        if len(sent) <= 1:
            heard = [self._text(samples) for samples in sent]
        else:
            with ThreadPoolExecutor(min(len(sent), MAX_PARALLEL_CLIPS)) as executor:
                heard = list(executor.map(self._text, sent))
        texts = iter(heard)
        return ["" if samples is None else next(texts) for samples in audio]

    def hear(self, clips: Sequence[AudioClip], book: TranscriptBook) -> None:
        """Transcribe ``clips`` into ``book`` (what ``Listener.hear`` does for Whisper)."""
        texts = self.transcribe_clips([self.speech(book.samples(clip)) for clip in clips])
        for clip, text in zip(clips, texts, strict=True):
            book.remember(clip, text)

    def _text(self, samples: np.ndarray) -> str:
        fields: dict[str, Any] = {"model": self.upstream_model, "response_format": "json"}
        if self.language:
            fields["language"] = self.language
        answer = self._post("/audio/transcriptions", samples, fields)
        return str(answer.get("text") or "").strip()

    # -- the engine's transcription endpoints --------------------------------------------

    def transcription(
        self, request: TranscriptionRequest, cancel: threading.Event
    ) -> Iterator[TranscriptionEvent]:
        """The events of one transcription or translation of ``request.clip``."""
        clip = request.clip
        fields: dict[str, Any] = {
            "model": self.upstream_model,
            "response_format": "verbose_json",
            "temperature": str(request.temperature),
        }
        if request.prompt:
            fields["prompt"] = request.prompt
        path = "/audio/translations"
        if request.task == "transcribe":
            path = "/audio/transcriptions"
            granularities = ["segment", "word"] if request.word_timestamps else ["segment"]
            fields["timestamp_granularities[]"] = granularities
            if request.language:
                fields["language"] = request.language
        samples = resample(clip.samples, clip.sample_rate, SAMPLE_RATE)
        answer = self._post(path, samples, fields)
        if cancel.is_set():
            return
        yield from verbose_events(
            answer, duration_s=clip.duration_s, language=request.language, prompt=request.prompt
        )

    def _post(self, path: str, samples: np.ndarray, fields: Mapping[str, Any]) -> dict[str, Any]:
        import httpx

        audio_s = len(samples) / SAMPLE_RATE
        response = self.pool.request(
            "POST",
            path,
            files={"file": ("speech.wav", wav_bytes(samples), "audio/wav")},
            data=dict(fields),
            timeout=httpx.Timeout(self.timeout_s, read=self.timeout_s + audio_s),
        )
        try:
            answer = response.json()
        except ValueError:  # a server that writes plain text whatever was asked
            return {"text": response.text}
        if not isinstance(answer, dict):
            raise UpstreamError(f"The recogniser's upstream server answered {path} with no object.")
        return answer


def wav_bytes(samples: np.ndarray) -> bytes:
    """``samples`` (16 kHz mono float32) as a 16-bit PCM WAV file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(float_to_s16le(samples))
    return buffer.getvalue()


def verbose_events(
    answer: Mapping[str, Any],
    *,
    duration_s: float,
    language: str | None = None,
    prompt: str | None = None,
) -> list[TranscriptionEvent]:
    """A ``verbose_json`` answer as the engine's events. ``language`` is the one asked for
    (said when the answer names none); words are given to the segment they fall in."""
    named = answer.get("language")
    code = language_code(named) if isinstance(named, str) and named else None
    events: list[TranscriptionEvent] = [
        TranscriptionStarted(code or language or DEFAULT_LANGUAGE, duration_s)
    ]
    raw = [s for s in answer.get("segments") or () if isinstance(s, Mapping)]
    if not raw:  # an answer with the text only: one segment of the whole clip
        raw = [{"start": 0.0, "end": duration_s, "text": answer.get("text") or ""}]
    said = [s for s in raw if str(s.get("text") or "").strip()]
    spans = [
        (_seconds(s.get("start"), duration_s), _seconds(s.get("end"), duration_s)) for s in said
    ]
    words: list[list[TranscribedWord]] = [[] for _ in said]
    for word in answer.get("words") or ():
        if said and isinstance(word, Mapping) and str(word.get("word") or "").strip():
            made = _word(word, duration_s)
            words[_nearest(spans, (made.start_s + made.end_s) / 2)].append(made)
    segments = [
        TranscriptSegment(
            index=index,
            seek=int(s.get("seek") or 0),
            start_s=start_s,
            end_s=max(start_s, end_s),
            text=str(s["text"]).strip(),
            tokens=tuple(int(t) for t in s.get("tokens") or ()),
            temperature=float(s.get("temperature") or 0.0),
            avg_logprob=float(s.get("avg_logprob") or 0.0),
            compression_ratio=float(s.get("compression_ratio") or 0.0),
            no_speech_prob=float(s.get("no_speech_prob") or 0.0),
            words=tuple(its_words),
        )
        for index, (s, (start_s, end_s), its_words) in enumerate(
            zip(said, spans, words, strict=True)
        )
    ]
    events.extend(segments)
    output_tokens = sum(len(s.tokens) for s in segments) or sum(
        _estimate_tokens(s.text) for s in segments
    )
    events.append(TranscriptionFinished(_estimate_tokens(prompt or ""), output_tokens))
    return events


def _word(word: Mapping[str, Any], duration_s: float) -> TranscribedWord:
    text = str(word["word"])
    start_s = _seconds(word.get("start"), duration_s)
    probability = word.get("probability")  # faster-whisper servers give it; OpenAI's shape not
    return TranscribedWord(
        text if text.startswith(" ") else f" {text}",
        start_s,
        max(start_s, _seconds(word.get("end"), duration_s)),
        float(probability) if isinstance(probability, int | float) else 1.0,
    )


def _nearest(spans: Sequence[tuple[float, float]], at_s: float) -> int:
    """The span ``at_s`` falls in, or the nearest one."""
    return min(range(len(spans)), key=lambda k: max(spans[k][0] - at_s, at_s - spans[k][1], 0.0))


def _seconds(value: Any, duration_s: float) -> float:
    seconds = float(value) if isinstance(value, int | float) else 0.0
    return min(max(0.0, seconds), duration_s)


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text.strip()) / CHARS_PER_TOKEN)
