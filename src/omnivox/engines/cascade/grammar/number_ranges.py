"""GBNF for the JSON numbers that lie between two bounds, as JSON Schema compares them.

``integer_range`` matches exactly the integers within the bounds, written as
JSON writes them: no sign on zero, no leading zeros, no "+", no fraction or
exponent. ``decimal_range`` matches the numbers within the bounds that have
at most ``fraction_digits`` digits after the decimal point: the integers as
above and decimals like ``-0.25`` or ``12.50`` (trailing zeros allowed, a
digit on both sides of the point), never an exponent, never ``-0``.

A bound is a JSON value (``int`` or ``float``) compared with the parsed
number as Python (and ``jsonschema``) compares them, so every text these
grammars allow passes ``minimum``/``maximum``/``exclusiveMinimum``/
``exclusiveMaximum`` even where a bound is a float that no short decimal
equals. A side without a bound is open: any number of digits.

The grammars are built digit by digit: a range of same-length digit strings
becomes a few alternatives of digit classes, so their size grows with the
number of digits in the bounds, not with the width of the range. This module
knows nothing of schemas; it returns GBNF expressions (without rule names)
or None for an empty range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_FRACTION_DIGITS = 6
MAX_FRACTION_DIGITS = 12


@dataclass(frozen=True, slots=True)
class Bound:
    """One side of a range: ``value`` itself is allowed unless ``exclusive``."""

    value: int | float
    exclusive: bool = False


def integer_range(low: Bound | None, high: Bound | None) -> str | None:
    """GBNF of the JSON integers within the bounds; None when there are none."""
    return _signed_alternatives(low, high, 0)


def decimal_range(low: Bound | None, high: Bound | None, fraction_digits: int) -> str | None:
    """GBNF of the JSON numbers within the bounds with at most ``fraction_digits``
    digits after the point; None when there are none."""
    alternatives = [
        alt
        for digits in range(fraction_digits + 1)
        if (alt := _signed_alternatives(low, high, digits)) is not None
    ]
    return _group(alternatives) if alternatives else None


def fraction_digits_needed(*bounds: Bound | None) -> int:
    """Digits after the point that the bounds themselves need, at least the default."""
    needed = DEFAULT_FRACTION_DIGITS
    for bound in bounds:
        if bound is None:
            continue
        denominator = _exact(bound.value).denominator
        twos = fives = 0
        while denominator % 2 == 0:
            denominator //= 2
            twos += 1
        while denominator % 5 == 0:
            denominator //= 5
            fives += 1
        needed = max(needed, twos, fives)
    return min(needed, MAX_FRACTION_DIGITS)


def within(value: int | float, low: Bound | None, high: Bound | None) -> bool:
    """Whether ``value`` passes the bounds, compared as ``jsonschema`` compares."""
    if low is not None and (value <= low.value if low.exclusive else value < low.value):
        return False
    return not (
        high is not None and (value >= high.value if high.exclusive else value > high.value)
    )


# ---- from bounds to ranges of scaled integers ----------------------------------------------


def _exact(value: int | float) -> Fraction:
    """The decimal the JSON text of ``value`` says (``0.1`` is one tenth, not the float)."""
    return Fraction(value) if isinstance(value, int) else Fraction(repr(value))


def _parsed(k: int, digits: int) -> int | float:
    """What a JSON parser makes of ``k`` / 10**digits written with ``digits`` fraction digits."""
    return k if digits == 0 else float(f"{k}e-{digits}")


def _lowest(low: Bound, digits: int) -> int:
    """The smallest ``k`` whose number ``k`` / 10**digits passes ``low``."""
    guess = math.ceil(_exact(low.value) * 10**digits)
    return -_largest_where(lambda k: within(_parsed(-k, digits), low, None), -guess)


def _highest(high: Bound, digits: int) -> int:
    """The largest ``k`` whose number ``k`` / 10**digits passes ``high``."""
    guess = math.floor(_exact(high.value) * 10**digits)
    return _largest_where(lambda k: within(_parsed(k, digits), None, high), guess)


def _largest_where(holds: Callable[[int], bool], guess: int) -> int:
    """The largest ``k`` for which ``holds`` (true up to some ``k``, false above it).

    The guess is the exact decimal bound; the answer can lie far from it where
    a float bound stands for many decimals (1e23, or 1e20 with six fraction
    digits), so the search gallops from the guess, then halves.
    """
    step = 1
    if holds(guess):
        low = guess
        while holds(low + step):
            low, step = low + step, step * 2
        high = low + step
    else:
        high = guess
        while not holds(high - step):
            high, step = high - step, step * 2
        low = high - step
    while high - low > 1:  # holds(low) and not holds(high)
        middle = (low + high) // 2
        if holds(middle):
            low = middle
        else:
            high = middle
    return low


def _signed_alternatives(low: Bound | None, high: Bound | None, digits: int) -> str | None:
    """Numbers written with exactly ``digits`` fraction digits (none: integers) in range."""
    k_min = None if low is None else _lowest(low, digits)
    k_max = None if high is None else _highest(high, digits)
    if k_min is not None and k_max is not None and k_min > k_max:
        return None
    alternatives = []
    start = 0 if k_min is None else max(k_min, 0)
    if k_max is None or k_max >= start:
        alternatives.append(_unsigned(start, k_max, digits))
    # negatives: magnitudes from 1 (never "-0") up to -k_min
    nearest = 1 if k_max is None else max(-k_max, 1)
    if k_min is None or -k_min >= nearest:
        alternatives.append(
            _seq('"-"', _unsigned(nearest, None if k_min is None else -k_min, digits))
        )
    return _group(alternatives) if alternatives else None


# ---- from ranges of non-negative integers to GBNF --------------------------------------------


def _unsigned(k_min: int, k_max: int | None, digits: int) -> str:
    """``k`` / 10**digits for ``k`` in [k_min, k_max], written with ``digits`` fraction digits."""
    if digits == 0:
        return _natural(k_min, k_max)
    scale = 10**digits
    i_min, f_min = divmod(k_min, scale)
    fraction = _digits(digits)
    if k_max is not None:
        i_max, f_max = divmod(k_max, scale)
        if i_min == i_max:
            return _seq(
                _literal(str(i_min)), '"."', _fixed(_pad(f_min, digits), _pad(f_max, digits))
            )
    alternatives = []
    first_whole = i_min  # the first integer part that takes every fraction
    if f_min > 0:
        alternatives.append(
            _seq(_literal(str(i_min)), '"."', _fixed(_pad(f_min, digits), "9" * digits))
        )
        first_whole += 1
    if k_max is None:
        alternatives.append(_seq(_natural(first_whole, None), '"."', fraction))
        return _group(alternatives)
    last_whole = i_max
    if f_max < scale - 1:
        alternatives.append(
            _seq(_literal(str(i_max)), '"."', _fixed("0" * digits, _pad(f_max, digits)))
        )
        last_whole -= 1
    if first_whole <= last_whole:
        alternatives.append(_seq(_natural(first_whole, last_whole), '"."', fraction))
    return _group(alternatives)


def _natural(low: int, high: int | None) -> str:
    """Integers in [low, high] (``high`` None: no limit), 0 <= low, without leading zeros."""
    low_text = str(low)
    if high is not None and len(str(high)) == len(low_text):
        return _fixed(low_text, str(high))
    alternatives = [_fixed(low_text, "9" * len(low_text))]
    if high is None:
        alternatives.append(_seq("[1-9]", f"[0-9]{{{len(low_text)},}}"))
        return _group(alternatives)
    high_text = str(high)
    shortest, longest = len(low_text) + 1, len(high_text) - 1  # lengths that take every number
    if shortest <= longest:
        alternatives.append(_seq("[1-9]", _repeat(shortest - 1, longest - 1)))
    alternatives.append(_fixed("1" + "0" * (len(high_text) - 1), high_text))
    return _group(alternatives)


def _fixed(low: str, high: str) -> str:
    """Digit strings as long as ``low`` and ``high`` (same length), from ``low`` to ``high``."""
    if not low:
        return ""
    if low[0] == high[0]:
        return _seq(_literal(low[0]), _fixed(low[1:], high[1:]))
    rest = len(low) - 1
    takes_low_whole = low[1:].strip("0") == ""
    takes_high_whole = high[1:].strip("9") == ""
    first = low[0] if takes_low_whole else chr(ord(low[0]) + 1)
    last = high[0] if takes_high_whole else chr(ord(high[0]) - 1)
    alternatives = []
    if not takes_low_whole:
        alternatives.append(_seq(_literal(low[0]), _at_least(low[1:])))
    if first <= last:
        alternatives.append(_seq(_digit_class(first, last), _digits(rest)))
    if not takes_high_whole:
        alternatives.append(_seq(_literal(high[0]), _at_most(high[1:])))
    return _group(alternatives)


def _at_least(low: str) -> str:
    """Digit strings as long as ``low`` that are not below it."""
    if not low:
        return ""
    head, rest = low[0], low[1:]
    if rest.strip("0") == "":
        return _seq(_digit_class(head, "9"), _digits(len(rest)))
    alternatives = [_seq(_literal(head), _at_least(rest))]
    if head < "9":
        alternatives.append(_seq(_digit_class(chr(ord(head) + 1), "9"), _digits(len(rest))))
    return _group(alternatives)


def _at_most(high: str) -> str:
    """Digit strings as long as ``high`` that are not above it."""
    if not high:
        return ""
    head, rest = high[0], high[1:]
    if rest.strip("9") == "":
        return _seq(_digit_class("0", head), _digits(len(rest)))
    alternatives = [_seq(_literal(head), _at_most(rest))]
    if head > "0":
        alternatives.append(_seq(_digit_class("0", chr(ord(head) - 1)), _digits(len(rest))))
    return _group(alternatives)


def _pad(value: int, digits: int) -> str:
    return str(value).zfill(digits)


def _literal(text: str) -> str:
    return f'"{text}"'


def _digit_class(first: str, last: str) -> str:
    return _literal(first) if first == last else f"[{first}-{last}]"


def _digits(count: int) -> str:
    return _repeat(count, count)


def _repeat(least: int, most: int) -> str:
    if most == 0:
        return ""
    if least == most:
        return "[0-9]" if least == 1 else f"[0-9]{{{least}}}"
    return f"[0-9]{{{least},{most}}}"


def _seq(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _group(alternatives: list[str]) -> str:
    return alternatives[0] if len(alternatives) == 1 else "(" + " | ".join(alternatives) + ")"
