"""GBNF for JSON Schema string ``format`` s: texts that every checker accepts.

Each grammar allows a subset of its format, chosen so that every text it
allows is valid (``jsonschema``'s ``FormatChecker`` passes it, as do RFC
parsers), not so that every valid text is allowed:

- ``date``: ``YYYY-MM-DD`` of a real day, years 0001-9999; 29 February is
  left out (it exists only in leap years). ``date-time``: that date, "T",
  then ``time``. ``time`` and ``uuid`` stay llama-cpp-python's own rules
  (``HH:MM:SS``, optional milliseconds, "Z" or an offset).
- ``email``: ``local@domain``: up to 3 dot-separated atoms of letters,
  digits and ``_%+-`` (at most 62 characters), then 1-3 hostname labels and
  a top-level domain of 2-20 letters.
- ``hostname``: 1-6 dot-separated labels of 1-40 letters, digits and inner
  hyphens (at most 245 characters, within DNS's 253).
- ``ipv4``: four decimal octets 0-255 without leading zeros.
- ``ipv6``: eight groups of 1-4 hex digits, or fewer around one "::" (no
  embedded IPv4, no zone).
- ``uri``: ``scheme:`` then ``//host[:port]`` and a path, or a path without
  a host (``urn:isbn:0451450523``), then an optional ``?query`` and
  ``#fragment``, with RFC 3986's characters and %-escapes; at most 8 path
  segments of 32 characters and 64 characters of query and of fragment
  (1432 characters in all, within pydantic's ``HttpUrl`` limit of 2083).
- ``duration``: RFC 3339's form of ISO 8601 durations (``P3Y6M4DT12H30M5S``,
  ``P1M``, ``PT90S``, ``P2W``) with whole numbers of up to 9 digits.

Any other format is an annotation (JSON Schema's default) and leaves the
string unconstrained. ``LENGTHS`` gives the shortest and longest text of each
grammar, so that a schema's ``minLength``/``maxLength`` can be checked
against it. This module knows nothing of schemas' other keywords.
"""

from __future__ import annotations

from collections.abc import Callable

_LABEL = "[A-Za-z0-9] ([A-Za-z0-9-]{0,38} [A-Za-z0-9])?"
_H16 = "[0-9a-fA-F]{1,4}"
_DIGITS = "[0-9]{1,9}"
URI_SCHEME_CHARS = 16
URI_SEGMENT_CHARS = 32  # characters (or %-escapes) in one path segment
URI_SEGMENTS = 8
URI_QUERY_CHARS = 64  # in the query, and again in the fragment
_ESCAPED = 3  # the longest character of a URI: "%" and two hex digits
_URI_MOST = (
    URI_SCHEME_CHARS
    + len("://")
    + 6 * 40
    + 5
    + len(":65535")
    + URI_SEGMENTS * (1 + URI_SEGMENT_CHARS * _ESCAPED)
    + 2 * (1 + URI_QUERY_CHARS * _ESCAPED)
)
_PCHAR = '[A-Za-z0-9._~!$&\'()*+,;=:@-] | "%" [0-9A-Fa-f] [0-9A-Fa-f]'
_DATE = (
    '([1-9] [0-9]{3} | "0" ([1-9] [0-9]{2} | "0" ([1-9] [0-9] | "0" [1-9]))) "-" ('
    '("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | "1" [0-9] | "2" [0-8])'
    ' | ("0" [13-9] | "1" [0-2]) "-" ("29" | "30")'
    ' | ("0" [13578] | "1" [02]) "-31")'
)
_TIME = (  # llama-cpp-python's own rule (STRING_FORMAT_RULES["time"])
    '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9] [0-9] [0-9] )?'
    ' ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )'
)

# (shortest, longest) text of each format's grammar
LENGTHS: dict[str, tuple[int, int]] = {
    "date": (10, 10),
    "time": (9, 18),
    "uuid": (36, 36),
    "date-time": (20, 29),
    "email": (6, 62 + 1 + 3 * 41 + 20),
    "hostname": (1, 6 * 40 + 5),
    "ipv4": (7, 15),
    "ipv6": (2, 39),
    "uri": (3, _URI_MOST),
    "duration": (3, 1 + 3 * 10 + 1 + 3 * 10),
}

AddRule = Callable[[str, str], str]  # (wanted name, body) -> the name the rule was given


def format_rule(fmt: str, add_rule: AddRule) -> str | None:
    """The name of a rule for the bare text (no quotes) of ``fmt``; None for other formats.

    ``add_rule`` adds a rule under a free name and returns it, so that rules
    refer to each other by the names they were really given.
    """
    build = _BUILDERS.get(fmt)
    return None if build is None else build(add_rule)


def _date(add: AddRule) -> str:
    return add("calendar-date", _DATE)


def _date_time(add: AddRule) -> str:
    return add("calendar-date-time", f'{_date(add)} "T" {add("clock-time", _TIME)}')


def _hostname(add: AddRule) -> str:
    label = add("host-label", _LABEL)
    return add("hostname", f'{label} ("." {label}){{0,5}}')


def _email(add: AddRule) -> str:
    atom = add("email-atom", "[A-Za-z0-9_%+-]{1,20}")
    label = add("host-label", _LABEL)
    local = f'{atom} ("." {atom}){{0,2}}'
    domain = f'{label} ("." {label}){{0,2}} "." [A-Za-z]{{2,20}}'
    return add("email", f'{local} "@" {domain}')


def _ipv4(add: AddRule) -> str:
    octet = add(
        "ipv4-octet", '"25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9]'
    )
    return add("ipv4", f'{octet} "." {octet} "." {octet} "." {octet}')


def _ipv6(add: AddRule) -> str:
    h16 = add("ipv6-group", _H16)
    forms = [f'{h16} (":" {h16}){{7}}']
    for left in range(8):  # groups before "::"; at most 7 groups in all around it
        before = _groups(h16, left, left)
        after = _groups(h16, 0, 7 - left)
        forms.append(_join(before, '"::"', after))
    return add("ipv6", " | ".join(f"({form})" for form in forms))


def _groups(h16: str, least: int, most: int) -> str:
    """From ``least`` to ``most`` colon-separated groups."""
    if most == 0:
        return ""
    if least == most:
        return h16 if most == 1 else f'{h16} (":" {h16}){{{most - 1}}}'
    more = "" if most == 1 else f' (":" {h16}){{0,{most - 1}}}'
    return f"({h16}{more})?"  # least is 0 here


def _join(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _uri(add: AddRule) -> str:
    pchar = add("uri-char", _PCHAR)
    qchar = add("uri-query-char", f"{pchar} | [/?]")
    host = _hostname(add)
    scheme = f"[A-Za-z] [A-Za-z0-9+.-]{{0,{URI_SCHEME_CHARS - 1}}}"
    segment = f'"/" {pchar}{{0,{URI_SEGMENT_CHARS}}}'
    with_host = f'"//" {host} (":" [0-9]{{1,5}})? ({segment}){{0,{URI_SEGMENTS}}}'
    without_host = f"{pchar}{{1,{URI_SEGMENT_CHARS}}} ({segment}){{0,{URI_SEGMENTS - 1}}}"
    query = f"{qchar}{{0,{URI_QUERY_CHARS}}}"
    return add("uri", f'{scheme} ":" ({with_host} | {without_host}) ("?" {query})? ("#" {query})?')


def _duration(add: AddRule) -> str:
    second = add("duration-second", f'{_DIGITS} "S"')
    minute = add("duration-minute", f'{_DIGITS} "M" {second}?')
    hour = add("duration-hour", f'{_DIGITS} "H" {minute}?')
    day = add("duration-day", f'{_DIGITS} "D"')
    month = add("duration-month", f'{_DIGITS} "M" {day}?')
    year = add("duration-year", f'{_DIGITS} "Y" {month}?')
    time = add("duration-time", f'"T" ({hour} | {minute} | {second})')
    date = f"({day} | {month} | {year}) {time}?"
    return add("duration", f'"P" ({date} | {time} | {_DIGITS} "W")')


_BUILDERS: dict[str, Callable[[AddRule], str]] = {
    "date": _date,
    "date-time": _date_time,
    "email": _email,
    "hostname": _hostname,
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "uri": _uri,
    "duration": _duration,
}
