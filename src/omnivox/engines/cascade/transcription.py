"""Transcription and translation of one uploaded clip, a Whisper pass per model step.

``transcription_work`` runs in a worker thread (``ThreadBridge``): it resamples the
clip to Whisper's rate and finds its speech outside the model slot, detects the
language (when not given) holding the slot once, then takes the slot for each
piece of ``long_form`` and passes its segments on as soon as they are made. A
piece is ~28 s of speech heard in ~1-2 s on 2 cores: between two pieces the slot
goes to whichever conversation is more urgent, so a file of ten minutes does not
hold every conversation up for its whole length. The transcription is paced as a
text answer writing its transcript's tokens (``Pace.wrote``): it goes before
conversations that arrived after it until it has written as many tokens as a
text answer would have in that time, and then yields to them.

This module wires the recogniser to the slot; it knows nothing of HTTP or of
Whisper's decoding.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from omnivox.audio.pcm import resample
from omnivox.engines.base import TranscriptionRequest
from omnivox.engines.cascade.listening.long_form import LongFormTranscription
from omnivox.engines.cascade.listening.recogniser import SAMPLE_RATE
from omnivox.engines.cascade.scheduler import ComputeSlot, Pace, Stage
from omnivox.engines.events import (
    TranscriptionEvent,
    TranscriptionFinished,
    TranscriptionStarted,
    TranscriptSegment,
)
from omnivox.heap import release_free_memory_soon


def transcription_work(
    model: object,
    request: TranscriptionRequest,
    slot: ComputeSlot,
    pace: Pace,
    cancel: threading.Event,
) -> Iterator[TranscriptionEvent]:
    """The events of one transcription; stops between two passes once ``cancel`` is set."""
    clip = request.clip
    samples = resample(clip.samples, clip.sample_rate, SAMPLE_RATE)
    job = LongFormTranscription(  # finds the speech now, outside the slot
        model,
        samples,
        task=request.task,
        language=request.language,
        prompt=request.prompt,
        temperature=request.temperature,
        word_timestamps=request.word_timestamps,
    )
    if job.needs_detection:
        with slot.hold(pace, Stage.LISTEN, cancel) as granted:
            if not granted:
                return
            job.detect_language()
    yield TranscriptionStarted(language=job.detect_language(), duration_s=clip.duration_s)

    def wrote(segments: list[TranscriptSegment]) -> None:
        pace.wrote(sum(len(segment.tokens) for segment in segments))

    try:
        for segments in slot.steps(job.pieces(), pace, Stage.LISTEN, cancel, after=wrote):
            yield from segments
    finally:
        release_free_memory_soon()  # the passes' buffers
    if cancel.is_set():
        return
    yield TranscriptionFinished(
        prompt_text_tokens=job.prompt_text_tokens, output_text_tokens=job.output_text_tokens
    )
