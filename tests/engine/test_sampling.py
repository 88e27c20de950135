"""Every sampling parameter changes what the real embedded chat model writes, as a client
would see it through the server: seeds reproduce text and audio bytes, top_p 0 and
temperature 0 are greedy, n samples differ, stop sequences cut (also inside tokens),
token limits end with "length", penalties change repetition, logit_bias -100 bans a
token, and logprobs have the shape of §2."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from omnivox.engines.cascade.engine import CascadeEngine
from tests.conftest import sdk_client
from tests.engine.test_tools import lend
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.engine

MODEL = "gpt-4o-audio-preview"
CATS = "Tell me about cats."
FRANCE = "What is the capital of France?"
OPEN_QUESTIONS = (  # long answers, in which words come back
    CATS,
    "Describe the ocean.",
    "Write a short story about a dog.",
    "Explain how rain forms.",
    "Tell me about the moon.",
)


@pytest.fixture(scope="module")
def server(
    cascade: CascadeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = lend(cascade, tmp_path_factory.mktemp("sampling"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return sdk_client(server.base_url)


def complete(client: openai.OpenAI, question: str, **params: Any) -> Any:
    params.setdefault("max_completion_tokens", 40)
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}], **params
    )


def text_of(client: openai.OpenAI, question: str, **params: Any) -> str:
    return complete(client, question, **params).choices[0].message.content or ""


def test_the_same_seed_gives_the_same_text_and_audio_bytes(client: openai.OpenAI) -> None:
    def spoken(seed: int) -> tuple[str, bytes]:
        completion = complete(
            client,
            CATS,
            seed=seed,
            temperature=1.0,
            max_completion_tokens=24,
            modalities=["text", "audio"],
            audio={"voice": "coral", "format": "wav"},
        )
        audio = completion.choices[0].message.audio
        return audio.transcript, base64.b64decode(audio.data)

    first, again, other = spoken(11), spoken(11), spoken(12)
    assert first[0] and first == again  # the transcript and every byte of the WAV
    assert len(first[1]) > 24_000
    assert other[0] != first[0]


def test_temperature_zero_and_top_p_zero_are_greedy(client: openai.OpenAI) -> None:
    greedy = text_of(client, CATS, temperature=0)
    assert greedy == text_of(client, CATS, temperature=0)
    assert text_of(client, CATS, temperature=1.5, top_p=0, seed=3) == greedy


def test_n_samples_differ_and_a_seed_reproduces_them(client: openai.OpenAI) -> None:
    def sample() -> list[str]:
        completion = complete(client, CATS, n=2, seed=5, temperature=1.2, max_completion_tokens=16)
        assert [c.index for c in completion.choices] == [0, 1]
        return [c.message.content or "" for c in completion.choices]

    first = sample()
    assert first[0] != first[1]
    assert sample() == first


def test_stop_sequences_cut_the_text_even_inside_tokens(client: openai.OpenAI) -> None:
    completion = complete(client, FRANCE, temperature=0, logprobs=True)
    full = completion.choices[0].message.content or ""
    tokens = [t.token for t in completion.choices[0].logprobs.content or []]
    # a stop sequence that begins inside one token and ends inside the next
    k = next(i for i in range(2, len(tokens) - 1) if len(tokens[i]) > 2 and len(tokens[i + 1]) > 2)
    stop = tokens[k][1:] + tokens[k + 1][:2]
    expected = full[: full.index(stop)]
    for stream in (False, True):
        stops = ["never written", stop, "nor this", "zzz"]
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": FRANCE}],
                    temperature=0,
                    max_completion_tokens=40,
                    stop=stops,
                    stream=True,
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reasons = [
                c.choices[0].finish_reason
                for c in chunks
                if c.choices and c.choices[0].finish_reason
            ]
        else:
            cut = complete(client, FRANCE, temperature=0, stop=stops)
            text = cut.choices[0].message.content or ""
            reasons = [cut.choices[0].finish_reason]
        assert text == expected and stop not in text
        assert reasons == ["stop"]
    assert text_of(client, FRANCE, temperature=0, stop=stop) == expected  # a single string


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_a_token_limit_finishes_with_length(client: openai.OpenAI, limit: str) -> None:
    completion = complete(client, CATS, temperature=0, **{"max_completion_tokens": None, limit: 5})
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def repeat_share(client: openai.OpenAI, **penalty: float) -> float:
    """The share of answer tokens that repeat an earlier token of the same answer, pooled
    over ``OPEN_QUESTIONS`` answered greedily (what the penalties count: tokens)."""
    repeats = written = 0
    for question in OPEN_QUESTIONS:
        completion = complete(
            client, question, temperature=0, max_completion_tokens=60, logprobs=True, **penalty
        )
        tokens = [t.token for t in completion.choices[0].logprobs.content or []]
        repeats += len(tokens) - len(set(tokens))
        written += len(tokens)
    assert written > 0
    return repeats / written


def test_penalties_change_how_often_words_repeat(client: openai.OpenAI) -> None:
    # Pooled over several questions and compared with no penalty, not one answer against
    # a fixed margin: which token a greedy answer takes at a near tie depends on the CPU's
    # floating-point path, and one answer alone can then repeat more under a penalty.
    # Pooled, the gap dwarfs that: here about 0.19 of the tokens repeat without penalty,
    # 0.08 to 0.1 with either penalty at 2 and 0.6 at -2, and noise of sd 1 added to every
    # logit at every step (far more than any floating-point path) kept each share on its
    # side. An ignored penalty gives the same answers, so it fails its comparison.
    plain = repeat_share(client)
    assert repeat_share(client, frequency_penalty=-2) > plain  # "curious, curious, curious"
    assert repeat_share(client, frequency_penalty=2) < plain
    assert repeat_share(client, presence_penalty=2) < plain


def test_logit_bias_minus_100_bans_a_token(client: openai.OpenAI, cascade: CascadeEngine) -> None:
    assert cascade.generator.count_tokens(" Paris") == 1
    paris = cascade.generator.tokenize_prompt(" Paris")[-1]

    def tokens(**params: Any) -> list[str]:
        completion = complete(client, FRANCE, temperature=0, logprobs=True, **params)
        return [t.token for t in completion.choices[0].logprobs.content or []]

    assert " Paris" in tokens()
    banned = tokens(logit_bias={str(paris): -100})
    assert banned and " Paris" not in banned
    assert tokens(logit_bias={str(paris): 100})[0] == " Paris"  # +100 all but forces it


def test_logprobs_have_the_shape_of_section_2(client: openai.OpenAI) -> None:
    completion = complete(
        client, CATS, temperature=0, logprobs=True, top_logprobs=5, max_completion_tokens=12
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.refusal is None and logprobs.content
    assert len(logprobs.content) == 12 == completion.usage.completion_tokens
    assert "".join(t.token for t in logprobs.content) == completion.choices[0].message.content
    for entry in logprobs.content:
        assert entry.logprob <= 0 and entry.bytes == list(entry.token.encode())
        assert len(entry.top_logprobs) == 5
        values = [t.logprob for t in entry.top_logprobs]
        assert values == sorted(values, reverse=True) and values[0] >= entry.logprob
        assert all(t.bytes == list(t.token.encode()) for t in entry.top_logprobs)
    streamed = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": CATS}],
        temperature=0,
        logprobs=True,
        top_logprobs=0,
        max_completion_tokens=12,
        stream=True,
    )
    entries = [
        e
        for c in streamed
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content or []
    ]
    assert [e.token for e in entries] == [t.token for t in logprobs.content]
    assert all(e.top_logprobs == [] for e in entries)
    plain = complete(client, CATS, temperature=0, max_completion_tokens=4)
    assert plain.choices[0].logprobs is None
