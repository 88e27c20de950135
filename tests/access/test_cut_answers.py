"""An answer cut short is billed for what was made: the client leaving a stream, a client
leaving a folded answer (its fold cancelled), the engine failing mid-answer."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnivox.access.ledger import LedgerEntry, SqliteLedger
from omnivox.access.prices import DEFAULT_PRICES
from omnivox.access.tiers import model_class
from tests.access.conftest import MINI, make_key

WAIT_S = 20  # generous: these wait for things that must happen, never for a duration
AUDIO_TOKENS_PER_WORD = 5  # the fake engine speaks 0.25 s a word; 20 audio tokens a second
SPOKEN = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}}
SLOW = "slow " * 60  # about 12 s of words, one each 0.2 s


def rows(data_dir: Path) -> list[LedgerEntry]:
    ledger = SqliteLedger(data_dir / "access.sqlite3")
    try:
        return ledger.entries_now()
    finally:
        ledger.close_now()


def wait_for_row(data_dir: Path, wanted: Callable[[LedgerEntry], bool]) -> LedgerEntry:
    deadline = time.monotonic() + WAIT_S
    while True:
        found = [e for e in rows(data_dir) if wanted(e)]
        if found:
            assert len(found) == 1
            return found[0]
        assert time.monotonic() < deadline, f"no such row: {rows(data_dir)}"
        time.sleep(0.02)


def final_row(data_dir: Path, request_id: str) -> LedgerEntry:
    """The request's row once it has its outcome (the server writes it as the run ends)."""
    return wait_for_row(
        data_dir, lambda e: e.request_id == request_id and e.status != "in_progress"
    )


def cost(row: LedgerEntry) -> float:
    return DEFAULT_PRICES[model_class(row.model)].cost_usd(
        row.prompt_text_tokens,
        row.prompt_audio_tokens,
        row.completion_text_tokens,
        row.completion_audio_tokens,
    )


def check_billed_for_what_was_made(row: LedgerEntry, words_seen: int) -> None:
    assert row.status == "cancelled"
    assert row.completion_text_tokens >= words_seen  # the engine may have made a word more
    assert row.completion_text_tokens < len(SLOW.split())  # it did not run to the end
    # Each word's tone follows its word; the cut may fall between the two.
    made = row.completion_text_tokens * AUDIO_TOKENS_PER_WORD
    assert row.completion_audio_tokens in (made, made - AUDIO_TOKENS_PER_WORD)
    assert row.prompt_text_tokens > 0
    assert row.cost_usd == pytest.approx(cost(row)) and row.cost_usd > 0


def keyed_stream(base_url: str, key: str, body: dict[str, Any]) -> Any:
    """A streamed chat request with ``key``, as a context manager over the response."""
    return httpx.stream(
        "POST",
        base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=WAIT_S,
    )


def test_a_stream_the_client_left_is_billed_for_its_words_and_speech(
    keyed_server: Any, tmp_path: Path
) -> None:
    key = make_key(tmp_path, "ci", tier="5")
    server = keyed_server()
    body = {"model": MINI, "stream": True, **SPOKEN}
    body["messages"] = [{"role": "user", "content": SLOW}]
    words_seen = 0
    with keyed_stream(server.base_url, key, body) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: {") and '"transcript"' in line:
                words_seen += 1
                if words_seen == 4:
                    break  # leaves: the connection closes mid-answer
    check_billed_for_what_was_made(final_row(tmp_path, request_id), words_seen)


def test_a_folded_answer_the_client_left_over_http_is_billed_for_what_was_made(
    keyed_server: Any, tmp_path: Path
) -> None:
    key = make_key(tmp_path, "ci", tier="5")
    server = keyed_server()
    body = {"model": MINI, **SPOKEN, "audio": {"voice": "alloy", "format": "wav"}}
    body["messages"] = [{"role": "user", "content": SLOW}]
    host, port = server.root.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)
    connection.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(body),
        {"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    # Its row counts what is made (about once a second) while nothing has been answered.
    running = wait_for_row(
        tmp_path, lambda e: e.status == "in_progress" and e.completion_text_tokens >= 3
    )
    connection.close()  # leaves before the answer
    row = final_row(tmp_path, running.request_id)
    check_billed_for_what_was_made(row, running.completion_text_tokens)


def test_a_failed_generation_keeps_the_tokens_it_made_at_no_cost(
    keyed_server: Any, tmp_path: Path
) -> None:
    key = make_key(tmp_path, "ci", tier="5")
    server = keyed_server()
    body = {"model": MINI, "stream": True, **SPOKEN}
    body["messages"] = [{"role": "user", "content": "fail after one word"}]
    with keyed_stream(server.base_url, key, body) as response:
        request_id = response.headers["x-request-id"]
        events = [json.loads(line[6:]) for line in response.iter_lines() if line[6:7] == "{"]
    assert "error" in events[-1]
    row = final_row(tmp_path, request_id)
    assert row.status == "failed" and row.cost_usd == 0
    assert (row.completion_text_tokens, row.completion_audio_tokens) == (1, AUDIO_TOKENS_PER_WORD)
