"""Usage in text and audio tokens, as OpenAI counts it.

Audio is counted by duration: 10 tokens per second of audio the client sent,
20 per second of audio the model speaks (earlier answers referenced by audio
id are billed again at the assistant rate). Text tokens come from the
engine's own tokenizer. Totals always add up.

Completion tokens are counted as the answer is made (``OutputCount``), so an
answer cut short (the client left, the engine failed) is billed for what was
made before the cut. Audio is exact at every moment: its tokens follow from the
PCM bytes made so far. Text is exact once the engine's ``Finished`` gives its
tokenizer's count; before that each ``TextDelta`` counts the tokens its
logprobs list (one per generated token) or, without logprobs, one token, and
each ``ToolCallDelta`` that carries arguments counts one. Engines send a
delta once a token has produced text, so a delta holds at least one token and
sometimes several (a character split across tokens, text held back by a stop
sequence): the count before ``Finished`` can fall short of the tokens made but
should not exceed them, so a cut answer is not billed for more than was made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omnivox.audio import OUTPUT_BYTES_PER_S
from omnivox.protocol.requests import CreateChatCompletionRequest, InputAudio
from omnivox.protocol.responses import (
    CompletionTokensDetails,
    CompletionUsage,
    PromptTokensDetails,
)

INPUT_AUDIO_TOKENS_PER_S = 10
OUTPUT_AUDIO_TOKENS_PER_S = 20

# The prompt estimate that rate limits charge at admission, before any decoding or
# tokenizing: about 4 characters per text token and 4 tokens of framing per message
# (OpenAI's rule of thumb), audio from its encoded size: WAV as 16 kHz 16-bit mono
# speech, compressed formats at 32 kbit/s. The exact count replaces it at the end.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
ESTIMATED_AUDIO_BYTES_PER_S = {"wav": 32_000}
COMPRESSED_AUDIO_BYTES_PER_S = 4_000


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


@dataclass(slots=True)
class OutputCount:
    """One choice's completion tokens, added to ``usage`` as its events arrive."""

    usage: UsageCounter
    text_tokens: int = 0  # counted from deltas until ``finished`` gives the exact count
    pcm_bytes: int = 0

    def text(self, n_tokens: int) -> None:
        self.text_tokens += n_tokens
        self.usage.completion_text_tokens += n_tokens

    def audio(self, n_pcm_bytes: int) -> None:
        # Rounded up per choice, as a whole answer is: the tokens of the bytes so far
        # less those already counted, so the running total never drifts from it.
        before = output_audio_tokens(self.pcm_bytes)
        self.pcm_bytes += n_pcm_bytes
        self.usage.completion_audio_tokens += output_audio_tokens(self.pcm_bytes) - before

    def finished(self, n_text_tokens: int) -> None:
        """The engine's exact count replaces the one made from deltas."""
        self.usage.completion_text_tokens += n_text_tokens - self.text_tokens
        self.text_tokens = n_text_tokens


def estimate_prompt_tokens(req: CreateChatCompletionRequest) -> int:
    """A quick estimate of the prompt's tokens (see ``CHARS_PER_TOKEN``)."""
    chars = 0
    audio_tokens = 0
    for message in req.messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif content:
            for part in content:
                text = getattr(part, "text", None)
                if isinstance(text, str):
                    chars += len(text)
                audio = getattr(part, "input_audio", None)
                if isinstance(audio, InputAudio):
                    audio_tokens += _audio_estimate(audio)
        for call in getattr(message, "tool_calls", None) or ():
            chars += len(call.function.name) + len(call.function.arguments)
    if req.tools:
        chars += sum(len(tool.model_dump_json()) for tool in req.tools)
    return (
        math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(req.messages) + audio_tokens
    )


def _audio_estimate(audio: InputAudio) -> int:
    n_bytes = len(audio.data) * 3 // 4
    per_s = ESTIMATED_AUDIO_BYTES_PER_S.get(audio.format, COMPRESSED_AUDIO_BYTES_PER_S)
    return math.ceil(n_bytes / per_s * INPUT_AUDIO_TOKENS_PER_S)
