"""Property-based fuzzing of every route, from the server's own OpenAPI document.

Schemathesis generates requests from ``/openapi.json``, valid ones and invalid ones,
and sends them with a key to a keyed server over the fake engine (with tools and
structured outputs). Every answer must be a success or an error in OpenAI's shape
with ``x-request-id``, never a 5xx; every keyed chat refusal must carry the rate-limit
headers; and every chat request must leave its ledger row.

``OMNIVOX_FUZZ_EXAMPLES`` sets the examples per route (default: a CI-sized run of a
minute or two); ``OMNIVOX_FUZZ_REPORT`` names a JSON file for the counts
(``bench/hostile.py`` runs this module long and reports them).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from omnivox.access.ledger import SqliteLedger
from tests.access.conftest import make_key, start_keyed_server
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import LiveServer

EXAMPLES = int(os.environ.get("OMNIVOX_FUZZ_EXAMPLES", "300"))
REPORT = os.environ.get("OMNIVOX_FUZZ_REPORT")
CHAT = "/v1/chat/completions"
SPEECH = "/v1/audio/speech"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
TRANSLATIONS = "/v1/audio/translations"
RESPONSES = "/v1/responses"
METERED = (CHAT, SPEECH, TRANSCRIPTIONS, TRANSLATIONS, RESPONSES)  # each leaves a ledger row
# Model names that take a request past the 404, into its own rules.
SERVED_MODELS = {
    CHAT: ["gpt-4o-audio-preview", "omnivox-audio"],
    SPEECH: ["tts-1", "omnivox-audio"],
    TRANSCRIPTIONS: ["whisper-1", "omnivox-audio"],
    TRANSLATIONS: ["whisper-1", "omnivox-audio"],
    RESPONSES: ["gpt-4o-audio-preview", "gpt-5.6-luna"],
}
ROUTES = [
    ("POST", CHAT),
    ("POST", SPEECH),
    ("POST", TRANSCRIPTIONS),
    ("POST", TRANSLATIONS),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/v1/usage"),
    ("GET", "/health"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/{file_id}"),
    ("DELETE", "/v1/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches"),
    ("GET", "/v1/batches/{batch_id}"),
    ("POST", "/v1/batches/{batch_id}/cancel"),
    ("POST", RESPONSES),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
    ("POST", "/v1/responses/{response_id}/cancel"),
    ("GET", "/v1/responses/{response_id}/input_items"),
    ("POST", "/v1/realtime/client_secrets"),
]
ERROR_FIELDS = {"message", "type", "param", "code"}


class Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.chat_requests = 0
        self.metered_requests = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.server_errors: list[str] = []
        self.bad_error_bodies: list[str] = []
        self.missing_limit_headers: list[str] = []

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "chat_requests": self.chat_requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": len(self.server_errors),
            "non_openai_error_bodies": len(self.bad_error_bodies),
            "keyed_refusals_without_limit_headers": len(self.missing_limit_headers),
            "examples": (self.server_errors + self.bad_error_bodies)[:5],
        }


TALLY = Tally()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, Path]]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    key = make_key(data_dir, "fuzz", tier="5")
    server = start_keyed_server(data_dir, FakeEngine(tools=True))
    yield server, key, data_dir
    server.stop()
    if REPORT:
        Path(REPORT).write_text(json.dumps(TALLY.to_json(), indent=2))


@pytest.fixture(scope="module")
def api_schema(fuzzed: tuple[LiveServer, str, Path]) -> Any:
    return schemathesis.openapi.from_url(fuzzed[0].root + "/openapi.json")


def test_the_fuzzing_covers_every_route(api_schema: Any) -> None:
    routes = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert routes == set(ROUTES)


def _is_openai_error(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(error) == ERROR_FIELDS
        and isinstance(error["message"], str)
        and bool(error["message"])
        and isinstance(error["type"], str)
        and (error["param"] is None or isinstance(error["param"], str))
        and (error["code"] is None or isinstance(error["code"], str))
    )


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_route_answers_5xx_or_an_error_outside_openai_shape(
    method: str, path: str, api_schema: Any, fuzzed: tuple[LiveServer, str, Path]
) -> None:
    server, key, _ = fuzzed
    operation = api_schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES if path in (CHAT, RESPONSES) else max(10, EXAMPLES // 5),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same requests on every run: a failure here reproduces
        database=None,
    )
    @given(cases, st.sampled_from([None, *SERVED_MODELS.get(path, [])]))
    def fuzz(case: Any, served_model: str | None) -> None:
        if served_model and isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
            case.body["model"] = served_model  # past the 404, into the request's own rules
        headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
        response = case.call(base_url=server.root, headers=headers, timeout=30)
        check(case, response)

    fuzz()


def check(case: Any, response: Any) -> None:
    TALLY.requests += 1
    TALLY.statuses[response.status_code] += 1
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    if case.path == CHAT:
        TALLY.chat_requests += 1
    if case.path in METERED:
        TALLY.metered_requests += 1
    if response.status_code >= 500:
        TALLY.server_errors.append(where)
    if response.status_code >= 400 and not _is_openai_error(response.text):
        TALLY.bad_error_bodies.append(where)
    if (
        case.path in METERED
        and 400 <= response.status_code < 500
        and "x-ratelimit-limit-requests" not in response.headers
    ):
        TALLY.missing_limit_headers.append(where)
    assert response.status_code < 500, where
    assert "x-request-id" in response.headers, where
    if response.status_code >= 400:
        assert _is_openai_error(response.text), where
    if case.path in METERED and 400 <= response.status_code < 500:
        assert "x-ratelimit-limit-requests" in response.headers, where


def test_every_fuzzed_metered_request_left_its_ledger_row(
    fuzzed: tuple[LiveServer, str, Path],
) -> None:
    """Runs after the fuzzing above (pytest keeps a module's order)."""
    if TALLY.metered_requests == 0:
        pytest.skip("the fuzzing test did not run")
    _, _, data_dir = fuzzed
    ledger = SqliteLedger(data_dir / "access.sqlite3")
    try:
        rows = ledger.entries_now()
    finally:
        ledger.close_now()
    assert len(rows) == TALLY.metered_requests
