"""The SDK clients a test makes, so that ``tests.conftest.close_clients`` closes them when
it ends: a client left open is collected later, during another test, whose
``ResourceWarning`` (an error in this suite) then fails that test."""

from __future__ import annotations

import openai

MADE_CLIENTS: list[openai.OpenAI] = []


def tracked(client: openai.OpenAI) -> openai.OpenAI:
    MADE_CLIENTS.append(client)
    return client
