"""One GBNF grammar that allows either of two: a tool-call block, or a free answer.

The embedded chat model chooses between a call and an answer at its first token,
from its own probabilities (``chat.constraints``). A chat model on another server
is only given a grammar, so "auto" becomes one grammar whose ``root`` is either
the call block or an answer that does not begin like one: the model's first
token decides, as it would. The two grammars' rules are renamed apart
(``prefixed``) so that they can live in one text.
"""

from __future__ import annotations

import re

NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
ANY_CHAR = r"[\x01-\U0010FFFF]"


def prefixed(gbnf: str, prefix: str) -> str:
    """``gbnf`` with every rule name (defined or referred to) given ``prefix``; string
    literals, character classes and comments are left as they are."""
    out: list[str] = []
    i, n = 0, len(gbnf)
    while i < n:
        ch = gbnf[i]
        if ch in '"[':
            end = _literal_end(gbnf, i, '"' if ch == '"' else "]")
            out.append(gbnf[i:end])
            i = end
        elif ch == "#":
            end = gbnf.find("\n", i)
            end = n if end < 0 else end
            out.append(gbnf[i:end])
            i = end
        elif (match := NAME.match(gbnf, i)) is not None and (i == 0 or not _in_word(gbnf[i - 1])):
            out.append(prefix + match.group())
            i = match.end()
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def either(block: str, opener: str, answer: str | None) -> str:
    """A grammar whose root is ``block`` (which begins with ``opener``), or ``answer``
    (None: any text) not beginning with the opener's first character."""
    first = opener[:1]
    excluded = "\\" + first if first in "\\]^-" else first
    free = f"free ::= ([^{excluded}] {ANY_CHAR}*)?" if first else f"free ::= {ANY_CHAR}*"
    parts = [prefixed(block, "c-")]
    if answer is None:
        parts.append(free)
        root = "root ::= c-root | free"
    else:
        # The answer's own grammar, kept from beginning with the opener's character.
        parts.append(prefixed(answer, "a-"))
        root = "root ::= c-root | a-root"
    return "\n".join([root, *parts]) + "\n"


def _literal_end(text: str, start: int, closer: str) -> int:
    """The index just past the literal (string or class) that opens at ``start``."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == closer:
            return i + 1
        i += 1
    return len(text)


def _in_word(ch: str) -> bool:
    return ch.isalnum() or ch in "-_"
