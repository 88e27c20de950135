"""Long recordings heard in pieces: where a Whisper pass stopped, what of its piece is
heard again, and the languages' names."""

from __future__ import annotations

import pytest

from omnivox.engines.cascade.listening.long_form import heard_until_s, regions_after
from omnivox.engines.languages import LANGUAGES, language_name, whisper_languages


def test_languages_are_named_as_openai_names_them() -> None:
    assert len(LANGUAGES) == 100
    assert language_name("en") == "english"
    assert language_name("ht") == "haitian creole"
    assert language_name("xx") == "xx"
    assert whisper_languages(99)[-1] == "su"  # Whisper base knows all but Cantonese


BEGIN = 50_364  # <|0.00|> in multilingual Whisper's vocabulary


def stamp(seconds: float) -> int:
    return BEGIN + round(seconds / 0.02)


@pytest.mark.parametrize(
    ("tokens", "heard_s"),
    [
        ([stamp(0), 1, 2, stamp(4), stamp(4), 3, stamp(9)], None),  # closed: all written
        ([stamp(0), 1, stamp(4), stamp(4), 3, stamp(9), stamp(9)], 9.0),  # opened, not written
        ([stamp(0), 1, stamp(4), stamp(4), 3, 4, 5], 4.0),  # out of tokens mid-segment
        ([stamp(0), 1, 2, 3], None),  # one segment, cut short: kept whole
        ([], None),
    ],
)
def test_where_a_pass_stopped(tokens: list[int], heard_s: float | None) -> None:
    found = heard_until_s(tokens, BEGIN, 0.02)
    assert found == (None if heard_s is None else pytest.approx(heard_s))


def test_the_rest_of_a_piece_begins_where_its_speech_was_heard_to() -> None:
    piece = [{"start": 16_000, "end": 48_000}, {"start": 64_000, "end": 96_000}]
    assert regions_after(piece, 1.0) == [
        {"start": 32_000, "end": 48_000},
        {"start": 64_000, "end": 96_000},
    ]
    assert regions_after(piece, 2.5) == [{"start": 72_000, "end": 96_000}]
    assert regions_after(piece, 4.0) == []
