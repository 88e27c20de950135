"""``check_context_window``: the one wording of a prompt that does not fit, for serving and engines."""

from __future__ import annotations

import pytest

from omnivox.engines.base import check_context_window
from omnivox.errors import ContextLengthExceededError


def test_a_prompt_that_fits_with_its_completion_passes() -> None:
    check_context_window(512, 500, 12)
    check_context_window(512, 511)


def test_messages_alone_too_long() -> None:
    with pytest.raises(ContextLengthExceededError) as err:
        check_context_window(512, 512)
    assert err.value.param == "messages"
    assert err.value.code == "context_length_exceeded"
    assert err.value.message == (
        "This model's maximum context length is 512 tokens. However, your messages resulted "
        "in 512 tokens. Please reduce the length of the messages."
    )


def test_messages_and_completion_too_long() -> None:
    with pytest.raises(ContextLengthExceededError) as err:
        check_context_window(512, 6, 510)
    assert err.value.message == (
        "This model's maximum context length is 512 tokens. However, you requested 516 "
        "tokens (6 in the messages, 510 in the completion). Please reduce the length of "
        "the messages or completion."
    )


def test_messages_too_long_are_named_first_as_an_engine_that_stops_early_names_them() -> None:
    with pytest.raises(ContextLengthExceededError, match="your messages resulted in 600"):
        check_context_window(512, 600, 10)
