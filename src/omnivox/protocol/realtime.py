"""The client events of OpenAI's Realtime API (GA) that omnivox reads, as pydantic models.

Each model forbids unknown keys, as OpenAI does: ``session.update`` with a key it
does not know is refused whole (``unknown_parameter``, its ``param`` the key's path
under ``session``). A realtime session's update and a transcription session's
update are told apart by ``session.type``. What the server sends is built as plain
JSON in ``serving.realtime``, in the shapes of the SDK's ``RealtimeServerEvent``.

``POST /v1/realtime/client_secrets`` (``ClientSecretCreateRequest``) takes a session of
either type with the same models, so a minted session is checked exactly as an update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from omnivox.protocol.requests import FUNCTION_NAME_PATTERN, checked_metadata, tagged_union

MIN_SECRET_TTL_S = 10
MAX_SECRET_TTL_S = 7200  # two hours
DEFAULT_SECRET_TTL_S = 600


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AudioFormat(_Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: Literal[24000] | None = None


class ServerVad(_Strict):
    type: Literal["server_vad"]
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    prefix_padding_ms: Annotated[int, Field(ge=0, le=10_000)] | None = None
    silence_duration_ms: Annotated[int, Field(ge=0, le=10_000)] | None = None
    idle_timeout_ms: Annotated[int, Field(ge=5_000, le=30_000)] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class SemanticVad(_Strict):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class InputTranscription(_Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class NoiseReduction(_Strict):
    type: Literal["near_field", "far_field"]


class AudioInput(_Strict):
    format: AudioFormat | None = None
    transcription: InputTranscription | None = None
    noise_reduction: NoiseReduction | None = None
    turn_detection: TurnDetection | None = None


class VoiceId(_Strict):
    id: str


class AudioOutput(_Strict):
    format: AudioFormat | None = None
    voice: str | VoiceId | None = None
    speed: Annotated[float, Field(ge=0.25, le=1.5)] | None = None


class AudioConfig(_Strict):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class NamedFunction(_Strict):
    type: Literal["function"]
    name: str


ToolChoice = Literal["auto", "none", "required"] | NamedFunction
MaxOutputTokens = Annotated[int, Field(ge=1, le=4096)] | Literal["inf"]
Modalities = Annotated[list[Literal["text", "audio"]], Field(min_length=1, max_length=1)]
Include = list[Literal["item.input_audio_transcription.logprobs"]]


class TokenLimits(_Strict):
    post_instructions: Annotated[int, Field(ge=1)] | None = None


class RetentionRatio(_Strict):
    """OpenAI's ``retention_ratio`` truncation (how it cuts: docs/wire-format.md)."""

    type: Literal["retention_ratio"]
    retention_ratio: Annotated[float, Field(ge=0.0, le=1.0)]
    token_limits: TokenLimits | None = None


class SessionUpdate(_Strict):
    """``session.update``'s ``session`` for a realtime session: only the keys present change it."""

    type: Literal["realtime"]
    model: str | None = None
    output_modalities: Modalities | None = None
    instructions: str | None = None
    audio: AudioConfig | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    max_output_tokens: MaxOutputTokens | None = None
    include: Include | None = None
    tracing: Literal["auto"] | dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | RetentionRatio | None = None
    parallel_tool_calls: bool | None = None


class TranscriptionAudioInput(_Strict):
    format: AudioFormat | None = None
    transcription: InputTranscription | None = None
    noise_reduction: NoiseReduction | None = None
    turn_detection: TurnDetection | None = None


class TranscriptionAudio(_Strict):
    input: TranscriptionAudioInput | None = None


class TranscriptionSessionUpdate(_Strict):
    """``session.update``'s ``session`` for a transcription session (``?intent=transcription``)."""

    type: Literal["transcription"]
    audio: TranscriptionAudio | None = None
    include: Include | None = None


class ExpiresAfter(_Strict):
    anchor: Literal["created_at"] = "created_at"
    seconds: Annotated[int, Field(ge=MIN_SECRET_TTL_S, le=MAX_SECRET_TTL_S)] = DEFAULT_SECRET_TTL_S


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    SecretSession = SessionUpdate | TranscriptionSessionUpdate
else:  # a missing or unknown ``session.type`` is one error naming it
    SecretSession = tagged_union("type", SessionUpdate, TranscriptionSessionUpdate)


class ClientSecretCreateRequest(_Strict):
    """``POST /v1/realtime/client_secrets``: how long the secret lives, and its session."""

    expires_after: ExpiresAfter | None = None
    session: SecretSession | None = None


class SessionUpdateEvent(_Strict):
    type: Literal["session.update"]
    event_id: str | None = None
    session: SessionUpdate


class TranscriptionSessionUpdateEvent(_Strict):
    type: Literal["session.update"]
    event_id: str | None = None
    session: TranscriptionSessionUpdate


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class InputAudioContent(_Strict):
    type: Literal["input_audio"]
    audio: str
    transcript: str | None = None


class OutputText(_Strict):
    type: Literal["output_text", "text"]
    text: str


class OutputAudioContent(_Strict):
    type: Literal["output_audio", "audio"]
    audio: str | None = None
    transcript: str | None = None


ItemStatus = Literal["completed", "incomplete", "in_progress"]


class UserMessage(_Strict):
    type: Literal["message"]
    role: Literal["user"]
    content: list[Annotated[InputText | InputAudioContent, Field(discriminator="type")]]
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class SystemMessage(_Strict):
    type: Literal["message"]
    role: Literal["system"]
    content: list[InputText]
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class AssistantMessage(_Strict):
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[OutputText | OutputAudioContent]
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


Message = Annotated[UserMessage | SystemMessage | AssistantMessage, Field(discriminator="role")]


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str
    output: str
    id: str | None = None
    object: Literal["realtime.item"] | None = None
    status: ItemStatus | None = None


class ItemReference(_Strict):
    type: Literal["item_reference"]
    id: str


Item = Annotated[Message | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")]
ResponseInput = Annotated[
    Message | FunctionCallItem | FunctionCallOutputItem | ItemReference,
    Field(discriminator="type"),
]


class ItemCreate(_Strict):
    """``conversation.item.create``: an item added to the conversation."""

    type: Literal["conversation.item.create"]
    event_id: str | None = None
    previous_item_id: str | None = None
    item: Item


class ItemTruncate(_Strict):
    type: Literal["conversation.item.truncate"]
    event_id: str | None = None
    item_id: str
    content_index: Annotated[int, Field(ge=0)]
    audio_end_ms: Annotated[int, Field(ge=0)]


class ResponseAudio(_Strict):
    output: AudioOutput | None = None


class ResponseParams(_Strict):
    """``response.create``'s ``response``: this response's settings over the session's."""

    output_modalities: Modalities | None = None
    instructions: str | None = None
    audio: ResponseAudio | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    max_output_tokens: MaxOutputTokens | None = None
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = None

    _metadata_size = field_validator("metadata")(classmethod(lambda cls, v: checked_metadata(v)))
    conversation: Literal["auto", "none"] | None = None
    input: list[ResponseInput] | None = None


class ResponseCreate(_Strict):
    type: Literal["response.create"]
    event_id: str | None = None
    response: ResponseParams | None = None
