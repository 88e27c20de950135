"""Tool calls for a small text chat model: the prompt, the grammar and the reader.

The default chat model (SmolLM2-135M-Instruct) can not be trusted to follow a
tool format, so every call is written under a grammar; the model only fills
in the blanks. The format is SmolLM2's own (from its model card)::

    <tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>

- ``tool_section`` is appended to the system prompt: the tools as JSON and the
  format above, in the words SmolLM2 was tuned with.
- ``call_grammar`` is GBNF for one such block: each call's ``name`` is one of
  the tools (or the one named by ``tool_choice``) and its ``arguments`` follow
  that tool's ``parameters`` schema (see ``structured``); with
  ``parallel_tool_calls`` up to ``MAX_PARALLEL_CALLS`` calls, else exactly one.
- ``render_calls`` writes earlier calls of the conversation in the same format,
  so the model sees its own calls as it would have written them.
- ``AnswerReader`` reads the streamed answer: text that begins with ``OPENER``
  is a call block and becomes ``ToolCallDelta`` s (the first fragment of each
  call carries its name and empty arguments, then argument fragments as they
  are written); any other answer passes through as ``TextDelta`` s.

How the engine picks between a call and an answer for each ``tool_choice`` is
in ``engine``; this module knows nothing of models, threads or HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from omnivox.engines.base import ToolCall, ToolSpec
from omnivox.engines.cascade.grammar.structured import (
    SchemaError,
    check_grammar_size,
    rename_root,
    schema_grammar,
)
from omnivox.engines.events import TextDelta, TokenLogprob, ToolCallDelta

OPENER = "<tool_call>"
CLOSER = "</tool_call>"
MAX_PARALLEL_CALLS = 4
NO_PARAMETERS_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

# SmolLM2's function-calling system prompt (model card of SmolLM2-1.7B-Instruct).
_SECTION_HEAD = (
    "You are an expert in composing functions. You are given a question and a set of "
    "possible functions.\nBased on the question, you will need to make one or more "
    "function/tool calls to achieve the purpose.\n"
    "You have access to the following tools:\n<tools>"
)
_SECTION_TAIL = (
    "</tools>\n\nThe output MUST strictly adhere to the following format, and NO other "
    "text MUST be included.\n"
    '<tool_call>[\n{"name": "func_name1", "arguments": {"argument1": "value1", '
    '"argument2": "value2"}},\n... (more tool calls as required)\n]</tool_call>'
)
_CALL_HEAD = re.compile(r'\{\s*"name"\s*:\s*"([^"]*)"\s*,\s*"arguments"\s*:\s*$')


def parameters_schema(spec: ToolSpec) -> dict[str, Any]:
    """The tool's ``parameters``; a function without any takes an empty object."""
    return dict(spec.parameters_schema) if spec.parameters_schema else NO_PARAMETERS_SCHEMA


def tool_section(specs: Sequence[ToolSpec]) -> str:
    """The part of the system prompt that lists the tools and the call format."""
    listed = [
        {
            "name": spec.name,
            **({"description": spec.description} if spec.description else {}),
            "parameters": parameters_schema(spec),
        }
        for spec in specs
    ]
    return _SECTION_HEAD + json.dumps(listed, ensure_ascii=False) + _SECTION_TAIL


def call_grammar(specs: Sequence[ToolSpec], *, only: str | None, parallel: bool) -> str:
    """GBNF of a call block: calls of ``only`` (or of any tool), one or up to the maximum.

    Raises ``SchemaError`` (with the tool's index in ``args[1]``) for a
    ``parameters`` schema the converter can not handle, and for the largest
    one when all of them together make a grammar above ``structured``'s limits.
    """
    chosen = [(i, s) for i, s in enumerate(specs) if only is None or s.name == only]
    rules: list[str] = []
    names = []
    for i, spec in chosen:
        call_schema = {
            "type": "object",
            "properties": {"name": {"const": spec.name}, "arguments": parameters_schema(spec)},
            "required": ["name", "arguments"],
        }
        try:
            grammar = schema_grammar(call_schema)
        except SchemaError as exc:
            raise SchemaError(str(exc), i) from None
        name = f"call{i}"
        rules.append(_prefix_rules(rename_root(grammar, name), f"t{i}-", keep=name))
        names.append(name)
    more = f' ("," "\\n"? call){{0,{MAX_PARALLEL_CALLS - 1}}}' if parallel else ""
    head = (
        f'root ::= "{OPENER}[" "\\n"? call{more} "\\n"? "]{CLOSER}"\ncall ::= {" | ".join(names)}\n'
    )
    grammar = head + "".join(rules)
    try:
        check_grammar_size(grammar)
    except SchemaError as exc:
        largest = max(range(len(rules)), key=lambda k: len(rules[k]))
        raise SchemaError(f"with the other tools, {exc}", chosen[largest][0]) from None
    return grammar


def _prefix_rules(grammar: str, prefix: str, *, keep: str) -> str:
    """Every rule name but ``keep`` given ``prefix``, so several grammars can share a file.

    Rule names are written outside string literals, character classes and
    repetition counts, which are copied as they are (with their escapes).
    """
    out: list[str] = []
    for line in grammar.splitlines():
        out.append(_prefix_line(line, prefix, keep))
    return "\n".join(out) + "\n"


def _prefix_line(line: str, prefix: str, keep: str) -> str:
    pieces: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch in '"[{':
            close = {'"': '"', "[": "]", "{": "}"}[ch]
            j = i + 1
            while j < len(line) and line[j] != close:
                j += 2 if line[j] == "\\" else 1
            pieces.append(line[i : j + 1])
            i = j + 1
        elif ch.isalnum() or ch == "-":
            j = i
            while j < len(line) and (line[j].isalnum() or line[j] == "-"):
                j += 1
            word = line[i:j]
            pieces.append(word if word == keep else prefix + word)
            i = j
        else:
            pieces.append(ch)
            i += 1
    return "".join(pieces)


def render_calls(calls: Iterable[ToolCall]) -> str:
    """Earlier calls as the model writes them: one ``<tool_call>[...]</tool_call>`` block."""
    written = []
    for call in calls:
        try:
            arguments: Any = json.loads(call.arguments)
        except ValueError:
            arguments = call.arguments
        written.append(json.dumps({"name": call.name, "arguments": arguments}, ensure_ascii=False))
    return f"{OPENER}[{', '.join(written)}]{CLOSER}"


@dataclass
class _CallState:
    head: str = ""
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    started: bool = False


class AnswerReader:
    """Text of a streamed answer in; ``TextDelta`` s or ``ToolCallDelta`` s out.

    Until the answer has shown whether it begins with ``OPENER`` its first
    characters are held back; an answer that does not is passed through as it
    comes, with its logprobs. The reader trusts the grammar for the shape of a
    call block and only finds where names and arguments begin and end.
    """

    def __init__(self) -> None:
        self._held = ""
        self._held_logprobs: list[TokenLogprob] = []
        self._mode = "undecided"  # then "text" or "calls"
        self._rest = ""  # the call block after the opener, not yet read
        self._index = 0
        self._call: _CallState | None = None
        self.made_calls = False

    def feed(
        self, text: str, logprobs: Sequence[TokenLogprob] = ()
    ) -> list[TextDelta | ToolCallDelta]:
        if self._mode == "text":
            return [TextDelta(text, tuple(logprobs))]
        if self._mode == "calls":
            return self._read_calls(text)
        self._held += text
        self._held_logprobs += logprobs
        if self._held.startswith(OPENER):
            self._mode = "calls"
            rest, self._held = self._held[len(OPENER) :], ""
            return self._read_calls(rest)
        if OPENER.startswith(self._held):
            return []  # still a possible opener
        return self.flush()

    def flush(self) -> list[TextDelta | ToolCallDelta]:
        """The text held back (at the end of the answer, or once it is known to be text)."""
        if self._mode == "calls" or not (self._held or self._held_logprobs):
            return []
        self._mode = "text"
        delta = TextDelta(self._held, tuple(self._held_logprobs))
        self._held, self._held_logprobs = "", []
        return [delta]

    def _read_calls(self, text: str) -> list[TextDelta | ToolCallDelta]:
        events: list[TextDelta | ToolCallDelta] = []
        arguments: list[str] = []
        for ch in text:
            call = self._call
            if call is None:
                if ch == "{":
                    self._call = _CallState(head="{")
                continue  # "[", ",", line breaks, spaces, "]" and the closer
            if not call.started:
                call.head += ch
                match = _CALL_HEAD.match(call.head)
                if match:
                    call.started = True
                    self.made_calls = True
                    events.append(ToolCallDelta(self._index, "", name=match.group(1)))
                continue
            if call.depth == 0 and not ch.strip():
                continue  # a space before the arguments' value
            if self._argument_char(call, ch):
                arguments.append(ch)
            else:  # the "}" that closes the call
                if arguments:
                    events.append(ToolCallDelta(self._index, "".join(arguments)))
                    arguments = []
                self._call = None
                self._index += 1
        if arguments:
            events.append(ToolCallDelta(self._index, "".join(arguments)))
        return events

    @staticmethod
    def _argument_char(call: _CallState, ch: str) -> bool:
        """Track the arguments' JSON; False for the character that ends the call."""
        if call.in_string:
            if call.escaped:
                call.escaped = False
            elif ch == "\\":
                call.escaped = True
            elif ch == '"':
                call.in_string = False
            return True
        if ch == '"':
            call.in_string = True
        elif ch in "{[":
            call.depth += 1
        elif ch in "}]":
            if call.depth == 0:
                return False
            call.depth -= 1
        return True
