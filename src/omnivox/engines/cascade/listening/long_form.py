"""Recordings of any length written down by Whisper a piece at a time, cut at silences.

``LongFormTranscription`` serves one clip (16 kHz mono float32, up to many minutes)
for the transcription endpoints, with faster-whisper's ``BatchedInferencePipeline``
around the recogniser's loaded model:

- on creation it finds the speech (the VAD, with the pipeline's own settings: a
  pause of ``MIN_SILENCE_MS`` parts two regions, and no region is longer than
  ``PIECE_S``);
- ``detect_language`` hears the first piece (one encoder pass) when the language
  was not given;
- each ``next()`` of ``pieces()`` is one Whisper pass over one piece: the next
  regions whose speech fits ``PIECE_S``, laid end to end without the silence
  between them, decoded with timestamps (a segment per phrase or sentence), and
  the times restored to the clip's own (``restore_speech_timestamps``). Whoever
  holds the model slot per ``next()`` shares the CPU with conversations a pass
  at a time, however long the file.

Each piece is decoded alone, with the caller's prompt but not the text of the
piece before (a misheard piece can not lead the next one astray), at most
``TOKENS_PER_S`` tokens per second of speech, with a beam of 3 as in
conversations. Whisper may stop before its window's end: a sentence that runs
close to the end is only opened, for the next window to write. The pipeline
drops that unfinished tail, and its words with it (on a minute of eight espeak-ng
sentences, the sixth was in no segment). Here, as Whisper's own sequential
decoding seeks, the speech after the last whole segment goes back to the front
of the queue and begins the next piece: no word is lost, and none is heard
twice. A tail shorter than ``MIN_TAIL_S`` (the end of a word, the VAD's
padding) is not heard again.

This module knows nothing of threads, of the model slot or of sample rates other
than Whisper's.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from omnivox.engines.cascade.listening.recogniser import BEAM_SIZE, SAMPLE_RATE
from omnivox.engines.events import TranscribedWord, TranscriptSegment
from omnivox.engines.languages import whisper_languages

PIECE_S = 28.0  # speech per pass, inside Whisper's 30 s window
MIN_SILENCE_MS = 160  # BatchedInferencePipeline's own
TOKENS_PER_S = 10  # text at up to ~6 a second, and two timestamps per segment
TOKEN_ALLOWANCE = 16
MIN_TAIL_S = 1.0
MIN_HEARD_S = 1.0  # a pass that wrote less before stopping is not heard again: no loop
DEFAULT_LANGUAGE = "en"  # said of a clip with no speech, when none was asked for
FRAMES_PER_S = 100  # Whisper's ``seek`` counts frames of 10 ms

Region = dict[str, int]  # {"start": sample, "end": sample} of the clip, as the VAD gives them


def known_languages(model: Any) -> tuple[str, ...]:
    """The ISO 639-1 codes ``model`` (a ``WhisperModel``) can be told to hear."""
    if not model.model.is_multilingual:
        return ("en",)
    return whisper_languages(model.model.num_languages)


class LongFormTranscription:
    """One clip's transcription; ``task`` is "transcribe" or "translate" (into English)."""

    def __init__(
        self,
        model: Any,
        samples: np.ndarray,
        *,
        task: str = "transcribe",
        language: str | None = None,
        prompt: str | None = None,
        temperature: float = 0.0,
        word_timestamps: bool = False,
    ) -> None:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        self._model = model
        self._samples = np.asarray(samples, dtype=np.float32)
        self._task = task
        self._language = language
        self._temperature = temperature
        self._word_timestamps = word_timestamps
        self._multilingual = bool(model.model.is_multilingual)
        # Whisper reads a prompt as earlier text: a space first, as its own decoding does.
        text = prompt.strip() if prompt else ""
        self._prompt = f" {text}" if text else None
        # Whisper keeps the last half-window of a prompt's tokens (223 of base's 448).
        kept = model.max_length // 2 - 1
        ids = model.hf_tokenizer.encode(self._prompt, add_special_tokens=False).ids if text else []
        self.prompt_text_tokens = min(len(ids), kept)
        # <|startofprev|> and the prompt, then <|startoftranscript|>, the language, the task.
        self._prompt_length = (1 + self.prompt_text_tokens if ids else 0) + 3
        self.output_text_tokens = 0
        regions: list[Region] = []
        if self._samples.size:
            options = VadOptions(
                min_silence_duration_ms=MIN_SILENCE_MS, max_speech_duration_s=PIECE_S
            )
            regions = get_speech_timestamps(self._samples, options, sampling_rate=SAMPLE_RATE)
        self._queue: deque[Region] = deque(regions)
        self._index = 0

    @property
    def duration_s(self) -> float:
        return len(self._samples) / SAMPLE_RATE

    @property
    def needs_detection(self) -> bool:
        """Whether ``detect_language`` will run the model."""
        return self._language is None and self._multilingual and bool(self._queue)

    def detect_language(self) -> str:
        """The language asked for, or the one heard in the first piece (an encoder pass)."""
        if self._language is None:
            if not self._multilingual:
                self._language = "en"
            elif not self._queue:
                self._language = DEFAULT_LANGUAGE
            else:
                first = self._piece_regions()
                language, _probability, _all = self._model.detect_language(audio=self._audio(first))
                self._language = str(language)
        return self._language

    def pieces(self) -> Iterator[list[TranscriptSegment]]:
        """The segments of each piece in turn; each ``next()`` is one pass of the model."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import restore_speech_timestamps

        language = self.detect_language()
        tokenizer = Tokenizer(
            self._model.hf_tokenizer, self._multilingual, task=self._task, language=language
        )
        pipeline = _pipeline_class()(self._model)
        while self._queue:
            piece = self._piece_regions()
            for _ in piece:
                self._queue.popleft()
            audio = self._audio(piece)
            speech_s = len(audio) / SAMPLE_RATE
            segments, _info = pipeline.transcribe(
                audio,
                language=language,
                task=self._task,
                beam_size=BEAM_SIZE,
                temperature=self._temperature,
                initial_prompt=self._prompt,
                without_timestamps=False,
                word_timestamps=self._word_timestamps,
                vad_filter=False,  # the piece is speech already
                max_new_tokens=self._max_new_tokens(speech_s),
                batch_size=1,
            )
            heard = list(segments)
            heard_s = heard_until_s(
                pipeline.last_tokens, tokenizer.timestamp_begin, self._model.time_precision
            )
            heard_s = speech_s if heard_s is None else min(heard_s, speech_s)
            if speech_s - heard_s >= MIN_TAIL_S and heard_s >= MIN_HEARD_S:
                self._queue.extendleft(reversed(regions_after(piece, heard_s)))
            restored = restore_speech_timestamps(heard, piece, SAMPLE_RATE)
            seek = piece[0]["start"] * FRAMES_PER_S // SAMPLE_RATE
            made = [self._segment(s, seek, tokenizer.eot) for s in restored]
            yield [segment for segment in made if segment is not None]

    def _piece_regions(self) -> list[Region]:
        """The regions at the front of the queue whose speech fits one piece (at least one)."""
        limit = round(PIECE_S * SAMPLE_RATE)
        piece: list[Region] = []
        total = 0
        for region in self._queue:
            length = region["end"] - region["start"]
            if piece and total + length > limit:
                break
            piece.append(region)
            total += length
        return piece

    def _audio(self, regions: Sequence[Region]) -> np.ndarray:
        return np.concatenate([self._samples[r["start"] : r["end"]] for r in regions])

    def _max_new_tokens(self, speech_s: float) -> int:
        bound = int(TOKENS_PER_S * speech_s) + TOKEN_ALLOWANCE
        return max(1, min(bound, int(self._model.max_length) - self._prompt_length))

    def _segment(self, segment: Any, seek: int, eot: int) -> TranscriptSegment | None:
        text = segment.text.strip()
        if not text:
            return None
        duration_s = self.duration_s
        start_s = _within(segment.start, duration_s)
        words = tuple(
            TranscribedWord(
                word.word,
                _within(word.start, duration_s),
                _within(word.end, duration_s),
                float(word.probability),
            )
            for word in segment.words or ()
        )
        tokens = tuple(int(t) for t in segment.tokens)
        self.output_text_tokens += sum(1 for t in tokens if t < eot)
        made = TranscriptSegment(
            index=self._index,
            seek=int(seek),
            start_s=start_s,
            end_s=max(start_s, _within(segment.end, duration_s)),
            text=text,
            tokens=tokens,
            temperature=float(segment.temperature),
            avg_logprob=float(segment.avg_logprob),
            compression_ratio=float(segment.compression_ratio),
            no_speech_prob=float(segment.no_speech_prob),
            words=words,
        )
        self._index += 1
        return made


def heard_until_s(
    tokens: Sequence[int], timestamp_begin: int, time_precision: float
) -> float | None:
    """Where a pass's whole segments end, in seconds of its piece, when Whisper stopped
    before the piece's end (it opened a segment and wrote no more, or ran out of
    tokens); None when it wrote to the end (its last segment closed, nothing after)."""
    if len(tokens) >= 2 and tokens[-2] < timestamp_begin <= tokens[-1]:
        return None
    closes = [
        i
        for i in range(1, len(tokens))
        if tokens[i - 1] >= timestamp_begin and tokens[i] >= timestamp_begin
    ]
    if not closes:  # one segment, whole or cut short: the pipeline keeps all of it
        return None
    return (tokens[closes[-1] - 1] - timestamp_begin) * time_precision


def regions_after(piece: Sequence[Region], speech_s: float) -> list[Region]:
    """What follows the first ``speech_s`` seconds of speech of ``piece``, as regions."""
    skip = round(speech_s * SAMPLE_RATE)
    rest: list[Region] = []
    for region in piece:
        length = region["end"] - region["start"]
        if skip >= length:
            skip -= length
            continue
        rest.append({"start": region["start"] + skip, "end": region["end"]})
        skip = 0
    return rest


def _within(time_s: float, duration_s: float) -> float:
    return min(max(0.0, float(time_s)), duration_s)


@functools.cache
def _pipeline_class() -> Any:
    """``BatchedInferencePipeline`` keeping the tokens of its last pass (its segments
    leave out an unfinished tail, which ``pieces`` hears again)."""
    from faster_whisper import BatchedInferencePipeline

    class TokenKeepingPipeline(BatchedInferencePipeline):
        last_tokens: Sequence[int] = ()

        def generate_segment_batched(self, features: Any, tokenizer: Any, options: Any) -> Any:
            encoder_output, outputs = super().generate_segment_batched(features, tokenizer, options)
            self.last_tokens = list(outputs[-1]["tokens"]) if outputs else []
            return encoder_output, outputs

    return TokenKeepingPipeline
