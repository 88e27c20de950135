"""Speech recognition with faster-whisper (CTranslate2), int8 on the CPU.

``WhisperRecogniser.transcribe`` takes 16 kHz mono float32 samples, keeps only
the speech (``vad.speech_chunks``), and returns the words as one string ("" for
silence). Decoding is deterministic and bounded by the clip: a beam of 3 at
temperature 0, no conditioning on earlier text, at most ``TOKENS_PER_S`` tokens
per second of speech (plus ``TOKEN_ALLOWANCE``) and no retries at higher
temperatures. ``language`` skips Whisper's language detection (a second encoder
pass). Whisper was trained on 30 s windows and faster-whisper pads every one to
30 s, but in this recogniser's passes (a conversation's turns, where a tenth of a
second counts) speech is encoded in the shortest of ``SHORT_WINDOWS_S`` that it ends
``WINDOW_MARGIN_S`` before (``window_features``): a pass over a turn of up to 19 s takes
0.48 s instead of 0.78 s (word error rate 0.086 instead of 0.081 over 360 clips), and
one of up to 9 s 0.29 s instead of 0.41 s in the 20 s window (0.113 instead of 0.109
over 320 clips; shorter windows mishear more: ``bench/whisper_window.py``,
docs/performance.md). Several clips share a pass: ``transcribe_clips`` lays their
speech one after another, a second of silence between them, and ``assign_segments``
gives each clip the segments in its span; clips run together, or left without words,
are heard again one by one. A clip heard alone needs no segment times: its pass
decodes no timestamp tokens (``TIMESTAMPS_ALONE``; 0.03 s less a pass, and no more
words wrong). CTranslate2 queues calls onto ``num_workers`` workers, so no lock is
needed. The measured choices are in docs/performance.md. This module knows nothing
of sample-rate conversion or of caching transcripts.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnivox.engines.cascade.listening.vad import VAD_SAMPLE_RATE, load_vad, speech_chunks

SAMPLE_RATE = VAD_SAMPLE_RATE  # Whisper hears 16 kHz
BEAM_SIZE = 3
TOKENS_PER_S = 8  # fast speech is ~4 words (~6 tokens) per second
TOKEN_ALLOWANCE = 16
MAX_TOKENS = 440  # Whisper's own limit is 448, prompt included
GAP_S = 1.0  # silence between packed clips: Whisper ends a segment there
WINDOW_S = 29.0  # what one packed pass holds, inside Whisper's 30 s window
MIN_SHARE_S = 0.3  # a segment overlapping two clips by this much ran them together
FRAMES_PER_S = 100  # Whisper's log-mel features
SHORT_WINDOWS_S = (10, 20)  # what speech that ends early enough is encoded in (Whisper: 30)
WINDOW_MARGIN_S = 1.0  # the padding such speech keeps before a short window's end
TIMESTAMPS_ALONE = False  # whether a clip heard alone decodes timestamp tokens too


class WhisperRecogniser:
    def __init__(
        self,
        model_dir: Path,
        *,
        cpu_threads: int,
        num_workers: int = 2,
        language: str | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.sample_rate = SAMPLE_RATE
        self.language = language
        self._model: Any = _windowed_model_class()(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            num_workers=num_workers,
        )
        load_vad()

    @property
    def model(self) -> Any:
        """The loaded faster-whisper ``WhisperModel`` (``long_form`` drives it too)."""
        return self._model

    def speech(self, samples: np.ndarray) -> list[np.ndarray]:
        """The speech chunks of ``samples`` (16 kHz mono float32): what a pass hears."""
        return speech_chunks(samples)

    def transcribe(self, samples: np.ndarray) -> str:
        """The words spoken in ``samples`` (16 kHz mono float32)."""
        return self.transcribe_clips([self.speech(samples)])[0]

    def transcribe_clips(self, clips: Sequence[Sequence[np.ndarray]]) -> list[str]:
        """The words of each clip (given as its speech chunks), in as few passes as fit."""
        texts: list[list[str]] = [[] for _ in clips]
        for window in pack_windows(clips):
            for index, text in self._hear_window(window):
                if text:
                    texts[index].append(text)
        return [" ".join(words) for words in texts]

    def _hear_window(self, window: list[tuple[int, np.ndarray]]) -> list[tuple[int, str]]:
        if len(window) == 1:
            index, chunk = window[0]
            segments = self._segments(chunk, timestamps=TIMESTAMPS_ALONE)
            return [(index, " ".join(text for _, _, text in segments if text))]
        gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
        pieces: list[np.ndarray] = []
        spans: list[tuple[float, float]] = []
        at_s = 0.0
        for _, chunk in window:
            pieces.extend([chunk, gap])
            spans.append((at_s, at_s + len(chunk) / SAMPLE_RATE))
            at_s = spans[-1][1] + GAP_S
        heard = self._segments(np.concatenate(pieces[:-1]), timestamps=True)
        assigned = assign_segments(heard, spans)
        if assigned is None:  # two clips ran together: hear each alone
            return [pair for item in window for pair in self._hear_window([item])]
        return [(index, text) for (index, _), text in zip(window, assigned, strict=True)]

    def _segments(self, audio: np.ndarray, *, timestamps: bool) -> list[tuple[float, float, str]]:
        """Whisper's segments of ``audio``: (start s, end s, text); without ``timestamps``,
        one segment spanning the window."""
        with short_windows():  # the segments are decoded as they are read, in here
            segments, _info = self._model.transcribe(
                audio,
                language=self.language,
                beam_size=BEAM_SIZE,
                temperature=0.0,
                max_new_tokens=max_tokens(len(audio) / SAMPLE_RATE),
                condition_on_previous_text=False,
                vad_filter=False,
                without_timestamps=not timestamps,
            )
            return [(s.start, s.end, s.text.strip()) for s in segments]


@functools.cache
def _windowed_model_class() -> type[Any]:
    """faster-whisper's ``WhisperModel``, encoding each window as ``window_features`` cuts it."""
    from faster_whisper import WhisperModel

    class WindowedWhisperModel(WhisperModel):
        def encode(self, features: np.ndarray) -> Any:
            if getattr(_windowing, "short", False):
                features = window_features(features)
            return super().encode(features)

    return WindowedWhisperModel


_windowing = threading.local()  # ``short``: this thread's pass may use the short window


@contextlib.contextmanager
def short_windows() -> Iterator[None]:
    """Let the passes this thread runs meanwhile encode in ``SHORT_WINDOWS_S`` windows
    (a conversation's turns; ``long_form`` transcriptions keep Whisper's 30 s)."""
    _windowing.short = True
    try:
        yield
    finally:
        _windowing.short = False


def window_features(features: np.ndarray) -> np.ndarray:
    """The log-mel ``features`` of a pass (``[batch,] mels, frames``, padded with zeros to
    Whisper's 30 s) cut to the shortest of ``SHORT_WINDOWS_S`` that every item's speech
    ends at least ``WINDOW_MARGIN_S`` before; unchanged when none is. A frame of sound,
    silence included, is never all zeros: the padding is what is all zeros at the end."""
    levels = np.abs(features).reshape(-1, features.shape[-1]).max(axis=0)
    sounding = np.flatnonzero(levels)
    content = int(sounding[-1]) + 1 if sounding.size else 0
    for window_s in sorted(SHORT_WINDOWS_S):
        frames = window_s * FRAMES_PER_S
        if frames >= features.shape[-1]:
            break
        if content + WINDOW_MARGIN_S * FRAMES_PER_S <= frames:
            return np.ascontiguousarray(features[..., :frames])
    return features


def max_tokens(speech_s: float) -> int:
    """The most tokens a clip of ``speech_s`` seconds can reasonably hold."""
    return min(MAX_TOKENS, int(TOKENS_PER_S * speech_s) + TOKEN_ALLOWANCE)


def pack_windows(clips: Sequence[Sequence[np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
    """The clips' chunks, in order, in windows of at most ``WINDOW_S`` (gaps included);
    each item is (the clip's index, a chunk). A chunk longer than a window is alone."""
    windows: list[list[tuple[int, np.ndarray]]] = []
    used_s = 0.0
    for index, chunks in enumerate(clips):
        for chunk in chunks:
            length_s = len(chunk) / SAMPLE_RATE
            if windows and windows[-1] and used_s + GAP_S + length_s <= WINDOW_S:
                windows[-1].append((index, chunk))
                used_s += GAP_S + length_s
            else:
                windows.append([(index, chunk)])
                used_s = length_s
    return windows


def assign_segments(
    segments: Sequence[tuple[float, float, str]], spans: Sequence[tuple[float, float]]
) -> list[str] | None:
    """Each span's text: the segments whose middle falls nearest it. None (hear the
    clips alone) when one segment overlaps two spans by ``MIN_SHARE_S`` or half the
    shorter span (Whisper ran them together), or when a span gets no words (the VAD
    heard speech there: its words went elsewhere or were lost)."""
    texts: list[list[str]] = [[] for _ in spans]
    for start, end, text in segments:
        overlaps = [min(end, b) - max(start, a) >= min(MIN_SHARE_S, (b - a) / 2) for a, b in spans]
        if sum(overlaps) > 1:
            return None
        middle = (start + end) / 2
        nearest = min(
            range(len(spans)),
            key=lambda k: max(spans[k][0] - middle, middle - spans[k][1], 0.0),
        )
        if text:
            texts[nearest].append(text)
    if not all(texts):
        return None
    return [" ".join(words) for words in texts]
