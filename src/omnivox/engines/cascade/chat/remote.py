"""The cascade's chat model on other servers: vLLM, SGLang, llama.cpp, Ollama or any
OpenAI-compatible chat server, reached through an ``UpstreamPool``.

The engine's messages go to ``POST /chat/completions`` with ``stream: true``; the
answer's text streams back token by token into the same speakable units as the
embedded model's. What the request asks for reaches the upstream in its own
dialect (``DIALECTS``): the sampling parameters as OpenAI names them, and the
grammars of tools and structured answers through the upstream's constrained
decoding (llama.cpp ``grammar``, vLLM ``structured_outputs.grammar``, SGLang
``ebnf``), so that calls and JSON answers parse as they do with the embedded
model. "auto" becomes one grammar allowing a call block or an answer
(``grammar.union``). A dialect without constrained decoding (``openai``,
``ollama``) passes a JSON schema as OpenAI's ``response_format`` and refuses tools
with a 400 that names the dialect; every other parameter the dialect lacks is a 400
too, never silently dropped.

Usage: the upstream's own counts when its stream reports them
(``stream_options.include_usage``); otherwise the tokens streamed (one per
logprob entry or chunk) and the prompt estimated from its characters.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from omnivox.engines.base import ResponseFormat, SamplingParams
from omnivox.engines.cascade.chat.model import (
    ChatPrompt,
    GenerationEnd,
    Grammar,
    GrammarBranch,
    StepGate,
    TokenPiece,
    ungated,
)
from omnivox.engines.cascade.grammar.union import either
from omnivox.engines.events import TokenLogprob
from omnivox.engines.stops import StopScanner
from omnivox.engines.upstream import UpstreamPool, split_urls
from omnivox.errors import InvalidRequestError, ModelUnavailableError, UpstreamError

Dialect = Literal["vllm", "sglang", "llamacpp", "ollama", "openai"]
DEFAULT_CONTEXT_TOKENS = 4096
CHARS_PER_TOKEN = 4  # the prompt estimate until the upstream's answer counts it
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True, slots=True)
class DialectFeatures:
    grammar_field: str | None  # where a GBNF grammar goes ("structured_outputs.grammar")
    logit_bias: bool = True
    seed: bool = True


DIALECTS: Mapping[Dialect, DialectFeatures] = {
    "llamacpp": DialectFeatures("grammar"),
    "vllm": DialectFeatures("structured_outputs.grammar"),
    "sglang": DialectFeatures("ebnf"),
    "ollama": DialectFeatures(None, logit_bias=False),
    "openai": DialectFeatures(None),
}
# What each server writes as ``owned_by`` in its /v1/models entries.
OWNERS: Mapping[str, Dialect] = {
    "vllm": "vllm",
    "sglang": "sglang",
    "llamacpp": "llamacpp",
    "me": "llamacpp",  # llama-cpp-python's server
    "library": "ollama",
    "ollama": "ollama",
}


def detect_dialect(models: Sequence[Mapping[str, Any]]) -> Dialect:
    """The dialect of a server from its ``/v1/models`` entries; "openai" when unknown."""
    for entry in models:
        owner = str(entry.get("owned_by", "")).lower()
        if owner in OWNERS:
            return OWNERS[owner]
    return "openai"


def reported_context(models: Sequence[Mapping[str, Any]], model: str) -> int | None:
    """The context window a server reports for ``model`` (vLLM: ``max_model_len``)."""
    for entry in models:
        if entry.get("id") == model:
            for key in ("max_model_len", "context_length", "n_ctx"):
                value = entry.get(key) or (entry.get("meta") or {}).get(key)
                if isinstance(value, int) and value > 0:
                    return value
    return None


class RemoteChatModel:
    def __init__(
        self,
        pool: UpstreamPool,
        model: str,
        dialect: Dialect,
        context_window_tokens: int = DEFAULT_CONTEXT_TOKENS,
    ) -> None:
        self.pool = pool
        self.model = model
        self.dialect = dialect
        self.features = DIALECTS[dialect]
        self.context_window_tokens = context_window_tokens

    @classmethod
    def connect(
        cls,
        urls: str,
        *,
        model: str | None,
        dialect: Dialect | Literal["auto"],
        context: int | None,
        api_key: str | None,
        timeout_s: float,
    ) -> RemoteChatModel:
        """Ask the upstreams what they serve; a model, dialect or context not given is
        taken from the first that answers. Raises ``ModelUnavailableError`` with one clear
        line when none answers and the model's name was not given."""
        pool = UpstreamPool(
            split_urls(urls), part="chat model", api_key=api_key, timeout_s=timeout_s
        )
        entries: list[Mapping[str, Any]] = []
        try:
            listing = pool.request("GET", "/models").json()
            entries = [e for e in listing.get("data", []) if isinstance(e, Mapping)]
        except Exception as exc:
            if model is None:
                pool.close()
                raise ModelUnavailableError(
                    f"The chat model's upstream ({urls}) did not answer GET /models ({exc}); "
                    "start it, or name its model with --llm-model."
                ) from exc
        if model is None:
            if not entries:
                pool.close()
                raise ModelUnavailableError(f"The chat model's upstream ({urls}) lists no model.")
            model = str(entries[0]["id"])
        chosen: Dialect = detect_dialect(entries) if dialect == "auto" else dialect
        window = context or reported_context(entries, model) or DEFAULT_CONTEXT_TOKENS
        return cls(pool, model, chosen, window)

    # -- what the engine asks before generating ----------------------------------------

    @property
    def n_vocab(self) -> int | None:
        return None  # the upstream checks logit_bias keys against its own vocabulary

    def grammar_is_valid(self, grammar: str) -> bool:
        return True  # the grammars are bounded before they are built; the upstream parses them

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def prompt(self, messages: Sequence[Mapping[str, Any]]) -> ChatPrompt:
        chars = sum(len(str(m.get("content") or "")) for m in messages)
        n_tokens = math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)
        text = json.dumps(list(messages), ensure_ascii=False)
        return ChatPrompt(tuple(messages), text, (), n_tokens)

    def check_request(self, sampling: SamplingParams, tools: bool) -> None:
        """A 400 naming what this dialect can not do, before any work."""
        lacks = []
        if sampling.logit_bias and not self.features.logit_bias:
            lacks.append("logit_bias")
        if tools and self.features.grammar_field is None:
            lacks.append("tools (they need constrained decoding by grammar)")
        if lacks:
            raise InvalidRequestError(
                f"The chat model's upstream ({self.dialect} dialect) can not serve "
                f"{' or '.join(lacks)}.",
                param="tools" if tools and not sampling.logit_bias else "logit_bias",
                code="unsupported_parameter",
            )

    # -- generating ----------------------------------------------------------------------

    def body(
        self,
        prompt: ChatPrompt,
        sampling: SamplingParams,
        grammar: Grammar | None,
        branch: GrammarBranch | None,
        response_format: ResponseFormat | None = None,
    ) -> dict[str, Any]:
        """The upstream's request for this prompt, in its dialect."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(prompt.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        room = self.context_window_tokens - prompt.n_tokens
        if sampling.max_output_tokens is not None:
            body["max_tokens"] = sampling.max_output_tokens
        elif room > 0:
            body["max_tokens"] = room
        if sampling.presence_penalty:
            body["presence_penalty"] = sampling.presence_penalty
        if sampling.frequency_penalty:
            body["frequency_penalty"] = sampling.frequency_penalty
        if sampling.seed is not None and self.features.seed:
            body["seed"] = sampling.seed
        if sampling.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in sampling.logit_bias.items()}
        if sampling.logprobs:
            body["logprobs"] = True
            if sampling.top_logprobs:
                body["top_logprobs"] = sampling.top_logprobs
        gbnf = _grammar_text(grammar, branch)
        stoppable = grammar is None or grammar.stoppable
        if sampling.stop and stoppable and branch is None:
            body["stop"] = list(sampling.stop)
        field = self.features.grammar_field
        if gbnf is not None and field is not None:
            _put(body, field, gbnf)
        elif response_format is not None and response_format.kind != "text":
            body["response_format"] = _openai_response_format(response_format)
        return body

    def stream(
        self,
        prompt: ChatPrompt,
        sampling: SamplingParams,
        cancel: threading.Event,
        *,
        grammar: Grammar | None = None,
        branch: GrammarBranch | None = None,
        gate: StepGate = ungated,
        response_format: ResponseFormat | None = None,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        """The upstream's answer as it streams; ends with one ``GenerationEnd`` unless
        ``cancel`` is set first (the upstream's stream is closed then). Stop sequences are
        also watched here: a call block (it begins with the branch's opener) is never cut."""
        body = self.body(prompt, sampling, grammar, branch, response_format)
        stoppable = grammar is None or grammar.stoppable
        scanner: StopScanner | None = None
        n_tokens = 0
        prompt_tokens: int | None = None
        reason: Literal["stop", "length"] = "stop"
        with self.pool.stream("POST", "/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if cancel.is_set():
                    return
                data = _sse_data(line)
                if data is None:
                    continue
                if data == "[DONE]":
                    continue  # the body ends here: read to its end, so the connection is kept
                chunk = _json(data)
                usage = chunk.get("usage")
                if isinstance(usage, Mapping):
                    n_tokens = int(usage.get("completion_tokens") or n_tokens)
                    prompt_tokens = usage.get("prompt_tokens") or prompt_tokens
                choices = chunk.get("choices") or []
                if not choices:
                    if isinstance(chunk.get("error"), Mapping):
                        raise UpstreamError(
                            "The chat model's upstream failed while answering: "
                            f"{chunk['error'].get('message', 'no reason given')}"
                        )
                    continue
                choice = choices[0]
                delta = choice.get("delta") or {}
                content = delta.get("content") or ""
                logprobs = _logprobs(choice.get("logprobs"), sampling.top_logprobs)
                if content or logprobs:
                    if usage is None:
                        n_tokens += max(1, len(logprobs)) if content else len(logprobs)
                    if scanner is None:
                        calling = branch is not None and content.lstrip().startswith(
                            branch.opener[:1]
                        )
                        cut = stoppable and not calling
                        scanner = StopScanner(sampling.stop if cut else ())
                    text = scanner.feed(content)
                    if text or logprobs:
                        yield TokenPiece(text, logprobs)
                    if scanner.stopped:
                        reason = "stop"
                        break
                if choice.get("finish_reason") == "length":
                    reason = "length"
        tail = scanner.flush() if scanner is not None else ""
        if tail:
            yield TokenPiece(tail)
        yield GenerationEnd(reason, n_tokens, int(prompt_tokens) if prompt_tokens else None)

    def close(self) -> None:
        self.pool.close()


def _grammar_text(grammar: Grammar | None, branch: GrammarBranch | None) -> str | None:
    if branch is not None:
        if branch.bias == -math.inf:  # the block is never taken: the answer's own grammar
            return branch.otherwise.text if branch.otherwise is not None else None
        answer = branch.otherwise.text if branch.otherwise is not None else None
        return either(branch.grammar.text, branch.opener, answer)
    return grammar.text if grammar is not None else None


def _openai_response_format(response_format: ResponseFormat) -> dict[str, Any]:
    if response_format.kind == "json_object" or response_format.schema is None:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": dict(response_format.schema),
            "strict": response_format.strict,
        },
    }


def _put(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        body = body.setdefault(name, {})
    body[last] = value


def _sse_data(line: str) -> str | None:
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def _json(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise UpstreamError(
            f"The chat model's upstream sent a chunk that is not JSON: {data[:200]!r}"
        ) from exc
    if not isinstance(value, dict):
        raise UpstreamError("The chat model's upstream sent a chunk that is not a JSON object.")
    return value


def _logprobs(raw: Any, n_top: int) -> tuple[TokenLogprob, ...]:
    """OpenAI's ``logprobs.content`` entries as the engine's ``TokenLogprob`` s, with the
    ``n_top`` most likely alternatives (some servers add the chosen token to them)."""
    if not isinstance(raw, Mapping):
        return ()
    entries = raw.get("content") or ()
    out = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        alternatives = [t for t in entry.get("top_logprobs") or () if isinstance(t, Mapping)]
        alternatives.sort(key=lambda t: -float(t.get("logprob", 0.0)))
        top = tuple(
            (str(t.get("token", "")), float(t.get("logprob", 0.0))) for t in alternatives[:n_top]
        )
        out.append(TokenLogprob(str(entry.get("token", "")), float(entry.get("logprob", 0.0)), top))
    return tuple(out)
