"""The speech segmenter and the speakable-text cleaner: what the synthesizer is given."""

from __future__ import annotations

import pytest

from omnivox.engines.cascade.speaking.segmenter import SpeechSegmenter
from omnivox.engines.cascade.speaking.speakable import speakable_text


def segment(text: str, step: int = 3, **options: int) -> list[str]:
    """Feed ``text`` in pieces of ``step`` characters, as a chat model streams it."""
    segmenter = SpeechSegmenter(**options)
    units: list[str] = []
    for start in range(0, len(text), step):
        units += segmenter.feed(text[start : start + step])
    return units + segmenter.flush()


def test_first_unit_ends_at_the_first_clause_after_a_few_words() -> None:
    text = "Cats are wonderful pets, and people love them, for many reasons. They sleep a lot."
    assert segment(text) == [
        "Cats are wonderful pets,",
        "and people love them, for many reasons.",
        "They sleep a lot.",
    ]


def test_a_clause_boundary_too_early_does_not_cut() -> None:
    assert segment("Sure, the capital of France is Paris. It is big.") == [
        "Sure, the capital of France is Paris.",
        "It is big.",
    ]


def test_first_unit_without_punctuation_is_cut_after_max_words() -> None:
    words = " ".join(f"w{i}" for i in range(20))
    units = segment(words + ".", first_max_words=12)
    assert units[0] == " ".join(f"w{i}" for i in range(12))
    assert " ".join(units) == words + "."


def test_a_unit_is_emitted_as_soon_as_its_end_is_certain() -> None:
    segmenter = SpeechSegmenter()
    assert segmenter.feed("The capital of France is Paris.") == []  # "Paris.5" might follow
    assert segmenter.feed(" It") == ["The capital of France is Paris."]
    assert segmenter.flush() == ["It"]


@pytest.mark.parametrize(
    "text",
    [
        "Dr. Smith met Mr. Jones at 3.30 today.",
        "Some pets, e.g. cats and dogs, sleep a lot.",
        "Pi is about 3.14 and e is about 2.72 in value.",
    ],
)
def test_abbreviations_and_decimals_do_not_end_a_sentence(text: str) -> None:
    assert segment("Hello there my friend. " + text)[-1] == text


def test_question_and_exclamation_marks_end_sentences() -> None:
    units = segment("Hello there my friend! How are you? Fine... thanks.")
    assert units == ["Hello there my friend!", "How are you?", "Fine...", "thanks."]


def test_line_breaks_end_units_and_list_numbers_stay_with_their_item() -> None:
    text = "Three facts:\n1. Cats purr.\n2. Cats sleep.\n- Cats jump"
    assert segment(text) == ["Three facts:", "1. Cats purr.", "2. Cats sleep.", "- Cats jump"]


def test_long_sentences_are_cut_at_their_last_clause_within_max_words() -> None:
    text = "One two three four, five six seven eight nine, ten eleven twelve thirteen fourteen."
    units = segment("Hi there my friend. " + text, max_words=10)
    assert units[1:] == [
        "One two three four, five six seven eight nine,",
        "ten eleven twelve thirteen fourteen.",
    ]


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_units_rejoin_into_the_text_whatever_the_pieces(step: int) -> None:
    text = "Cats, dogs and birds live here. They get along!\nMostly, at least. The end"
    units = segment(text, step=step)
    assert " ".join(units) == " ".join(text.split())
    assert units == segment(text, step=1)


def test_flush_on_empty_or_blank_text_gives_nothing() -> None:
    assert segment("") == []
    assert segment("   \n  ") == []


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("**Paris** is the _capital_.", "Paris is the capital."),
        ("## Cats", "Cats"),
        ("- a bullet item", "a bullet item"),
        ("* another bullet", "another bullet"),
        ("1. First thing", "First thing"),
        ("> a quote", "a quote"),
        ("Use `print()` here", "Use print() here"),
        ("```python", ""),
        ("See [the docs](https://example.com) now", "See the docs now"),
        ("| a | b |", "a b"),
        ("Great job! 🎉😀", "Great job!"),
        ("It is 25°C and snake_case stays.", "It is 25°C and snake_case stays."),
        ("***", ""),
    ],
)
def test_speakable_text_drops_markdown_and_emoji(markdown: str, spoken: str) -> None:
    assert speakable_text(markdown) == spoken
