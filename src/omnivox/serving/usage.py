"""Usage in text and audio tokens, as OpenAI counts it.

Audio is counted by duration: 10 tokens per second of audio the client sent,
20 per second of audio the model speaks (earlier answers referenced by audio
id are billed again at the assistant rate). Text tokens come from the
engine's own tokenizer. Totals always add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omnivox.protocol.responses import (
    CompletionTokensDetails,
    CompletionUsage,
    PromptTokensDetails,
)

INPUT_AUDIO_TOKENS_PER_S = 10
OUTPUT_AUDIO_TOKENS_PER_S = 20
OUTPUT_BYTES_PER_S = 24_000 * 2  # 24 kHz mono s16le


def input_audio_tokens(user_s: float, assistant_s: float) -> int:
    return math.ceil(user_s * INPUT_AUDIO_TOKENS_PER_S) + math.ceil(
        assistant_s * OUTPUT_AUDIO_TOKENS_PER_S
    )


def output_audio_tokens(n_pcm_bytes: int) -> int:
    return math.ceil(n_pcm_bytes / OUTPUT_BYTES_PER_S * OUTPUT_AUDIO_TOKENS_PER_S)


@dataclass(slots=True)
class UsageCounter:
    prompt_text_tokens: int
    prompt_audio_tokens: int
    completion_text_tokens: int = 0
    completion_audio_tokens: int = 0

    def to_wire(self) -> CompletionUsage:
        prompt = self.prompt_text_tokens + self.prompt_audio_tokens
        completion = self.completion_text_tokens + self.completion_audio_tokens
        return CompletionUsage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(
                text_tokens=self.prompt_text_tokens, audio_tokens=self.prompt_audio_tokens
            ),
            completion_tokens_details=CompletionTokensDetails(
                text_tokens=self.completion_text_tokens,
                audio_tokens=self.completion_audio_tokens,
            ),
        )
