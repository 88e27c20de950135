"""Speech synthesis with Piper, and OpenAI's voice names mapped onto Piper settings.

A Piper voice file holds one speaker (the default ``joe``) or several. Each of
OpenAI's 13 voice names maps to its own settings so that they sound distinct:

========  =====  ======  =======  ======  ==========================================
name      spkr   pitch   length   noise   character
========  =====  ======  =======  ======  ==========================================
alloy     0      1.00    1.00     0.667   neutral, the voice file as it is
ash       1      0.92    1.02     0.55    lower, steady
ballad    2      1.06    1.14     0.75    higher, slow and lyrical
coral     3      1.10    0.92     0.70    bright and brisk
echo      4      0.88    1.08     0.50    low and calm
fable     5      1.04    1.05     0.90    expressive storyteller
nova      6      1.14    0.95     0.60    high and quick
onyx      7      0.84    1.10     0.60    deepest, unhurried
sage      8      0.96    1.12     0.45    measured and soft
shimmer   9      1.18    1.00     0.80    highest, lively
verse     10     1.02    0.88     0.85    fast and dynamic
marin     11     1.08    1.03     0.50    clear, a little high
cedar     12     0.90    0.97     0.75    warm and low
========  =====  ======  =======  ======  ==========================================

- ``spkr``: the speaker id, used (modulo the number of speakers) only when the
  voice file has several;
- ``pitch``: a factor on the voice's pitch (and formants). Piper speaks with
  ``length_scale = length * pitch`` and its samples are declared to play at
  ``pitch`` times the model's rate; resampling to the output rate then raises
  the pitch by ``pitch`` and leaves the tempo at ``length``;
- ``length``: Piper's ``length_scale`` (above 1 is slower);
- ``noise``: Piper's ``noise_scale`` (the liveliness of the voice).

A reading may also ask for a ``speed`` (OpenAI's, 0.25 to 4): the voice's length
scale is divided by it, so that 2 speaks twice as fast at the same pitch.

Piper's ``noise_w`` (random phoneme durations) is 0 for every voice: it makes a
reply's length depend on chance, and the same text must give audio of the same
length whether streamed or not. The remaining noise is made reproducible
(``piper_noise``): the same sentence in the same voice gives the same samples,
so that a request's ``seed`` reproduces its audio byte for byte.

A voice speaks through ``piper_vocoder``: its sentences come out a window of
about a second at a time, so a long one needs no more memory than a short one
and its first window plays while the rest is made. Piper's own way, making each
sentence whole and then scaling it to full scale, could not start a sentence
before its end, and made each sentence as loud as its loudest sample allowed.
Instead the voice has one gain, set at load so that the loudest of
``CALIBRATION_TEXTS`` peaks at ``PEAK_VOLUME``: every sentence keeps its own
level, and one louder than those is clipped at full scale.

This module knows nothing of the output sample rate or of PCM encoding: it
returns float32 samples and the rate at which they are to be played.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnivox.engines.cascade.assets import PiperFiles
from omnivox.engines.cascade.speaking.piper_noise import SeededSession
from omnivox.engines.cascade.speaking.piper_vocoder import PreparedVoice, VoiceRunner, prepare_voice

DEFAULT_VOICE = "alloy"
PEAK_VOLUME = 0.9  # the loudest calibration sentence peaks here; samples past 1 are clipped
MIN_PEAK = 1e-3
# Sentences whose loudest sample sets the voice's one gain (the default voice's
# loudest of many measured, and two of its usual level).
CALIBRATION_TEXTS = (
    "A cat is a small, furry animal with sharp claws.",
    "Paris is the capital of France.",
    "Sure, here are three tips for sleeping better at night.",
)


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    speaker: int
    pitch: float
    length_scale: float
    noise_scale: float
    character: str


VOICES: Mapping[str, VoiceSettings] = {
    "alloy": VoiceSettings(0, 1.00, 1.00, 0.667, "neutral, the voice file as it is"),
    "ash": VoiceSettings(1, 0.92, 1.02, 0.55, "lower, steady"),
    "ballad": VoiceSettings(2, 1.06, 1.14, 0.75, "higher, slow and lyrical"),
    "coral": VoiceSettings(3, 1.10, 0.92, 0.70, "bright and brisk"),
    "echo": VoiceSettings(4, 0.88, 1.08, 0.50, "low and calm"),
    "fable": VoiceSettings(5, 1.04, 1.05, 0.90, "expressive storyteller"),
    "nova": VoiceSettings(6, 1.14, 0.95, 0.60, "high and quick"),
    "onyx": VoiceSettings(7, 0.84, 1.10, 0.60, "deepest, unhurried"),
    "sage": VoiceSettings(8, 0.96, 1.12, 0.45, "measured and soft"),
    "shimmer": VoiceSettings(9, 1.18, 1.00, 0.80, "highest, lively"),
    "verse": VoiceSettings(10, 1.02, 0.88, 0.85, "fast and dynamic"),
    "marin": VoiceSettings(11, 1.08, 1.03, 0.50, "clear, a little high"),
    "cedar": VoiceSettings(12, 0.90, 0.97, 0.75, "warm and low"),
}


def voice_language(files: PiperFiles) -> str | None:
    """The language family ("en") a Piper voice speaks, from its config; None if unsaid."""
    try:
        config = json.loads(files.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    family = config.get("language", {}).get("family")
    return family if isinstance(family, str) and family else None


def voice_settings(voice: str) -> VoiceSettings:
    """The settings of an OpenAI voice name; alloy's for a name not in the table."""
    return VOICES.get(voice, VOICES[DEFAULT_VOICE])


@dataclass(frozen=True, slots=True)
class SpeechPiece:
    """Synthesized speech: float32 samples to be played at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int


def onnx_session_maker(cpu_threads: int) -> Callable[[str | bytes], Any]:
    """Makes onnxruntime sessions for a voice (from a path or bytes) on ``cpu_threads``."""
    import onnxruntime

    # PiperVoice.load would give onnxruntime every core; the sessions are built here
    # so that the synthesizer keeps to its share of threads.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads
    options.inter_op_num_threads = 1
    # Idle onnxruntime threads spin by default, stealing the cores the chat model
    # is writing on between two sentences.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # onnxruntime's arena keeps the largest sentence's buffers for ever (~200 MB
    # after one long sentence); without it they go back after each sentence, at
    # no measurable cost in speed.
    options.enable_cpu_mem_arena = False

    def session(model: str | bytes) -> Any:
        return onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )

    return session


def prepare_piper_voice(files: PiperFiles, cache_dir: Path, *, cpu_threads: int) -> PreparedVoice:
    """The voice rewritten and cut for ``PiperSynthesizer`` (once; then from ``cache_dir``)."""
    return prepare_voice(files.model_path, cache_dir, onnx_session_maker(cpu_threads))


class PiperSynthesizer:
    """One loaded Piper voice; ``synthesize`` may be called from several threads at once
    (onnxruntime sessions are thread-safe; Piper locks its phonemizer itself)."""

    def __init__(self, files: PiperFiles, prepared: PreparedVoice, *, cpu_threads: int) -> None:
        from piper import PiperVoice
        from piper.config import PiperConfig

        self.files = files
        session = onnx_session_maker(cpu_threads)
        config = json.loads(files.config_path.read_text(encoding="utf-8"))
        head = session(prepared.head)
        self._runner = VoiceRunner(
            SeededSession(head) if prepared.seeded else head,
            session(prepared.vocoder) if prepared.vocoder is not None else None,
            latent=prepared.latent,
            overlap_frames=prepared.overlap_frames,
            hop_samples=prepared.hop_samples,
        )
        # Piper is given the head only for its phonemizer: the runner speaks.
        self._voice: Any = PiperVoice(config=PiperConfig.from_dict(config), session=head)
        self.model_sample_rate: int = self._voice.config.sample_rate
        self.n_speakers: int = self._voice.config.num_speakers
        # The calibration is also the sessions' first runs (onnxruntime's slowest), so that
        # the first answer does not pay for them.
        self._gain = PEAK_VOLUME / max(self._peak(text) for text in CALIBRATION_TEXTS)

    def voice_table(self) -> dict[str, str]:
        speakers = f" ({self.n_speakers} speakers)" if self.n_speakers > 1 else ""
        name = f"{self.files.model_path.stem}{speakers}"
        return {
            voice: (
                f"{name}: {s.character}; pitch x{s.pitch:.2f}, "
                f"length x{s.length_scale:.2f}, noise {s.noise_scale:.2f}"
                + (f", speaker {s.speaker % self.n_speakers}" if self.n_speakers > 1 else "")
            )
            for voice, s in VOICES.items()
        }

    def play_rate(self, voice: str) -> int:
        """The rate at which this voice's samples are played (the pitch shift)."""
        return round(self.model_sample_rate * voice_settings(voice).pitch)

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[SpeechPiece]:
        """Speak ``text`` at ``speed`` times the voice's pace: pieces in order, each
        sentence Piper finds in it in windows."""
        play_rate = self.play_rate(voice)
        for samples in self._windows(text, voice, speed):
            loud = np.clip(samples * self._gain, -1.0, 1.0)
            yield SpeechPiece(loud.astype(np.float32, copy=False), play_rate)

    def _windows(self, text: str, voice: str, speed: float = 1.0) -> Iterator[np.ndarray]:
        """The voice's own samples of ``text``, before the gain, a window at a time."""
        settings = voice_settings(voice)
        for phonemes in self._voice.phonemize(text):
            if phonemes:
                ids = self._voice.phonemes_to_ids(phonemes)
                yield from self._runner.audio(self._feeds(ids, settings, speed))

    def _feeds(
        self, phoneme_ids: list[int], settings: VoiceSettings, speed: float = 1.0
    ) -> dict[str, np.ndarray]:
        """The model's inputs for one sentence, as Piper gives them (the length scale
        divided by ``speed``)."""
        feeds: dict[str, np.ndarray] = {
            "input": np.array([phoneme_ids], dtype=np.int64),
            "input_lengths": np.array([len(phoneme_ids)], dtype=np.int64),
            "scales": np.array(
                [settings.noise_scale, settings.length_scale * settings.pitch / speed, 0.0],
                dtype=np.float32,
            ),
        }
        if self.n_speakers > 1:
            feeds["sid"] = np.array([settings.speaker % self.n_speakers], dtype=np.int64)
        return feeds

    def _peak(self, text: str) -> float:
        """The loudest sample of ``text`` in the voice file's own settings, before the gain."""
        peaks = [float(np.abs(samples).max()) for samples in self._windows(text, DEFAULT_VOICE)]
        return max([*peaks, MIN_PEAK])
