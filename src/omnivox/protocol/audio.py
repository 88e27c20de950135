"""The audio endpoints' wire format: ``/v1/audio/speech``, ``/transcriptions``, ``/translations``.

Requests as OpenAI names their fields. Speech is a JSON body whose unknown
fields are ignored, as OpenAI ignores them there. Transcriptions and
translations are multipart forms: every field arrives as text (arrays as
repeated ``name[]`` fields, booleans as "true"), so their models are lax (a
"0.2" temperature is a number) and ignore fields they do not know, as OpenAI's
form parser does; the ``file`` part is checked by the server. Responses are the
shapes the official SDK parses (``Transcription``, ``TranscriptionVerbose``,
the stream events of both endpoints).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from omnivox.protocol.requests import VoiceId
from omnivox.protocol.responses import WireOut

MAX_SPEECH_INPUT_CHARS = 4096
MAX_INSTRUCTIONS_CHARS = 4096
MIN_SPEED = 0.25
MAX_SPEED = 4.0

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
Granularity = Literal["word", "segment"]


# ---- requests --------------------------------------------------------------------------------


class CreateSpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT_CHARS)
    voice: str | VoiceId
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS_CHARS)
    stream_format: Literal["audio", "sse"] = "audio"


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    prompt: str | None = None
    response_format: TranscriptFormat = "json"
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)


class CreateTranslationForm(_Form):
    pass


class CreateTranscriptionForm(_Form):
    language: str | None = Field(default=None, pattern=r"^[a-zA-Z]{2,3}$")
    timestamp_granularities: list[Granularity] = ["segment"]
    include: list[Literal["logprobs"]] = Field(default_factory=list)
    stream: bool = False
    chunking_strategy: Any = None  # "auto" or a server_vad object: speech is always cut at pauses


# ---- responses -------------------------------------------------------------------------------


class UsageTokensDetails(WireOut):
    text_tokens: int
    audio_tokens: int


class TranscriptionUsage(WireOut):
    """Usage in tokens: audio in at 10 per second, the prompt and the transcript as text."""

    type: Literal["tokens"] = "tokens"
    input_tokens: int
    input_token_details: UsageTokensDetails
    output_tokens: int
    total_tokens: int


class DurationUsage(WireOut):
    type: Literal["duration"] = "duration"
    seconds: float


class Logprob(WireOut):
    token: str
    logprob: float
    bytes: list[int]


class Transcription(WireOut):
    omit_unless_set = frozenset({"logprobs"})

    text: str
    logprobs: list[Logprob] | None = None
    usage: TranscriptionUsage | DurationUsage  # whisper-1 is billed by duration


class Word(WireOut):
    word: str
    start: float
    end: float


class Segment(WireOut):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class VerboseTranscription(WireOut):
    """``verbose_json``: ``segments`` and ``words`` as ``timestamp_granularities`` ask."""

    omit_unless_set = frozenset({"segments", "words"})

    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[Segment] | None = None
    words: list[Word] | None = None
    usage: DurationUsage


class TranscriptTextDelta(WireOut):
    omit_unless_set = frozenset({"logprobs"})

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str
    logprobs: list[Logprob] | None = None


class TranscriptTextDone(WireOut):
    omit_unless_set = frozenset({"logprobs"})

    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    logprobs: list[Logprob] | None = None
    usage: TranscriptionUsage


class SpeechUsage(WireOut):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDelta(WireOut):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str  # base64 of the bytes in the requested format


class SpeechAudioDone(WireOut):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage
