"""The request side of ``POST /v1/chat/completions``, field by field as OpenAI names it.

The schema is the validator: every rule a single field can check (types,
ranges, enums, lengths, patterns) lives here; rules that need the engine or
the store (voices, audio ids, context length) live in ``serving``. Models are
strict (no string-to-number coercion) and forbid unknown keys, which become
400 ``unknown_parameter`` (see ``protocol.validation``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

FUNCTION_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
MAX_STOP_SEQUENCES = 4
MAX_METADATA_PAIRS = 16

AudioFormat = Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class _HashableDict(dict[str, str]):
    """Error context that ``typing.Union`` can hash when it deduplicates members."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


TAG_PREFIX = "~"  # marks union branch labels in error locations; no wire key starts with it


STRING_TAG = TAG_PREFIX + TAG_PREFIX + "string"  # the branch of a bare string, where allowed


def tagged_union(key: str, *models: type[WireModel], strings: Any = None) -> Any:
    """A union chosen by the value of ``key`` ("type" or "role").

    Branch labels in error locations are ``~<value>`` so that ``validation``
    can tell them from field names; a bad or missing tag is one
    ``invalid_union_member`` error that lists the allowed values. With
    ``strings`` (a ``Literal``), a bare string is validated against it instead.
    """
    values = [m.model_fields[key].annotation.__args__[0] for m in models]  # type: ignore[union-attr]

    def pick(data: Any) -> str | None:
        if strings is not None and isinstance(data, str):
            return STRING_TAG
        tag = data.get(key) if isinstance(data, dict) else None
        return TAG_PREFIX + tag if isinstance(tag, str) and tag in values else None

    branches = tuple(Annotated[m, Tag(TAG_PREFIX + v)] for m, v in zip(models, values, strict=True))
    if strings is not None:
        branches = (Annotated[strings, Tag(STRING_TAG)], *branches)
    return Annotated[
        Union[branches],  # noqa: UP007
        Discriminator(
            pick,
            custom_error_type="invalid_union_member",
            custom_error_message="invalid union member",
            custom_error_context=_HashableDict(key=key, allowed=",".join(values)),  # type: ignore[arg-type]
        ),
    ]


def checked_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's metadata rules: at most 16 pairs, keys of at most 64 characters."""
    if value is None:
        return value
    if len(value) > MAX_METADATA_PAIRS:
        raise ValueError(
            f"object_above_max_properties:Expected an object with at most "
            f"{MAX_METADATA_PAIRS} properties, but got an object with {len(value)} "
            "properties instead."
        )
    long_keys = [k for k in value if len(k) > 64]
    if long_keys:
        raise ValueError(
            f"string_above_max_length:Expected a key with maximum length 64, but got a "
            f"key with length {len(long_keys[0])} instead."
        )
    return value


# ---- content parts ---------------------------------------------------------------------------


class ChatCompletionContentPartText(WireModel):
    type: Literal["text"]
    text: str
    prompt_cache_breakpoint: dict[str, Any] | None = None


class InputAudio(WireModel):
    data: str
    # OpenAI accepts wav and mp3; omnivox also decodes these containers (documented extension).
    format: Literal["wav", "mp3", "flac", "ogg", "opus", "webm", "m4a"]


class ChatCompletionContentPartInputAudio(WireModel):
    type: Literal["input_audio"]
    input_audio: InputAudio
    prompt_cache_breakpoint: dict[str, Any] | None = None


class ImageURL(WireModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ChatCompletionContentPartImage(WireModel):
    type: Literal["image_url"]
    image_url: ImageURL


class FileObject(WireModel):
    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class ChatCompletionContentPartFile(WireModel):
    type: Literal["file"]
    file: FileObject


class ChatCompletionContentPartRefusal(WireModel):
    type: Literal["refusal"]
    refusal: str


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    UserContentPart = (
        ChatCompletionContentPartText
        | ChatCompletionContentPartInputAudio
        | ChatCompletionContentPartImage
        | ChatCompletionContentPartFile
    )
else:
    UserContentPart = tagged_union(
        "type",
        ChatCompletionContentPartText,
        ChatCompletionContentPartInputAudio,
        ChatCompletionContentPartImage,
        ChatCompletionContentPartFile,
    )
if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    AssistantContentPart = ChatCompletionContentPartText | ChatCompletionContentPartRefusal
else:
    AssistantContentPart = tagged_union(
        "type", ChatCompletionContentPartText, ChatCompletionContentPartRefusal
    )


# ---- messages --------------------------------------------------------------------------------


class ChatCompletionSystemMessageParam(WireModel):
    role: Literal["system"]
    content: str | list[ChatCompletionContentPartText]
    name: str | None = None


class ChatCompletionDeveloperMessageParam(WireModel):
    role: Literal["developer"]
    content: str | list[ChatCompletionContentPartText]
    name: str | None = None


class ChatCompletionUserMessageParam(WireModel):
    role: Literal["user"]
    content: str | list[UserContentPart]
    name: str | None = None


class AssistantAudio(WireModel):
    """A reference to an earlier spoken answer; only ``id`` is used.

    The other three are accepted (and ignored) because the SDK sends them when a
    client appends ``completion.choices[0].message`` to its history, as OpenAI's
    own examples do.
    """

    id: str
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class FunctionCall(WireModel):
    name: str
    arguments: str
    # The SDKs' ``parse()`` helpers add the decoded arguments to the calls they return;
    # a client that sends such a message back in its history sends them too. Ignored.
    parsed_arguments: Any = None


class ChatCompletionMessageToolCallParam(WireModel):
    id: str
    type: Literal["function"]
    function: FunctionCall
    index: int | None = None  # present when the call comes from the SDK's stream helper


class ChatCompletionAssistantMessageParam(WireModel):
    role: Literal["assistant"]
    content: str | list[AssistantContentPart] | None = None
    refusal: str | None = None
    name: str | None = None
    audio: AssistantAudio | None = None
    tool_calls: list[ChatCompletionMessageToolCallParam] | None = Field(default=None, min_length=1)
    function_call: FunctionCall | None = None
    # Echoed back when a client appends a response message to its history; ignored.
    annotations: list[dict[str, Any]] | None = None
    parsed: Any = None  # the SDKs' ``parse()`` helpers' decoded content, echoed back; ignored


class ChatCompletionToolMessageParam(WireModel):
    role: Literal["tool"]
    tool_call_id: str
    content: str | list[ChatCompletionContentPartText]


class ChatCompletionFunctionMessageParam(WireModel):
    role: Literal["function"]
    name: str
    content: str | None


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    ChatCompletionMessageParam = (
        ChatCompletionSystemMessageParam
        | ChatCompletionDeveloperMessageParam
        | ChatCompletionUserMessageParam
        | ChatCompletionAssistantMessageParam
        | ChatCompletionToolMessageParam
        | ChatCompletionFunctionMessageParam
    )
else:
    ChatCompletionMessageParam = tagged_union(
        "role",
        ChatCompletionSystemMessageParam,
        ChatCompletionDeveloperMessageParam,
        ChatCompletionUserMessageParam,
        ChatCompletionAssistantMessageParam,
        ChatCompletionToolMessageParam,
        ChatCompletionFunctionMessageParam,
    )


# ---- output audio, streaming, formats, tools ---------------------------------------------------


class VoiceId(WireModel):
    id: str


class ChatCompletionAudioParam(WireModel):
    voice: str | VoiceId
    format: AudioFormat


class ChatCompletionStreamOptionsParam(WireModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ResponseFormatText(WireModel):
    type: Literal["text"]


class ResponseFormatJSONObject(WireModel):
    type: Literal["json_object"]


class JSONSchema(WireModel):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatJSONSchema(WireModel):
    type: Literal["json_schema"]
    json_schema: JSONSchema


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    ResponseFormat = ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema
else:
    ResponseFormat = tagged_union(
        "type", ResponseFormatText, ResponseFormatJSONObject, ResponseFormatJSONSchema
    )


class FunctionDefinition(WireModel):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatCompletionFunctionToolParam(WireModel):
    type: Literal["function"]
    function: FunctionDefinition


class ChatCompletionCustomToolParam(WireModel):
    """A custom tool, in ``tools`` or named in ``tool_choice``: parsed loosely only so
    that ``serving`` can refuse it in words (custom tools are not supported)."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)
    type: Literal["custom"]


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    ChatCompletionToolParam = ChatCompletionFunctionToolParam | ChatCompletionCustomToolParam
else:
    ChatCompletionToolParam = tagged_union(
        "type", ChatCompletionFunctionToolParam, ChatCompletionCustomToolParam
    )


class NamedFunction(WireModel):
    name: str


class ChatCompletionNamedToolChoiceParam(WireModel):
    type: Literal["function"]
    function: NamedFunction


ChatCompletionNamedToolChoiceCustomParam = ChatCompletionCustomToolParam


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    AllowedTool = ChatCompletionNamedToolChoiceParam | ChatCompletionNamedToolChoiceCustomParam
else:
    AllowedTool = tagged_union(
        "type", ChatCompletionNamedToolChoiceParam, ChatCompletionNamedToolChoiceCustomParam
    )


class ChatCompletionAllowedToolsParam(WireModel):
    mode: Literal["auto", "required"]
    tools: list[AllowedTool] = Field(min_length=1)


class ChatCompletionAllowedToolChoiceParam(WireModel):
    type: Literal["allowed_tools"]
    allowed_tools: ChatCompletionAllowedToolsParam


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    ToolChoiceOption = (
        Literal["none", "auto", "required"]
        | ChatCompletionNamedToolChoiceParam
        | ChatCompletionAllowedToolChoiceParam
        | ChatCompletionNamedToolChoiceCustomParam
    )
else:
    ToolChoiceOption = tagged_union(
        "type",
        ChatCompletionNamedToolChoiceParam,
        ChatCompletionAllowedToolChoiceParam,
        ChatCompletionNamedToolChoiceCustomParam,
        strings=Literal["none", "auto", "required"],
    )
FunctionCallOption = Literal["none", "auto"] | NamedFunction


class PredictionContent(WireModel):
    type: Literal["content"]
    content: str | list[ChatCompletionContentPartText]


# ---- the request -------------------------------------------------------------------------------


class CreateChatCompletionRequest(WireModel):
    model: str
    messages: list[ChatCompletionMessageParam] = Field(min_length=1)
    modalities: list[Literal["text", "audio"]] | None = None
    audio: ChatCompletionAudioParam | None = None
    stream: bool | None = None
    stream_options: ChatCompletionStreamOptionsParam | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | Annotated[list[str], Field(min_length=1, max_length=MAX_STOP_SEQUENCES)] | None = (
        None
    )
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    response_format: ResponseFormat | None = None
    tools: list[ChatCompletionToolParam] | None = None
    tool_choice: ToolChoiceOption | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = Field(default=None, min_length=1, max_length=128)
    function_call: FunctionCallOption | None = None
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = None
    service_tier: ServiceTier | None = None
    prediction: PredictionContent | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None

    _metadata_size = field_validator("metadata")(classmethod(lambda cls, v: checked_metadata(v)))

    @property
    def wants_audio(self) -> bool:
        return bool(self.modalities and "audio" in self.modalities)

    @property
    def streaming(self) -> bool:
        return bool(self.stream)


# Not supported by the audio models omnivox answers to; rejected with unsupported_parameter.
UNSUPPORTED_PARAMETERS = ("prediction", "reasoning_effort", "verbosity", "web_search_options")
