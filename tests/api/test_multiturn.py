"""Multi-turn by audio id: earlier spoken answers are remembered until they expire."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import sdk_client
from tests.support.fake_engine import FakeEngine

MODEL = "gpt-4o-audio-preview"
AUDIO = {"voice": "alloy", "format": "wav"}


def speak(client: openai.OpenAI, messages: list[dict[str, object]]):
    return client.chat.completions.create(
        model=MODEL, modalities=["text", "audio"], audio=AUDIO, messages=messages
    )


def test_an_earlier_answer_is_resolved_by_its_audio_id(client: openai.OpenAI, fake_server) -> None:
    first = speak(client, [{"role": "user", "content": "remember this"}])
    audio = first.choices[0].message.audio
    assert audio is not None
    second = speak(
        client,
        [
            {"role": "user", "content": "remember this"},
            {"role": "assistant", "audio": {"id": audio.id}},
            {"role": "user", "content": "and now"},
        ],
    )
    assert second.choices[0].message.audio is not None
    usage = second.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    # the earlier answer ("You said: remember this", 4 x 0.25 s) is billed again at 20 tokens/s
    assert usage.prompt_tokens_details.audio_tokens == 20


def test_an_unknown_audio_id_is_audio_not_found(client: openai.OpenAI) -> None:
    missing = "audio_" + "0" * 32
    with pytest.raises(openai.BadRequestError) as err:
        speak(
            client,
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "audio": {"id": missing}},
                {"role": "user", "content": "b"},
            ],
        )
    assert err.value.code == "audio_not_found"
    assert err.value.param == "content.messages[1].audio.id"
    assert err.value.body["message"] == f"Assistant audio {missing} not found."  # type: ignore[index]


def test_an_expired_audio_id_is_audio_not_found(make_server) -> None:
    server = make_server(audio_ttl_s=1)
    client = sdk_client(server.base_url)
    audio = speak(client, [{"role": "user", "content": "short lived"}]).choices[0].message.audio
    assert audio is not None and audio.expires_at <= time.time() + 1
    time.sleep(2.1)
    with pytest.raises(openai.BadRequestError) as err:
        speak(
            client,
            [{"role": "assistant", "audio": {"id": audio.id}}, {"role": "user", "content": "b"}],
        )
    assert err.value.code == "audio_not_found"


def test_audio_ids_survive_a_restart(make_server, tmp_path) -> None:
    first_server = make_server(data_dir=tmp_path)
    audio = (
        speak(sdk_client(first_server.base_url), [{"role": "user", "content": "keep me"}])
        .choices[0]
        .message.audio
    )
    assert audio is not None
    first_server.stop()
    second_server = make_server(engine=FakeEngine(), data_dir=tmp_path)
    again = speak(
        sdk_client(second_server.base_url),
        [{"role": "assistant", "audio": {"id": audio.id}}, {"role": "user", "content": "b"}],
    )
    assert again.choices[0].message.audio is not None


def test_a_response_message_can_be_appended_to_the_history_as_is(client: openai.OpenAI) -> None:
    messages: list[object] = [{"role": "user", "content": "first question"}]
    first = speak(client, messages)  # type: ignore[arg-type]
    messages.append(first.choices[0].message)  # OpenAI's documented pattern
    messages.append({"role": "user", "content": "second question"})
    second = speak(client, messages)  # type: ignore[arg-type]
    assert second.choices[0].message.audio is not None
    usage = second.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.audio_tokens == 20  # the first answer, resolved by its id
    text = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    history = [
        {"role": "user", "content": "hi"},
        text.choices[0].message,
        {"role": "user", "content": "again"},
    ]
    again = client.chat.completions.create(model=MODEL, messages=history)  # type: ignore[arg-type]
    assert again.choices[0].message.content == "You said: again"
