"""Speech recognition with faster-whisper (CTranslate2), int8 on the CPU.

``WhisperRecogniser.transcribe`` takes 16 kHz mono float32 samples, keeps only
the speech (``vad.speech_chunks``), and returns the words as one string ("" for
silence). A small beam (3) at temperature 0 and no conditioning on earlier text:
deterministic, and no hallucinated carry-over between chunks.

``language`` (an ISO 639-1 code) skips Whisper's language detection, which costs
a second encoder pass (~0.8 s of a ~1.7 s turn on 2 cores); with None the
spoken language is detected on every clip.

Decoding is bounded by the clip: at most ``TOKENS_PER_S`` tokens per second of
speech (plus ``TOKEN_ALLOWANCE``), and no retries at higher temperatures.
Whisper's defaults (greedy, then up to five sampled retries of up to 448 tokens
each) turned one 2.8 s question into a repetition loop and 12 s of decoding
while every other conversation waited; the beam of 3 hears it right in ~1.1 s,
the same time for any run. Greedy decoding (a beam of 1) is only 5-20 % faster
over the benchmark's 12 questions but mishears 4 of them, one as a loop.

Each pass encodes Whisper's full 30 s window (~0.7 s on 2 cores, whatever the
clip's length). Windows cut to the clip are 3 to 10 times faster to encode,
but Whisper base hears them worse: word error rate 0.06 at 30 s, 0.12 at 10 s,
0.15 at 15 s over 20 test clips (espeak-ng questions and Piper sentences), with
repetition loops on short windows; so the window stays whole.

One model serves several threads at once: CTranslate2 queues calls onto
``num_workers`` workers, so no lock is needed here.

This module knows nothing of sample-rate conversion or of caching transcripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from omnivox.engines.cascade.vad import VAD_SAMPLE_RATE, load_vad, speech_chunks

SAMPLE_RATE = VAD_SAMPLE_RATE  # Whisper hears 16 kHz
BEAM_SIZE = 3
TOKENS_PER_S = 8  # fast speech is ~4 words (~6 tokens) per second
TOKEN_ALLOWANCE = 16
MAX_TOKENS = 440  # Whisper's own limit is 448, prompt included


class WhisperRecogniser:
    def __init__(
        self,
        model_dir: Path,
        *,
        cpu_threads: int,
        num_workers: int = 2,
        language: str | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model_dir = model_dir
        self.sample_rate = SAMPLE_RATE
        self.language = language
        self._model: Any = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            num_workers=num_workers,
        )
        load_vad()

    def transcribe(self, samples: np.ndarray) -> str:
        """The words spoken in ``samples`` (16 kHz mono float32)."""
        texts: list[str] = []
        for chunk in speech_chunks(samples):
            segments, _info = self._model.transcribe(
                chunk,
                language=self.language,
                beam_size=BEAM_SIZE,
                temperature=0.0,
                max_new_tokens=max_tokens(len(chunk) / SAMPLE_RATE),
                condition_on_previous_text=False,
                vad_filter=False,
            )
            texts.extend(segment.text.strip() for segment in segments)
        return " ".join(text for text in texts if text)


def max_tokens(speech_s: float) -> int:
    """The most tokens a clip of ``speech_s`` seconds can reasonably hold."""
    return min(MAX_TOKENS, int(TOKENS_PER_S * speech_s) + TOKEN_ALLOWANCE)
