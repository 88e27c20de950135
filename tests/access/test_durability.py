"""``kill -9`` of a server under load: no ledger row is lost, neither of a request the
client saw complete nor of one cut mid-answer, and every audio id a client was given as
complete is still there after the restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import openai

from omnivox.access.ledger import LedgerEntry, SqliteLedger
from tests.access.conftest import FAKE_ENGINE, MINI, keyed_client, make_key, serve_process

LOAD_S = 1.5
N_CLIENTS = 6


def test_kill_9_under_load_loses_no_completed_row(tmp_path: Path) -> None:
    key = make_key(tmp_path, "load", tier="5")
    seen: list[str] = []  # completion ids of answers the clients received whole
    stop = threading.Event()

    def load(base_url: str, streaming: bool) -> None:
        client = keyed_client(base_url, key, timeout=10)
        while not stop.is_set():
            try:
                if streaming:
                    chunks = list(
                        client.chat.completions.create(
                            model="gpt-4o-mini-audio-preview",
                            messages=[{"role": "user", "content": "count to 20"}],
                            stream=True,
                            stream_options={"include_usage": True},
                        )
                    )
                    if chunks and chunks[-1].usage is not None:
                        seen.append(chunks[0].id)
                else:
                    completion = client.chat.completions.create(
                        model="gpt-4o-mini-audio-preview",
                        messages=[{"role": "user", "content": "hello there"}],
                    )
                    seen.append(completion.id)
            except (openai.APIError, httpx.HTTPError):
                return  # the server is gone

    with serve_process(FAKE_ENGINE, tmp_path) as served:
        threads = [
            threading.Thread(target=load, args=(served.base_url, i % 2 == 0))
            for i in range(N_CLIENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(LOAD_S)
        os.kill(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert len(seen) > 20, "the load never got going"
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    completed = {e.completion_id for e in ledger.entries_now() if e.status == "completed"}
    ledger.close_now()
    missing = [c for c in seen if c not in completed]
    assert missing == [], f"{len(missing)} of {len(seen)} completed answers have no ledger row"


# --- kill -9 mid-answer: rows from admission, ids durable once given ---------------------

WAIT_S = 60  # generous: these wait for things that must happen, never for a duration
SPOKEN = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "pcm16"}}
SLOW = "slow " * 100  # about 20 s of words: certainly cut by the kill


@dataclass
class Answers:
    """What the clients saw, by request id (the ``x-request-id`` header)."""

    whole: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # id, usage
    cut: set[str] = field(default_factory=set)
    audio_ids: set[str] = field(default_factory=set)  # given complete: expiry or whole JSON
    lock: threading.Lock = field(default_factory=threading.Lock)


def tokens_of(usage: dict[str, Any]) -> tuple[int, int, int, int]:
    prompt, completion = usage["prompt_tokens_details"], usage["completion_tokens_details"]
    return (
        prompt["text_tokens"],
        prompt["audio_tokens"],
        completion["text_tokens"],
        completion["audio_tokens"],
    )


def stream(
    client: httpx.Client, answers: Answers, text: str, on_expiry: Callable[[], None] | None = None
) -> None:
    body = {"model": MINI, "stream": True, "stream_options": {"include_usage": True}, **SPOKEN}
    body["messages"] = [{"role": "user", "content": text}]
    request_id = None
    try:
        with client.stream("POST", "/chat/completions", json=body) as response:
            request_id = response.headers["x-request-id"]
            completion_id, usage, audio_id, done = "", None, "", False
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    completion_id, usage = chunk["id"], chunk.get("usage") or usage
                    for choice in chunk["choices"]:
                        audio = choice["delta"].get("audio") or {}
                        audio_id = audio.get("id", audio_id)
                        if "expires_at" in audio:
                            with answers.lock:
                                answers.audio_ids.add(audio_id)
                            if on_expiry is not None:
                                on_expiry()
        with answers.lock:
            if done and usage is not None:
                answers.whole[request_id] = (completion_id, usage)
            else:
                answers.cut.add(request_id)
    except httpx.HTTPError:
        if request_id is not None:
            with answers.lock:
                answers.cut.add(request_id)
        raise


def ask_whole(client: httpx.Client, answers: Answers) -> None:
    body = {"model": MINI, **SPOKEN, "audio": {"voice": "alloy", "format": "wav"}}
    body["messages"] = [{"role": "user", "content": "hello there"}]
    request_id = None
    try:
        with client.stream("POST", "/chat/completions", json=body) as response:
            request_id = response.headers["x-request-id"]
            completion = json.loads(response.read())
        with answers.lock:
            answers.whole[request_id] = (completion["id"], completion["usage"])
            answers.audio_ids.add(completion["choices"][0]["message"]["audio"]["id"])
    except (httpx.HTTPError, ValueError):  # cut mid-body: no JSON
        if request_id is not None:
            with answers.lock:
                answers.cut.add(request_id)
        raise


def ledger_now(data_dir: Path) -> dict[str, LedgerEntry]:
    ledger = SqliteLedger(data_dir / "access.sqlite3")
    try:
        return {e.request_id: e for e in ledger.entries_now()}
    finally:
        ledger.close_now()


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_kill_9_mid_answer_leaves_every_row_and_every_given_audio_id(tmp_path: Path) -> None:
    key = make_key(tmp_path, "load", tier="5")
    auth = {"authorization": f"Bearer {key}"}
    answers = Answers()
    stop = threading.Event()

    def load(base_url: str, streaming: bool) -> None:
        with httpx.Client(base_url=base_url, headers=auth, timeout=WAIT_S) as client:
            while not stop.is_set():
                try:
                    if streaming:
                        stream(client, answers, "count to 8")
                    else:
                        ask_whole(client, answers)
                except (httpx.HTTPError, ValueError):
                    return  # the server is gone

    def slow(base_url: str) -> None:
        with (
            httpx.Client(base_url=base_url, headers=auth, timeout=WAIT_S) as client,
            contextlib.suppress(httpx.HTTPError),
        ):
            stream(client, answers, SLOW)

    with serve_process(FAKE_ENGINE, tmp_path) as served:
        threads = [
            threading.Thread(target=load, args=(served.base_url, i % 2 == 0))
            for i in range(N_CLIENTS - 2)
        ]
        for t in threads:
            t.start()
        wait_for("20 whole answers", lambda: len(answers.whole) >= 20)
        threads.append(threading.Thread(target=slow, args=(served.base_url,)))
        threads[-1].start()
        # The slow answer's row is kept up to date while it is made (about once a second).
        wait_for(
            "the row of the answer in progress to count its tokens",
            lambda: any(
                e.status == "in_progress" and e.completion_audio_tokens > 0
                for e in ledger_now(tmp_path).values()
            ),
        )

        def kill() -> None:  # right after an expiry, before anything else can be written
            os.kill(served.process.pid, signal.SIGKILL)

        with (
            httpx.Client(base_url=served.base_url, headers=auth, timeout=WAIT_S) as client,
            contextlib.suppress(httpx.HTTPError),
        ):
            stream(client, answers, "count to 3", on_expiry=kill)
        served.process.wait(timeout=WAIT_S)
        stop.set()
        for t in threads:
            t.join(timeout=WAIT_S)
    rows = ledger_now(tmp_path)
    for request_id, (completion_id, usage) in answers.whole.items():
        row = rows[request_id]
        assert (row.status, row.completion_id) == ("completed", completion_id)
        assert (
            row.prompt_text_tokens,
            row.prompt_audio_tokens,
            row.completion_text_tokens,
            row.completion_audio_tokens,
        ) == tokens_of(usage)
    assert answers.cut, "the kill cut no answer"
    lost = [request_id for request_id in answers.cut if request_id not in rows]
    assert lost == [], f"{len(lost)} of {len(answers.cut)} cut answers have no ledger row"
    running = {e.request_id: e for e in rows.values() if e.status == "in_progress"}
    assert any(e.completion_audio_tokens for e in running.values())

    unknown = []
    with (
        serve_process(FAKE_ENGINE, tmp_path) as served,  # the same data directory
        httpx.Client(base_url=served.base_url, headers=auth, timeout=WAIT_S) as client,
    ):
        usage = client.get("/usage").json()  # the rows cut by the kill are closed by now
        for audio_id in sorted(answers.audio_ids):
            body = {
                "model": MINI,
                "messages": [
                    {"role": "user", "content": "say something"},
                    {"role": "assistant", "audio": {"id": audio_id}},
                    {"role": "user", "content": "and again"},
                ],
            }
            response = client.post("/chat/completions", json=body)
            if response.status_code != 200:
                unknown.append((audio_id, response.text))
    assert unknown == [], f"{len(unknown)} of {len(answers.audio_ids)} given audio ids are lost"
    after = ledger_now(tmp_path)
    for request_id, before in running.items():  # closed at the restart, tokens kept
        assert after[request_id] == replace(before, status="failed", cost_usd=0.0)
    assert not [e for e in after.values() if e.status == "in_progress"]
    assert usage["requests"] == len(rows), "each request counted once"
    assert usage["statuses"]["failed"] == len(running) and "in_progress" not in usage["statuses"]
