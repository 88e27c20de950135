"""The response side of the wire format: completions, usage, logprobs, models.

Serialise with ``dump()``. Every field is sent (``null`` included) except the
ones a class lists in ``omit_unless_set``, which are sent only when given: that
is how ``"content": null`` is always present while a text answer has no
``audio`` key at all. ``serving.sse`` writes streamed chunks as text around the
same usage and logprobs models.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class WireOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    omit_unless_set: ClassVar[frozenset[str]] = frozenset()

    def model_post_init(self, context: Any, /) -> None:
        always = type(self).model_fields.keys() - self.omit_unless_set
        self.__pydantic_fields_set__.update(always)

    def dump(self) -> str:
        return self.model_dump_json(exclude_unset=True)


class PromptTokensDetails(WireOut):
    cached_tokens: int = 0
    audio_tokens: int = 0
    text_tokens: int = 0
    image_tokens: int = 0


class CompletionTokensDetails(WireOut):
    reasoning_tokens: int = 0
    audio_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    text_tokens: int = 0


class CompletionUsage(WireOut):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ChatCompletionAudio(WireOut):
    id: str
    data: str
    expires_at: int
    transcript: str


class Function(WireOut):
    name: str
    arguments: str


class ChatCompletionMessageToolCall(WireOut):
    id: str
    type: Literal["function"] = "function"
    function: Function


class TopLogprob(WireOut):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatCompletionTokenLogprob(WireOut):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(WireOut):
    content: list[ChatCompletionTokenLogprob] | None
    refusal: list[ChatCompletionTokenLogprob] | None


class ChatCompletionMessage(WireOut):
    omit_unless_set = frozenset({"audio", "tool_calls", "function_call"})
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None
    annotations: list[dict[str, object]]
    audio: ChatCompletionAudio | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    function_call: Function | None = None


class Choice(WireOut):
    index: int
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: FinishReason


class ChatCompletion(WireOut):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    service_tier: str
    system_fingerprint: str


class Model(WireOut):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(WireOut):
    object: Literal["list"] = "list"
    data: list[Model]
