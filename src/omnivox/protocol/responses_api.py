"""The request side of ``POST /v1/responses`` (OpenAI's Responses API), field by field.

As for chat (``protocol.requests``), the schema checks what one field can check;
what needs the engine or the stored conversation lives in ``serving.responses_api``,
which answers a request through the chat path. Models are strict and forbid unknown
keys (400 ``unknown_parameter``). Parameters OpenAI defines that omnivox does not
serve (``conversation``, ``prompt``, hosted tools, images and files...) are parsed
only so that they can be refused in words, naming the parameter.

Spoken input is an ``input_audio`` part of a user message, in the formats chat takes;
audio output is not part of the Responses API, so there is none here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from omnivox.protocol.requests import (
    FUNCTION_NAME_PATTERN,
    InputAudio,
    ServiceTier,
    WireModel,
    _HashableDict,
    checked_metadata,
    tagged_union,
)

MIN_OUTPUT_TOKENS = 16  # OpenAI's floor for max_output_tokens
MAX_INSTRUCTIONS_CHARS = 1_048_576  # as OpenAI: 1 Mi characters
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# OpenAI's includables: accepted; all but the logprobs concern items omnivox never makes
# (hosted tools' results, images, reasoning), so there is nothing for them to add.
INCLUDABLES = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    LOGPROBS_INCLUDE,
)


class LooseModel(WireModel):
    """A part, item or tool omnivox does not serve: parsed loosely, refused in words."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)


def picked_union(pick: Any, allowed: str, **branches: Any) -> Any:
    """A union whose branch ``pick(data)`` names (a key of ``branches``); a value it
    names none for is one ``invalid_union_member`` error listing ``allowed``."""
    tagged = tuple(Annotated[branch, Tag(name)] for name, branch in branches.items())
    return Annotated[
        Union[tagged],  # noqa: UP007
        Discriminator(
            pick,
            custom_error_type="invalid_union_member",
            custom_error_message="invalid union member",
            custom_error_context=_HashableDict(key="type", allowed=allowed),  # type: ignore[arg-type]
        ),
    ]


# ---- content parts -----------------------------------------------------------------------------


class InputTextPart(WireModel):
    type: Literal["input_text"]
    text: str


class InputAudioPart(WireModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


class InputImagePart(LooseModel):
    type: Literal["input_image"]


class InputFilePart(LooseModel):
    type: Literal["input_file"]


class OutputTextPart(WireModel):
    """Earlier output given back: its annotations and logprobs are accepted, not read."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class RefusalPart(WireModel):
    type: Literal["refusal"]
    refusal: str


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    ContentPart = (
        InputTextPart
        | InputAudioPart
        | InputImagePart
        | InputFilePart
        | OutputTextPart
        | RefusalPart
    )
else:
    ContentPart = tagged_union(
        "type",
        InputTextPart,
        InputAudioPart,
        InputImagePart,
        InputFilePart,
        OutputTextPart,
        RefusalPart,
    )


# ---- input items -------------------------------------------------------------------------------


class MessageItem(WireModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(WireModel):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(WireModel):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class OtherItem(LooseModel):
    """Any other item type OpenAI defines (item references, reasoning, hosted tool calls)."""

    type: str


def _item_kind(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    kind = data.get("type", "message" if "role" in data else None)
    if kind in ("message", "function_call", "function_call_output"):
        return kind
    return "other" if isinstance(kind, str) else None


if TYPE_CHECKING:  # the same union, spelled so that type checkers can read it
    InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | OtherItem
else:
    InputItem = picked_union(
        _item_kind,
        "message,function_call,function_call_output",
        message=MessageItem,
        function_call=FunctionCallItem,
        function_call_output=FunctionCallOutputItem,
        other=OtherItem,
    )


# ---- tools, formats, options -------------------------------------------------------------------


class FunctionTool(WireModel):
    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class OtherTool(LooseModel):
    """A hosted tool (web_search, file_search, mcp, ...): refused in words."""

    type: str


def _tool_kind(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    return "function" if data["type"] == "function" else "other"


if TYPE_CHECKING:
    Tool = FunctionTool | OtherTool
else:
    Tool = picked_union(_tool_kind, "function", function=FunctionTool, other=OtherTool)


class NamedFunctionChoice(WireModel):
    type: Literal["function"]
    name: str


class AllowedTools(WireModel):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]] = Field(min_length=1)


class OtherToolChoice(LooseModel):
    type: str


def _choice_kind(data: Any) -> str | None:
    if isinstance(data, str):
        return "mode"
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    return data["type"] if data["type"] in ("function", "allowed_tools") else "other"


if TYPE_CHECKING:
    ToolChoice = Literal["none", "auto", "required"] | NamedFunctionChoice | AllowedTools
else:
    ToolChoice = picked_union(
        _choice_kind,
        "function,allowed_tools",
        mode=Literal["none", "auto", "required"],
        function=NamedFunctionChoice,
        allowed_tools=AllowedTools,
        other=OtherToolChoice,
    )


class FormatText(WireModel):
    type: Literal["text"]


class FormatJSONObject(WireModel):
    type: Literal["json_object"]


class FormatJSONSchema(WireModel):
    type: Literal["json_schema"]
    name: str = Field(pattern=FUNCTION_NAME_PATTERN)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


if TYPE_CHECKING:
    TextFormat = FormatText | FormatJSONObject | FormatJSONSchema
else:
    TextFormat = tagged_union("type", FormatText, FormatJSONObject, FormatJSONSchema)


class TextConfig(WireModel):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(WireModel):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(WireModel):
    include_obfuscation: bool | None = None


# Parameters OpenAI defines that omnivox does not serve: refused with their name when set.
UNSUPPORTED_PARAMETERS = (
    "conversation",
    "prompt",
    "context_management",
    "background_options",
    "moderation",
    "image",
    "access_programs",
    "prompt_cache_options",
)


class CreateResponseRequest(WireModel):
    model: str
    input: str | Annotated[list[InputItem], Field(min_length=1)] | None = None
    instructions: str | None = Field(default=None, max_length=MAX_INSTRUCTIONS_CHARS)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    max_output_tokens: int | None = Field(default=None, ge=MIN_OUTPUT_TOKENS)
    max_tool_calls: int | None = Field(default=None, ge=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    include: list[Literal[INCLUDABLES]] | None = None  # type: ignore[valid-type]
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: ReasoningConfig | None = None
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=128)
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: ServiceTier | None = None
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    background_options: Any = None
    moderation: Any = None
    image: Any = None
    access_programs: Any = None
    prompt_cache_options: Any = None

    _metadata_size = field_validator("metadata")(classmethod(lambda cls, v: checked_metadata(v)))

    @property
    def streaming(self) -> bool:
        return bool(self.stream)

    @property
    def stored(self) -> bool:
        return self.store is not False

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.include and LOGPROBS_INCLUDE in self.include)


class ListInputItemsQuery(BaseModel):
    """The query of ``GET /v1/responses/{id}/input_items`` (``include`` concerns images
    only, which omnivox does not take, so it is accepted and has nothing to add)."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
