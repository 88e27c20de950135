"""``/v1/models``: the served model, its snapshot and OpenAI's names and snapshots as aliases."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import sdk_client
from tests.support.fake_engine import FakeEngine


def test_list_has_alias_snapshot_and_openai_names(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["omnivox-audio", "omnivox-audio-2026-11-22"]
    for name in (
        "gpt-4o-audio-preview",
        "gpt-4o-mini-audio-preview",
        "gpt-audio",
        "gpt-audio-mini",
        "gpt-4o-audio-preview-2025-06-03",
        "gpt-4o-audio-preview-2024-12-17",
        "gpt-4o-mini-audio-preview-2024-12-17",
        "gpt-audio-2025-08-28",
    ):
        assert name in ids


def test_retrieve_one_model(client: openai.OpenAI) -> None:
    model = client.models.retrieve("gpt-4o-mini-audio-preview")
    assert (model.id, model.object, model.owned_by) == (
        "gpt-4o-mini-audio-preview",
        "model",
        "omnivox",
    )
    assert model.created > 1_700_000_000


@pytest.mark.parametrize(
    ("name", "snapshot"),
    [
        ("omnivox-audio", "omnivox-audio-2026-11-22"),
        ("omnivox-audio-2026-11-22", "omnivox-audio-2026-11-22"),
        ("gpt-4o-audio-preview", "gpt-4o-audio-preview-2025-06-03"),
        ("gpt-4o-mini-audio-preview", "gpt-4o-mini-audio-preview-2024-12-17"),
        ("gpt-audio", "gpt-audio-2025-08-28"),
        ("gpt-audio-mini", "gpt-audio-mini-2025-10-06"),
        ("gpt-4o-audio-preview-2024-12-17", "gpt-4o-audio-preview-2024-12-17"),
    ],
)
def test_each_name_answers_with_its_own_snapshot(
    client: openai.OpenAI, name: str, snapshot: str
) -> None:
    """As OpenAI's: the dated snapshot of the name asked, so clients can price the call."""
    completion = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.model == snapshot
    chunks = list(
        client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert {chunk.model for chunk in chunks} == {snapshot}


def test_a_snapshot_is_retrievable_with_its_date(client: openai.OpenAI) -> None:
    model = client.models.retrieve("gpt-4o-audio-preview-2025-06-03")
    assert model.created == 1748908800  # 2025-06-03T00:00:00Z


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("whisper-9")
    assert err.value.code == "model_not_found"


def test_openai_aliases_can_be_turned_off(make_server) -> None:
    server = make_server(openai_aliases=False, model_id="house-voice")
    client = sdk_client(server.base_url)
    assert [m.id for m in client.models.list()] == ["house-voice", "house-voice-2026-11-22"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "hi"}]
        )


def test_health_reports_ready(fake_server) -> None:
    response = httpx.get(fake_server.root + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["x-request-id"].startswith("req_")


def test_the_fingerprint_names_the_engine_and_its_models(fake_server, make_server) -> None:
    """Two servers on other models must not claim the same system_fingerprint."""

    class OtherModels(FakeEngine):
        def model_names(self) -> tuple[str, ...]:
            return ("fake words", "other tones")

    def fingerprint(base_url: str) -> str | None:
        completion = sdk_client(base_url).chat.completions.create(
            model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "hi"}]
        )
        return completion.system_fingerprint

    same = fingerprint(fake_server.base_url)
    assert same == fingerprint(make_server().base_url)  # the same models: the same print
    assert same != fingerprint(make_server(engine=OtherModels()).base_url)


def test_health_names_the_engine_and_its_models(fake_server) -> None:
    """The engine's own identity, the same that feeds the system_fingerprint."""
    body = httpx.get(fake_server.root + "/health").json()
    assert body["engine"] == "fake"
    assert body["models"] == ["fake words", "fake tones"]
