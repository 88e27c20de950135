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

Piper's ``noise_w`` (random phoneme durations) is 0 for every voice: it makes a
reply's length depend on chance, and the same text must give audio of the same
length whether streamed or not. The remaining noise is made reproducible
(``piper_noise``): the same sentence in the same voice gives the same samples,
so that a request's ``seed`` reproduces its audio byte for byte.

This module knows nothing of the output sample rate or of PCM encoding: it
returns float32 samples and the rate at which they are to be played.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnivox.engines.cascade.assets import PiperFiles
from omnivox.engines.cascade.piper_noise import SeededSession, reproducible_noise

DEFAULT_VOICE = "alloy"
PEAK_VOLUME = 0.9  # Piper normalises each sentence to full scale; leave headroom


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


class PiperSynthesizer:
    """One loaded Piper voice; ``synthesize`` may be called from several threads at once
    (onnxruntime sessions are thread-safe; Piper locks its phonemizer itself)."""

    def __init__(self, files: PiperFiles, *, cpu_threads: int) -> None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        self.files = files
        # PiperVoice.load would give onnxruntime every core; build the session here
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
        config = json.loads(files.config_path.read_text(encoding="utf-8"))
        model_bytes = files.model_path.read_bytes()
        seeded = reproducible_noise(model_bytes)
        session: Any = onnxruntime.InferenceSession(
            seeded or model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        if seeded is not None:
            session = SeededSession(session)
        self._voice: Any = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        self.model_sample_rate: int = self._voice.config.sample_rate
        self.n_speakers: int = self._voice.config.num_speakers

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

    def synthesize(self, text: str, voice: str) -> Iterator[SpeechPiece]:
        """Speak ``text``; one piece per sentence Piper finds in it."""
        from piper.config import SynthesisConfig

        settings = voice_settings(voice)
        config = SynthesisConfig(
            speaker_id=settings.speaker % self.n_speakers if self.n_speakers > 1 else None,
            length_scale=settings.length_scale * settings.pitch,
            noise_scale=settings.noise_scale,
            noise_w_scale=0.0,
            volume=PEAK_VOLUME,
        )
        play_rate = self.play_rate(voice)
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield SpeechPiece(chunk.audio_float_array, play_rate)
