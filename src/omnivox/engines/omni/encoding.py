"""Turn a ``ChatPrompt`` into the thinker's input: token ids and Whisper features.

Each clip becomes 128-bin log-mel features (100 frames/s) with an attention
mask, and its place in the prompt becomes a start token, one placeholder per
audio-encoder output, and an end token. The family's ``AudioLayout`` says how:

- Qwen2.5-Omni (``QWEN2_5_AUDIO``): a clip is cut into pieces of at most 30 s
  (the encoder's window; transformers' processor would silently truncate
  longer audio), each padded to 30 s, each its own ``<|audio_bos|>`` +
  ``<|AUDIO|>`` x n + ``<|audio_eos|>`` with two stride-2 stages: 25 tokens/s;
- Qwen3-Omni (``qwen3_audio``): a clip of any length is one block,
  ``<|audio_start|>`` + ``<|audio_pad|>`` x n + ``<|audio_end|>``; its encoder
  cuts the features into windows of ``2 x n_window`` frames itself and makes 13
  tokens of each 100-frame window (three stride-2 stages), so ~13 tokens/s.

Template text is tokenized with its special tokens; the client's text with
``split_special_tokens``.

Runs on a worker thread in ``prepare``, never on the model's thread. Knows
nothing of the model's weights; it needs the tokenizer and feature extractor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnivox.audio import INPUT_SAMPLE_RATE
from omnivox.audio.pcm import resample
from omnivox.engines.base import AudioClip
from omnivox.engines.omni.prompt import ChatPrompt, Markup


@dataclass(frozen=True, slots=True)
class AudioLayout:
    """How a family's prompt holds a clip."""

    start: str
    placeholder: str
    end: str
    tokens_for_frames: Callable[[int], int]  # feature frames -> placeholders
    segment_s: int | None  # clips are cut into pieces this long (None: never)


@dataclass(frozen=True, slots=True)
class EncodedPrompt:
    """The engine's payload: what the thinker's prefill needs, reusable for n choices.

    ``input_features`` is a float32 CPU tensor [segments, mel_bins, frames] (or
    None without audio) and ``feature_attention_mask`` its [segments, frames].
    """

    input_ids: tuple[int, ...]
    input_features: Any
    feature_attention_mask: Any
    audio_tokens: int
    transcript_tokens: int

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def audio_token_count(n_frames: int) -> int:
    """Tokens Qwen2.5-Omni's audio encoder makes of ``n_frames`` feature frames."""
    after_conv = (n_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


def _halved_three_times(n_frames: int) -> int:
    for _ in range(3):
        n_frames = (n_frames - 1) // 2 + 1 if n_frames > 0 else 0
    return n_frames


def qwen3_audio_token_count(n_frames: int, n_window: int = 50) -> int:
    """Tokens Qwen3-Omni's audio encoder makes of ``n_frames`` feature frames: it
    cuts them into windows of ``2 x n_window`` frames and halves each three times."""
    window = 2 * n_window
    whole, rest = divmod(n_frames, window)
    return whole * _halved_three_times(window) + _halved_three_times(rest)


QWEN2_5_AUDIO = AudioLayout(
    "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", audio_token_count, segment_s=30
)


def qwen3_audio(n_window: int) -> AudioLayout:
    return AudioLayout(
        "<|audio_start|>",
        "<|audio_pad|>",
        "<|audio_end|>",
        lambda n_frames: qwen3_audio_token_count(n_frames, n_window),
        segment_s=None,
    )


class PromptEncoder:
    def __init__(
        self, tokenizer: Any, feature_extractor: Any, layout: AudioLayout = QWEN2_5_AUDIO
    ) -> None:
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.layout = layout
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", INPUT_SAMPLE_RATE))

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text, trusted=False))

    def encode(self, prompt: ChatPrompt) -> EncodedPrompt:
        import torch

        per_piece = [self._segments(piece) for piece in prompt.pieces]
        segments = [segment for piece_segments in per_piece for segment in piece_segments]
        features = mask = None
        token_counts: list[int] = []
        layout = self.layout
        if segments:
            cut = layout.segment_s is not None
            extracted = self.feature_extractor(
                segments,
                sampling_rate=self.sample_rate,
                return_attention_mask=True,
                padding="max_length" if cut else "longest",
                truncation=cut,
                return_tensors="pt",
            )
            features = extracted["input_features"].to(torch.float32)
            mask = extracted["attention_mask"].to(torch.long)
            token_counts = [layout.tokens_for_frames(int(n)) for n in mask.sum(-1).tolist()]
        ids: list[int] = []
        counts = iter(token_counts)
        for piece, piece_segments in zip(prompt.pieces, per_piece, strict=True):
            if isinstance(piece, AudioClip):
                for _ in piece_segments:
                    block = layout.start + layout.placeholder * next(counts) + layout.end
                    ids.extend(self._ids(block, trusted=True))
            else:
                ids.extend(self._ids(piece, trusted=isinstance(piece, Markup)))
        transcript_tokens = sum(self.count_tokens(t) for t in prompt.audio_transcripts)
        return EncodedPrompt(tuple(ids), features, mask, sum(token_counts), transcript_tokens)

    def _segments(self, piece: object) -> list[np.ndarray]:
        if not isinstance(piece, AudioClip) or len(piece.samples) == 0:
            return []
        samples = resample(piece.samples, piece.sample_rate, self.sample_rate)
        if self.layout.segment_s is None:
            return [samples]
        step = self.layout.segment_s * self.sample_rate
        return [samples[i : i + step] for i in range(0, len(samples), step)]

    def _ids(self, text: str, *, trusted: bool) -> list[int]:
        encoded = self.tokenizer(text, add_special_tokens=False, split_special_tokens=not trusted)
        return list(encoded["input_ids"])
