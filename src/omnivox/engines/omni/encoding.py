"""Turn a ``ChatPrompt`` into the thinker's input: token ids and Whisper features.

Each clip is cut into pieces of at most 30 s (the feature extractor's window;
transformers' processor would silently truncate longer audio), each piece
becomes 128-bin log-mel features padded to 30 s with an attention mask, and
its place in the prompt becomes ``<|audio_bos|>`` + ``<|AUDIO|>`` x n +
``<|audio_eos|>``, n being what the audio encoder makes of it (two stride-2
stages: 100 frames/s -> 25 tokens/s). Template text is tokenized with its
special tokens; the client's text with ``split_special_tokens``.

Runs on a worker thread in ``prepare``, never on the model's thread. Knows
nothing of the model's weights; it needs the tokenizer and feature extractor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from omnivox.audio import INPUT_SAMPLE_RATE
from omnivox.audio.pcm import resample
from omnivox.engines.base import AudioClip
from omnivox.engines.omni.prompt import ChatPrompt, Markup

SEGMENT_S = 30  # the feature extractor's window
AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_BOS = "<|audio_bos|>"
AUDIO_EOS = "<|audio_eos|>"


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
    """Tokens the audio encoder makes of ``n_frames`` feature frames."""
    after_conv = (n_frames - 1) // 2 + 1
    return (after_conv - 2) // 2 + 1


class PromptEncoder:
    def __init__(self, tokenizer: Any, feature_extractor: Any) -> None:
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.sample_rate = int(getattr(feature_extractor, "sampling_rate", INPUT_SAMPLE_RATE))

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text, trusted=False))

    def encode(self, prompt: ChatPrompt) -> EncodedPrompt:
        import torch

        per_piece = [self._segments(piece) for piece in prompt.pieces]
        segments = [segment for piece_segments in per_piece for segment in piece_segments]
        features = mask = None
        token_counts: list[int] = []
        if segments:
            extracted = self.feature_extractor(
                segments,
                sampling_rate=self.sample_rate,
                return_attention_mask=True,
                padding="max_length",
                return_tensors="pt",
            )
            features = extracted["input_features"].to(torch.float32)
            mask = extracted["attention_mask"].to(torch.long)
            token_counts = [audio_token_count(int(n)) for n in mask.sum(-1).tolist()]
        ids: list[int] = []
        counts = iter(token_counts)
        for piece, piece_segments in zip(prompt.pieces, per_piece, strict=True):
            if isinstance(piece, AudioClip):
                for _ in piece_segments:
                    block = AUDIO_BOS + AUDIO_TOKEN * next(counts) + AUDIO_EOS
                    ids.extend(self._ids(block, trusted=True))
            else:
                ids.extend(self._ids(piece, trusted=isinstance(piece, Markup)))
        transcript_tokens = sum(self.count_tokens(t) for t in prompt.audio_transcripts)
        return EncodedPrompt(tuple(ids), features, mask, sum(token_counts), transcript_tokens)

    def _segments(self, piece: object) -> list[np.ndarray]:
        if not isinstance(piece, AudioClip) or len(piece.samples) == 0:
            return []
        samples = resample(piece.samples, piece.sample_rate, self.sample_rate)
        step = SEGMENT_S * self.sample_rate
        return [samples[i : i + step] for i in range(0, len(samples), step)]

    def _ids(self, text: str, *, trusted: bool) -> list[int]:
        encoded = self.tokenizer(text, add_special_tokens=False, split_special_tokens=not trusted)
        return list(encoded["input_ids"])
