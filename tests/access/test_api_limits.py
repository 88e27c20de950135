"""Rate limits through the SDK: headers, 429 bodies and retry headers, token charges, the ledger."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import openai
import pytest

from omnivox.access.ledger import SqliteLedger
from tests.access.conftest import MINI, ask, keyed_client, make_key

RATE_MESSAGE = re.compile(
    r"^Rate limit reached for (?P<model>\S+) for key '(?P<key>[^']+)' on (?P<what>.+?): "
    r"Limit (?P<limit>\d+), Used (?P<used>\d+), Requested (?P<requested>\d+)\. "
    r"Please try again in (?P<wait>[0-9.hms]+)\. "
    r"Visit https://platform.openai.com/account/rate-limits to learn more\.$"
)
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)


def seconds_of(go_duration: str) -> float:
    """Seconds in a Go duration under an hour, such as ``20s``, ``19.994s`` or ``1m0.5s``."""
    match = re.fullmatch(r"(?:(\d+)m)?(\d+(?:\.\d+)?)s", go_duration)
    assert match is not None, go_duration
    return 60 * int(match[1] or 0) + float(match[2])


def ledger_rows(data_dir: Path) -> list:
    ledger = SqliteLedger(data_dir / "access.sqlite3")
    try:
        return ledger.entries_now()
    finally:
        ledger.close_now()


def test_headers_are_present_and_decrease_then_a_429_says_why(keyed_server, tmp_path) -> None:
    key = make_key(tmp_path, "ci", tier="free")  # 3 RPM, 200 RPD, 40,000 TPM
    client = keyed_client(keyed_server().base_url, key)
    seen = []
    for _ in range(3):
        response = ask(client, max_completion_tokens=100)
        assert all(name in response.headers for name in RATE_HEADERS)
        seen.append(response.headers)
    assert [h["x-ratelimit-limit-requests"] for h in seen] == ["3", "3", "3"]
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["2", "1", "0"]
    assert [h["x-ratelimit-limit-tokens"] for h in seen] == ["40000"] * 3
    # charged at admission: the prompt's estimate (7: 11 characters / 4, and 4 for the
    # message) with the maximum output; the exact prompt is 5 tokens
    assert int(seen[0]["x-ratelimit-remaining-tokens"]) == 40_000 - (7 + 100)
    # Each reset is read at that request's last limit decision, so the meter has drained
    # for however long the request took to reach it: 20 s for one request less a moment.
    resets = [seconds_of(h["x-ratelimit-reset-requests"]) for h in seen]
    assert 15 < resets[0] <= 20 and 30 < resets[1] <= 40 and resets[1] > resets[0]

    with pytest.raises(openai.RateLimitError) as caught:
        ask(client, max_completion_tokens=100)
    error = caught.value
    assert (error.code, error.type, error.param) == ("rate_limit_exceeded", "requests", None)
    match = RATE_MESSAGE.match(error.body["message"])
    assert match is not None, error.body["message"]
    assert match["model"] == MINI and match["key"] == "ci"
    assert match["what"] == "requests per min (RPM)"
    assert (match["limit"], match["used"], match["requested"]) == ("3", "3", "1")
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 20
    assert 10_000 < float(headers["retry-after-ms"]) <= 20_000  # 20 s less the time taken
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-request-id"].startswith("req_")
    assert [r.status for r in ledger_rows(tmp_path)] == ["completed"] * 3 + ["rate_limited"]


def test_tokens_in_flight_count_and_the_429_names_tokens(keyed_server, tmp_path) -> None:
    key = make_key(tmp_path, "ci", tpm=300)
    server = keyed_server()
    client = keyed_client(server.base_url, key)
    stream_body = {
        "model": MINI,
        "messages": [{"role": "user", "content": "slow one"}],
        "stream": True,
        "max_completion_tokens": 200,
    }
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=stream_body, headers=headers
    ) as streaming:  # 6 estimated prompt tokens + 200 charged while it runs
        assert streaming.status_code == 200
        assert streaming.headers["x-ratelimit-remaining-tokens"] == str(300 - 206)
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, max_completion_tokens=150)
        body = b"".join(streaming.iter_bytes())
    assert body.endswith(b"data: [DONE]\n\n")
    error = caught.value
    assert error.type == "tokens" and error.code == "rate_limit_exceeded"
    match = RATE_MESSAGE.match(error.body["message"])
    assert match is not None and match["what"] == "tokens per min (TPM)"
    assert (match["limit"], match["requested"]) == ("300", str(7 + 150))
    assert 200 <= int(match["used"]) <= 206
    assert "retry-after" in error.response.headers
    # Once the stream ended its charge was corrected to what it used, so this fits.
    assert ask(client, max_completion_tokens=150).http_response.status_code == 200
    statuses = sorted(r.status for r in ledger_rows(tmp_path))
    assert statuses == ["completed", "completed", "rate_limited"]


def test_a_request_larger_than_the_tpm_limit_is_never_retried(
    keyed_server, tmp_path, request: pytest.FixtureRequest
) -> None:
    key = make_key(tmp_path, "ci", tpm=300)
    server = keyed_server()
    attempts: list[int] = []
    http_client = httpx.Client(event_hooks={"response": [lambda r: attempts.append(r.status_code)]})
    request.addfinalizer(http_client.close)
    client = keyed_client(server.base_url, key, max_retries=3, http_client=http_client)
    for max_tokens, requested in ((400, 400), (296, 301)):  # output alone / with the prompt
        attempts.clear()
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, max_completion_tokens=max_tokens)
        assert attempts == [429]
        error = caught.value
        assert error.response.headers["x-should-retry"] == "false"
        assert error.response.headers["x-ratelimit-limit-tokens"] == "300"
        assert error.response.headers["x-ratelimit-remaining-tokens"] == "300"  # charged nothing
        assert error.type == "tokens" and error.code == "rate_limit_exceeded"
        assert error.body["message"] == (
            f"Request too large for {MINI} for key 'ci' on tokens per min (TPM): Limit 300, "
            f"Requested {requested}. The input or output tokens must be reduced in order to "
            "run successfully. Visit https://platform.openai.com/account/rate-limits to learn "
            "more."
        )


def test_without_a_max_the_default_charge_never_makes_a_request_too_large(
    keyed_server, tmp_path
) -> None:
    key = make_key(tmp_path, "ci", tpm=300)
    response = ask(keyed_client(keyed_server().base_url, key))
    assert response.http_response.status_code == 200
    assert response.headers["x-ratelimit-remaining-tokens"] == "0"  # charged all that was left


def test_without_a_max_the_default_charge_is_what_the_minute_has_left(
    keyed_server, tmp_path
) -> None:
    key = make_key(tmp_path, "ci", tpm=1_000)
    client = keyed_client(keyed_server().base_url, key)
    for _ in range(3):  # each uses 9 tokens: the next one's output charge is what is left
        response = ask(client)
        assert response.http_response.status_code == 200
        assert response.headers["x-ratelimit-remaining-tokens"] == "0"


def test_a_request_refused_before_admission_shows_the_limits_and_charges_nothing(
    keyed_server, tmp_path
) -> None:
    key = make_key(tmp_path, "ci", rpm=5)
    server = keyed_server()
    client = keyed_client(server.base_url, key)
    ask(client)
    for body in (
        {"model": MINI, "messages": "not a list"},  # 400, invalid
        # 404; "mini" in the name: the same model class, so the same meters
        {"model": "no-such-mini-model", "messages": [{"role": "user", "content": "hi"}]},
    ):
        response = httpx.post(
            server.base_url + "/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code in (400, 404), response.text
        assert response.headers["x-ratelimit-limit-requests"] == "5"
        assert response.headers["x-ratelimit-remaining-requests"] == "4"  # only the first counts
        assert "x-ratelimit-reset-tokens" in response.headers
    rows = ledger_rows(tmp_path)
    assert [r.status for r in rows] == ["completed", "rejected", "rejected"]
    assert [r.model for r in rows][1:] == [MINI, "no-such-mini-model"]
    assert rows[2].model_snapshot == "" and rows[2].cost_usd == 0


def test_a_key_whose_tier_the_server_does_not_define_gets_a_clear_403(
    keyed_server, tmp_path
) -> None:
    key = make_key(tmp_path, "ci", tier="team")  # e.g. made with another limits file
    with pytest.raises(openai.PermissionDeniedError) as caught:
        ask(keyed_client(keyed_server().base_url, key))
    assert caught.value.code == "unknown_tier"
    assert "usage tier 'team' is not defined on this server" in caught.value.body["message"]


def test_the_charge_is_corrected_to_actual_usage(keyed_server, tmp_path) -> None:
    key = make_key(tmp_path, "ci", tpm=10_000)
    client = keyed_client(keyed_server().base_url, key)
    first = ask(client, max_completion_tokens=400)
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 10_000 - 407
    second = ask(client, max_completion_tokens=400)
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert remaining >= 10_000 - 9 - 407  # the first used 9 tokens, not 407
    usage = first.parse().usage
    assert usage is not None and usage.total_tokens == 9


def test_the_sdk_waits_as_told_and_its_retry_succeeds(
    keyed_server, tmp_path, request: pytest.FixtureRequest
) -> None:
    key = make_key(tmp_path, "ci", rpm=30)  # one request every 2 s once the 30 are used
    server = keyed_server()
    fast = keyed_client(server.base_url, key)
    for _ in range(30):
        ask(fast)
    attempts: list[tuple[int, float, str | None]] = []

    def seen(r: httpx.Response) -> None:
        attempts.append((r.status_code, time.monotonic(), r.headers.get("retry-after-ms")))

    http_client = httpx.Client(event_hooks={"response": [seen]})
    request.addfinalizer(http_client.close)
    patient = keyed_client(server.base_url, key, max_retries=2, http_client=http_client)
    response = ask(patient)
    assert response.http_response.status_code == 200
    assert [status for status, _, _ in attempts] == [429, 200]
    told_s = int(attempts[0][2] or 0) / 1000
    assert 0 < told_s <= 2  # one slot every 2 s
    # The retry came no sooner than told (however slow the host, never sooner).
    assert attempts[1][1] - attempts[0][1] >= told_s * 0.9


def test_errors_after_admission_carry_the_headers_and_a_ledger_row(keyed_server, tmp_path) -> None:
    key = make_key(tmp_path, "ci", tier="2")
    client = keyed_client(keyed_server().base_url, key)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MINI,
            messages=[
                {"role": "assistant", "audio": {"id": "audio_0123456789abcdef0123456789abcdef"}},
                {"role": "user", "content": "and then?"},
            ],
        )
    assert caught.value.code == "audio_not_found"
    assert caught.value.response.headers["x-ratelimit-limit-requests"] == "5000"
    (row,) = ledger_rows(tmp_path)
    assert (row.status, row.cost_usd, row.key_name, row.model) == ("rejected", 0.0, "ci", MINI)


def test_a_streamed_answer_is_in_the_ledger_when_its_last_chunk_arrives(
    keyed_server, tmp_path
) -> None:
    key = make_key(tmp_path, "ci")
    client = keyed_client(keyed_server().base_url, key)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-audio-preview",
        messages=[{"role": "user", "content": "count to 5"}],
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "pcm16"},
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-ratelimit-limit-tokens"] == "30000"
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    (row,) = ledger_rows(tmp_path)
    assert row.status == "completed" and row.completion_id == chunks[0].id
    assert row.model_class == "gpt-4o-audio"
    assert row.completion_audio_tokens == usage.completion_tokens_details.audio_tokens > 0
    assert row.prompt_text_tokens + row.prompt_audio_tokens == usage.prompt_tokens
    expected = (
        row.prompt_text_tokens * 2.5
        + row.completion_text_tokens * 10
        + row.completion_audio_tokens * 80
    ) / 1e6
    assert row.cost_usd == pytest.approx(expected)


def test_a_request_refused_after_admission_hands_its_tokens_back(keyed_server, tmp_path) -> None:
    key = make_key(tmp_path, "ci", tpm=1_000)
    server = keyed_server()
    bad_audio = {
        "type": "input_audio",
        "input_audio": {"data": "bm90IGF1ZGlv" * 50, "format": "wav"},
    }
    response = httpx.post(
        server.base_url + "/chat/completions",
        json={
            "model": MINI,
            "messages": [{"role": "user", "content": [bad_audio]}],
            "max_completion_tokens": 500,
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400, response.text  # the audio is refused after admission
    assert response.headers["x-ratelimit-remaining-tokens"] == "1000"
    assert response.headers["x-ratelimit-remaining-requests"] == "499"  # the request counts
    following = ask(keyed_client(server.base_url, key), max_completion_tokens=500)
    assert following.headers["x-ratelimit-remaining-tokens"] == str(1_000 - 507)


def test_a_keyed_request_too_large_to_read_is_refused_in_openai_words(
    keyed_server, tmp_path
) -> None:
    key = make_key(tmp_path, "ci")
    server = keyed_server(max_body_bytes=10_000)
    body = {"model": MINI, "messages": [{"role": "user", "content": "x" * 50_000}]}
    for headers in ({}, {"content-length": None}):  # declared, and streamed without a length
        response = httpx.post(
            server.base_url + "/chat/completions",
            content=(json.dumps(body).encode() for _ in range(1)) if headers else json.dumps(body),
            headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large"
    assert ask(keyed_client(server.base_url, key)).http_response.status_code == 200
