"""Speech recognition with faster-whisper (CTranslate2), int8 on the CPU.

``WhisperRecogniser.transcribe`` takes 16 kHz mono float32 samples, keeps only
the speech (``vad.speech_chunks``), and returns the words as one string ("" for
silence). Greedy decoding (beam 1) and no conditioning on earlier text: fast,
and no hallucinated carry-over between chunks.

``language`` (an ISO 639-1 code) skips Whisper's language detection, which costs
a second encoder pass (~0.8 s of a ~1.7 s turn on 2 cores); with None the
spoken language is detected on every clip.

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
BEAM_SIZE = 1


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
                condition_on_previous_text=False,
                vad_filter=False,
            )
            texts.extend(segment.text.strip() for segment in segments)
        return " ".join(text for text in texts if text)
