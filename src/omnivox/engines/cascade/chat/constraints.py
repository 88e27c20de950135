"""What the chat model may write for one request: tool calls, JSON, or any text.

``answer_constraints`` turns ``tool_choice``, ``parallel_tool_calls`` and
``response_format`` into grammars for the generator (``generator.Grammar``,
``generator.GrammarBranch``), built from the schemas by ``tools`` and
``structured``; a schema that can not be used raises a 400 here, in
``prepare``, before any work is done.

- ``tool_choice`` "none" (or no tools): the tools are not shown to the model;
  the answer is text, or JSON under a JSON ``response_format``.
- "required": the answer is a call block of any of the tools; a named
  function: a call block of that function only.
- "auto": the model chooses at its first token: a call block when the
  probability of beginning one, times ``exp(AUTO_CALL_BIAS)``, reaches that of
  its most likely first token; otherwise a free answer (under the
  ``response_format`` grammar, if any) that may not begin like a call.
  SmolLM2-135M almost never begins a call by itself, yet gives the opener more
  weight for questions a tool answers: with the bias it routed 13 of 14
  questions right with three tools (7 needing one of them, 7 needing none)
  and 10 of 14 with a weather tool alone. Clients that need a call say
  "required" or name the function. An answer to tool results (the last
  message is a ``tool`` one) never calls again under "auto": the small model
  would repeat its call forever.
- ``parallel_tool_calls``: up to ``tools.MAX_PARALLEL_CALLS`` calls in one
  block, else exactly one. Whether another call follows is the model's own
  choice between "," and "]": no token may write a call's "}" and the next ","
  at once (``Grammar.unjoined``). SmolLM2-135M chooses "]" even when asked
  about two cities, so in practice it makes one call.
- A call block is never cut by the client's ``stop`` sequences (its arguments
  must parse); text and JSON answers are.

This module knows nothing of threads, events or HTTP.
"""

from __future__ import annotations

import math
from typing import NoReturn

from omnivox.engines.base import GenerationRequest
from omnivox.engines.cascade.chat.generator import LlamaGenerator
from omnivox.engines.cascade.chat.model import ChatModel, Grammar, GrammarBranch
from omnivox.engines.cascade.chat.prompt import offers_tools
from omnivox.engines.cascade.chat.tools import OPENER, call_grammar
from omnivox.engines.cascade.grammar.structured import SchemaError, format_grammar
from omnivox.errors import InvalidRequestError, InvalidValueError

AUTO_CALL_BIAS = 5.0  # natural-log units added to the call opener's logprob under "auto"
CALL_SEPARATION = ("}", ",")
# structured's limits keep llama.cpp's refusals out; this is what one says if one slips by
UNPARSED = "llama.cpp could not turn it into a grammar for constrained decoding"


def warm_up(generator: LlamaGenerator) -> None:
    """Find the token sets the constraints use now, not during the first request."""
    generator.opener_tokens(OPENER)
    generator.joining_tokens(*CALL_SEPARATION)


def answer_constraints(
    request: GenerationRequest, generator: ChatModel
) -> tuple[Grammar | None, GrammarBranch | None]:
    """The grammar of the whole answer, or the branch "auto" chooses from."""
    try:
        answer_gbnf = format_grammar(request.response_format)
    except SchemaError as exc:
        raise InvalidRequestError(
            f"Invalid schema for response_format: {exc}.",
            param="response_format",
            code="invalid_json_schema",
        ) from None
    answer = None
    if answer_gbnf is not None:
        if not generator.grammar_is_valid(answer_gbnf):
            raise InvalidRequestError(
                f"Invalid schema for response_format: {UNPARSED}.",
                param="response_format",
                code="invalid_json_schema",
            )
        answer = Grammar(answer_gbnf)
    if not offers_tools(request):
        return answer, None
    choice, parallel = request.tool_choice, request.parallel_tool_calls
    try:
        calls_gbnf = call_grammar(
            request.tools,
            only=None if choice in ("auto", "required") else choice,
            parallel=parallel,
        )
    except SchemaError as exc:
        index = exc.args[1] if len(exc.args) > 1 else 0
        raise InvalidRequestError(
            f"Invalid schema for function '{request.tools[index].name}': {exc.args[0]}.",
            param=f"tools[{index}].function.parameters",
            code="invalid_function_parameters",
        ) from None
    if not generator.grammar_is_valid(calls_gbnf):
        _refuse_unparsed_tools(request, generator)
    calls = Grammar(calls_gbnf, unjoined=(CALL_SEPARATION,) if parallel else (), stoppable=False)
    if choice != "auto":
        return calls, None
    answers_tool_results = bool(request.turns) and request.turns[-1].role == "tool"
    bias = -math.inf if answers_tool_results else AUTO_CALL_BIAS
    return None, GrammarBranch(OPENER, calls, bias, otherwise=answer)


def check_logit_bias(request: GenerationRequest, generator: ChatModel) -> None:
    """Every ``logit_bias`` key must be a token id of this model (when its vocabulary is
    known here; a model on another server checks them itself)."""
    n_vocab = generator.n_vocab
    if n_vocab is None:
        return
    for token in request.sampling.logit_bias:
        if not 0 <= token < n_vocab:
            raise InvalidValueError(
                f"Invalid key in 'logit_bias': {token}. Token ids must be between 0 and "
                f"{n_vocab - 1} for this model.",
                param="logit_bias",
            )


def _refuse_unparsed_tools(request: GenerationRequest, generator: ChatModel) -> NoReturn:
    """The 400 for the first tool whose call grammar llama.cpp refuses (else for all)."""
    for i, spec in enumerate(request.tools):
        if not generator.grammar_is_valid(call_grammar([spec], only=None, parallel=False)):
            raise InvalidRequestError(
                f"Invalid schema for function '{spec.name}': {UNPARSED}.",
                param=f"tools[{i}].function.parameters",
                code="invalid_function_parameters",
            )
    raise InvalidRequestError(
        "Invalid value for 'tools': the tools' parameter schemas could not be turned into a "
        "grammar for constrained decoding.",
        param="tools",
        code="invalid_value",
    )
