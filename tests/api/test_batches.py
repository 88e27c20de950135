"""``/v1/batches``: batches of Chat Completions, Responses and audio requests, through the
official SDK with strict response validation, on the fake engine.

A batch runs in the server's background; the tests wait for it by polling its status
with a deadline (never asserting on how long it took).
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import openai
import pytest

from tests.access.conftest import (
    FAKE_ENGINE,
    keyed_client,
    make_key,
    serve_process,
    start_keyed_server,
)
from tests.support.fake_engine import FakeEngine, word_tone
from tests.support.live_server import LiveServer, start_server
from tests.support.media import b64

MODEL = "gpt-4o-audio-preview"
DEADLINE_S = 60


SPEECH = "/v1/audio/speech"
HEARD = "/v1/audio/transcriptions"
RESPONSES: Final = "/v1/responses"


def sdk(server: LiveServer, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url, api_key=key, max_retries=0, _strict_response_validation=True
    )


@pytest.fixture
def client(fake_server: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk(fake_server) as client:
        yield client


def line(custom_id: str, body: dict[str, Any], url: str = "/v1/chat/completions") -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def text_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def upload(client: openai.OpenAI, lines: list[str]) -> str:
    data = ("\n".join(lines) + "\n").encode()
    return client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch").id


def wait_for(
    client: openai.OpenAI, batch_id: str, done: Callable[[Any], bool] | None = None
) -> Any:
    final = {"completed", "failed", "expired", "cancelled"}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        batch = client.batches.retrieve(batch_id)
        if (done(batch) if done else batch.status in final) or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def run_file(client: openai.OpenAI, data: bytes) -> Any:
    """A chat batch of the file ``data``, once it has ended."""
    file_id = client.files.create(file=("b.jsonl", io.BytesIO(data)), purpose="batch").id
    made = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return wait_for(client, made.id)


def jsonl(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    assert file_id is not None
    text = client.files.content(file_id).text
    rows = [json.loads(row) for row in text.splitlines() if row.strip()]
    return {row["custom_id"]: row for row in rows}


def test_a_batch_of_text_and_spoken_requests_completes(client: openai.OpenAI) -> None:
    spoken = {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": b64(_wav(word_tone("hi") * 4)), "format": "wav"},
                    }
                ],
            }
        ],
    }
    lines = [
        line("first", text_body("hello there")),
        line("second", text_body("count to 3")),
        line("spoken", spoken),
        line("bad", text_body("hello", max_completion_tokens=-1)),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status == "validating"
    assert batch.metadata == {"job": "nightly"}
    batch = wait_for(client, batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (4, 3)
    assert batch.request_counts.failed == 1
    assert batch.completed_at is not None and batch.in_progress_at is not None
    assert batch.usage is not None and batch.usage.output_tokens > 0
    outputs = jsonl(client, batch.output_file_id)
    assert set(outputs) == {"first", "second", "spoken"}
    first = outputs["first"]["response"]
    assert first["status_code"] == 200
    assert first["body"]["choices"][0]["message"]["content"] == "You said: hello there"
    assert outputs["second"]["response"]["body"]["choices"][0]["message"]["content"] == "1 2 3"
    audio = outputs["spoken"]["response"]["body"]["choices"][0]["message"]["audio"]
    assert audio["id"].startswith("audio_") and base64.b64decode(audio["data"])
    errors = jsonl(client, batch.error_file_id)
    assert set(errors) == {"bad"}
    refused = errors["bad"]["response"]
    assert refused["status_code"] == 400
    assert refused["body"]["error"]["param"] == "max_completion_tokens"
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"


def test_a_malformed_file_fails_validation_naming_each_line(client: openai.OpenAI) -> None:
    lines = [
        line("ok", text_body("hello")),
        "{not json",
        line("wrong-url", text_body("hello"), url="/v1/embeddings"),
        line("streamed", text_body("hello", stream=True)),
        line("ok", text_body("again")),
        json.dumps({"custom_id": "no-method", "url": "/v1/chat/completions", "body": {}}),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    batch = wait_for(client, batch.id)
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    found = {(e.line, e.code) for e in batch.errors.data}
    assert found == {
        (2, "invalid_json_line"),
        (3, "invalid_url"),
        (4, "streaming_unsupported"),
        (5, "duplicate_custom_id"),
        (6, "missing_required_parameter"),
    }
    assert batch.failed_at is not None and batch.output_file_id is None


def test_lines_end_at_newlines_only_and_are_utf8(client: openai.OpenAI) -> None:
    """JSON strings may hold U+2028 unescaped; a byte order mark before the first line is
    read past; a line that is not UTF-8 is named, not silently changed."""
    separated = json.dumps(
        {
            "custom_id": "sep",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": text_body("x\u2028y\u0085z"),
        },
        ensure_ascii=False,
    )
    assert "\u2028" in separated
    data = b"\xef\xbb\xbf" + "\r\n".join([separated, line("plain", text_body("hi"))]).encode()
    batch = run_file(client, data)
    assert batch.status == "completed", batch.errors.data if batch.errors else None
    outputs = jsonl(client, batch.output_file_id)
    assert {k: v["response"]["status_code"] for k, v in outputs.items()} == {
        "sep": 200,
        "plain": 200,
    }
    cafe = {"custom_id": "cafe", "method": "POST", "url": "/v1/chat/completions"}
    latin1 = json.dumps({**cafe, "body": text_body("caf\u00e9")}, ensure_ascii=False)
    assert b"\xe9" in latin1.encode("latin-1")
    data = b"\n".join([line("ok", text_body("hi")).encode(), latin1.encode("latin-1")])
    batch = run_file(client, data)
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data
    (error,) = batch.errors.data
    assert (error.line, error.code) == (2, "invalid_json_line")
    assert error.message is not None and "UTF-8" in error.message


def test_metadata_past_its_limits_and_an_unknown_cursor(client: openai.OpenAI) -> None:
    file_id = upload(client, [line("one", text_body("hi"))])
    too_many = {f"k{i}": "v" for i in range(17)}
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata=too_many,
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["code"]) == ("metadata", "object_above_max_properties")
    assert "17 properties" in error["message"]
    made = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    page = client.batches.list(after="batch_never_made", limit=5)
    assert (page.data, page.has_more) == ([], False)
    wait_for(client, made.id)


def test_a_cancelled_batch_keeps_what_was_answered(client: openai.OpenAI) -> None:
    lines = [line(f"slow-{i}", text_body("slow " + "word " * 10)) for i in range(8)]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    started = wait_for(
        client, batch.id, lambda b: b.request_counts is not None and b.request_counts.completed
    )
    assert started.status == "in_progress"
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    batch = wait_for(client, batch.id)
    assert batch.status == "cancelled"
    assert batch.cancelled_at is not None
    outputs = jsonl(client, batch.output_file_id)
    errors = jsonl(client, batch.error_file_id)
    assert 1 <= len(outputs) < 8
    assert set(outputs) | set(errors) == {f"slow-{i}" for i in range(8)}
    assert {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}
    assert client.batches.cancel(batch.id).status == "cancelled"


def test_batches_are_listed_newest_first_and_paged(client: openai.OpenAI) -> None:
    file_id = upload(client, [line("one", text_body("hi"))])
    made = [
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(3)
    ]
    page = client.batches.list(limit=2)
    assert page.has_more
    listed = [b.id for b in client.batches.list(limit=2)]  # the SDK follows ``after``
    assert listed[:3] == made[::-1]
    for batch_id in made:
        wait_for(client, batch_id)


def test_a_batch_and_its_files_are_invisible_to_another_key(tmp_path: Path) -> None:
    owner, other = make_key(tmp_path, "owner"), make_key(tmp_path, "other")
    server = start_keyed_server(tmp_path)
    try:
        with sdk(server, owner) as mine, sdk(server, other) as theirs:
            file_id = upload(mine, [line("one", text_body("hi"))])
            with pytest.raises(openai.NotFoundError):
                theirs.batches.create(
                    input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            batch = mine.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            with pytest.raises(openai.NotFoundError):
                theirs.batches.retrieve(batch.id)
            with pytest.raises(openai.NotFoundError):
                theirs.batches.cancel(batch.id)
            assert [b.id for b in theirs.batches.list()] == []
            done = wait_for(mine, batch.id)
            assert done.status == "completed"
            with pytest.raises(openai.NotFoundError):
                theirs.files.content(done.output_file_id or "")
    finally:
        server.stop()


def test_an_unserved_endpoint_and_a_bad_request_are_400s(client: openai.OpenAI) -> None:
    file_id = upload(client, [line("one", text_body("hi"))])
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
    assert refused.value.body["param"] == "endpoint"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="48h",  # type: ignore[arg-type]
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_a_batch_survives_kill_9_and_runs_every_line_once(tmp_path: Path) -> None:
    key = make_key(tmp_path, "batch", tier="5")
    lines = [line(f"line-{i}", text_body(f"slow number {i}")) for i in range(12)]
    with (
        serve_process(FAKE_ENGINE, tmp_path) as served,
        keyed_client(served.base_url, key) as client,
    ):
        file_id = upload(client, lines)
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        running = wait_for(
            client,
            batch.id,
            lambda b: b.request_counts is not None and b.request_counts.completed >= 2,
        )
        assert running.status == "in_progress"
        os.kill(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=10)
    with (
        serve_process(FAKE_ENGINE, tmp_path) as served,
        keyed_client(served.base_url, key) as client,
    ):
        done = wait_for(client, batch.id)
        assert done.status == "completed"
        rows = [
            json.loads(row)
            for row in client.files.content(done.output_file_id or "").text.splitlines()
        ]
        assert sorted(r["custom_id"] for r in rows) == sorted(f"line-{i}" for i in range(12))
        assert done.request_counts is not None and done.request_counts.completed == 12


def _wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(pcm)
    return out.getvalue()


def test_operators_list_show_and_cancel_batches_from_the_cli(
    make_server: Callable[..., LiveServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from omnivox.cli import main

    server = make_server(data_dir=tmp_path)
    with sdk(server) as client:
        lines = [line(f"slow-{i}", text_body("slow " + "word " * 10)) for i in range(6)]
        running = client.batches.create(
            input_file_id=upload(client, lines),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        wait_for(client, running.id, lambda b: b.status == "in_progress")
        assert main(["batches", "--data-dir", str(tmp_path), "list"]) == 0
        listed = capsys.readouterr().out
        assert running.id in listed and "in_progress" in listed
        assert main(["batches", "--data-dir", str(tmp_path), "cancel", running.id]) == 0
        assert capsys.readouterr().out.strip() == f"{running.id}: cancelling"
        assert wait_for(client, running.id).status == "cancelled"
        assert main(["batches", "--data-dir", str(tmp_path), "show", running.id]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["status"] == "cancelled"
        assert main(["batches", "--data-dir", str(tmp_path), "cancel", running.id]) == 0
        assert main(["batches", "--data-dir", str(tmp_path), "show", "batch_nope"]) == 1


def test_batch_lines_cost_half_outside_the_keys_rate_limits(tmp_path: Path) -> None:
    from omnivox.access.ledger import SqliteLedger

    key = make_key(tmp_path, "batcher", tier="1", rpm=1)  # one interactive request a minute
    server = start_keyed_server(tmp_path)
    try:
        with sdk(server, key) as client:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hello there"}]
            )
            lines = [line(f"n{i}", text_body("hello there")) for i in range(3)]
            batch = client.batches.create(
                input_file_id=upload(client, lines),
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            done = wait_for(client, batch.id)
            assert done.status == "completed"  # the RPM of 1 did not hold the lines back
            assert done.request_counts is not None and done.request_counts.completed == 3
    finally:
        server.stop()
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    rows = [e for e in ledger.entries_now() if e.status == "completed"]
    ledger.close_now()
    interactive = [e for e in rows if not e.batch]
    batched = [e for e in rows if e.batch]
    assert len(interactive) == 1 and len(batched) == 3
    assert all(e.cost_usd == pytest.approx(interactive[0].cost_usd / 2) for e in batched)


def test_a_batch_past_the_tiers_queue_limit_fails_with_token_limit_exceeded(
    tmp_path: Path,
) -> None:
    key = make_key(tmp_path, "free", tier="free")  # the free tier has no batch queue
    server = start_keyed_server(tmp_path)
    try:
        with sdk(server, key) as client:
            mini = {**text_body("hello"), "model": "gpt-4o-mini-audio-preview"}
            batch = client.batches.create(
                input_file_id=upload(client, [line("one", mini)]),
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            done = wait_for(client, batch.id)
            assert done.status == "failed"
            assert done.errors is not None and done.errors.data is not None
            assert [e.code for e in done.errors.data] == ["token_limit_exceeded"]
    finally:
        server.stop()


def test_batches_of_the_audio_endpoints(client: openai.OpenAI) -> None:
    speech = [
        line(
            "hi", {"model": "tts-1", "input": "hello there", "voice": "alloy"}, "/v1/audio/speech"
        ),
        line(
            "loud",
            {"model": "tts-1", "input": "two words", "voice": "alloy", "response_format": "wav"},
            "/v1/audio/speech",
        ),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, speech),
        endpoint="/v1/audio/speech",  # type: ignore[arg-type]
        completion_window="24h",
    )
    done = wait_for(client, batch.id)
    assert done.status == "completed", done.errors
    outputs = jsonl(client, done.output_file_id)
    wav = outputs["loud"]["response"]["body"]
    assert (wav["object"], wav["format"], wav["content_type"]) == (
        "audio.speech",
        "wav",
        "audio/wav",
    )
    assert base64.b64decode(wav["data"])[:4] == b"RIFF"
    assert outputs["hi"]["response"]["body"]["format"] == "mp3"
    two_seconds = _wav(word_tone("a", 2.0))
    written = [
        line(
            "json",
            {"model": "whisper-1", "file": b64(two_seconds), "filename": "a.wav"},
            "/v1/audio/transcriptions",
        ),
        line(
            "text",
            {"model": "whisper-1", "file": b64(two_seconds), "response_format": "text"},
            "/v1/audio/transcriptions",
        ),
        line("no-file", {"model": "whisper-1"}, "/v1/audio/transcriptions"),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, written),
        endpoint="/v1/audio/transcriptions",  # type: ignore[arg-type]
        completion_window="24h",
    )
    failed = wait_for(client, batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert [(e.line, e.code) for e in failed.errors.data] == [(3, "missing_required_parameter")]
    batch = client.batches.create(
        input_file_id=upload(client, written[:2]),
        endpoint="/v1/audio/transcriptions",  # type: ignore[arg-type]
        completion_window="24h",
    )
    done = wait_for(client, batch.id)
    assert done.status == "completed"
    outputs = jsonl(client, done.output_file_id)
    assert outputs["json"]["response"]["body"]["text"] == "Second 1. Second 2."
    assert outputs["text"]["response"]["body"] == {"text": "Second 1. Second 2.\n"}


def test_a_line_nested_past_the_parsers_depth_fails_validation(client: openai.OpenAI) -> None:
    deep = '{"custom_id":"d","method":"POST","url":"/v1/chat/completions","body":'
    deep += "[" * 10_000 + "]" * 10_000 + "}"
    batch = client.batches.create(
        input_file_id=upload(client, [deep]),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    done = wait_for(client, batch.id)
    assert done.status == "failed"
    assert done.errors is not None and done.errors.data is not None
    assert [(e.line, e.code) for e in done.errors.data] == [(1, "invalid_json_line")]


class RecordingEngine(FakeEngine):
    """The fake engine, keeping every reading and transcription it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[Any] = []

    def speak(self, request: Any) -> Any:
        self.asked.append(request)
        return super().speak(request)

    def transcribe(self, request: Any) -> Any:
        self.asked.append(request)
        return super().transcribe(request)


def test_audio_batch_lines_yield_to_everyone_else(tmp_path: Path) -> None:
    engine = RecordingEngine()
    server = start_server(engine, tmp_path)
    try:
        with sdk(server) as client:
            client.audio.speech.create(model="tts-1", input="now", voice="alloy")
            assert [r.background for r in engine.asked] == [False]  # a person waits on it
            lines = [
                line("said", {"model": "tts-1", "input": "later", "voice": "alloy"}, SPEECH),
                line(
                    "heard", {"model": "whisper-1", "file": b64(_wav(word_tone("a", 1.0)))}, HEARD
                ),
            ]
            for one, url in zip(lines, (SPEECH, HEARD), strict=True):
                batch = client.batches.create(
                    input_file_id=upload(client, [one]),
                    endpoint=url,  # type: ignore[arg-type]
                    completion_window="24h",
                )
                assert wait_for(client, batch.id).status == "completed"
        assert [r.background for r in engine.asked] == [False, True, True]
    finally:
        server.stop()


class PreparingEngine(FakeEngine):
    """The fake engine, keeping every generation it was asked to prepare."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[Any] = []

    async def prepare(self, request: Any) -> Any:
        self.prepared.append(request)
        return await super().prepare(request)


def test_a_batch_of_responses_answers_as_the_route_and_stores_them(tmp_path: Path) -> None:
    from omnivox.access.ledger import SqliteLedger

    owner, other = make_key(tmp_path, "owner", tier="5"), make_key(tmp_path, "other")
    engine = PreparingEngine()
    server = start_keyed_server(tmp_path, engine)
    try:
        with sdk(server, owner) as mine, sdk(server, other) as theirs:
            mine.responses.create(model=MODEL, input="now")  # a person waits on this one
            lines = [
                line(
                    "text",
                    {"model": MODEL, "input": "hello there", "metadata": {"job": "nightly"}},
                    RESPONSES,
                ),
                line("unknown", {"model": MODEL, "input": "hi", "colour": "blue"}, RESPONSES),
                line("unstored", {"model": MODEL, "input": "forget me", "store": False}, RESPONSES),
            ]
            batch = mine.batches.create(
                input_file_id=upload(mine, lines), endpoint=RESPONSES, completion_window="24h"
            )
            done = wait_for(mine, batch.id)
            assert done.status == "completed", done.errors
            assert done.request_counts is not None
            assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
            assert done.usage is not None and done.usage.output_tokens > 0
            outputs = jsonl(mine, done.output_file_id)
            assert set(outputs) == {"text", "unstored"}
            assert outputs["text"]["response"]["status_code"] == 200
            answered = openai.types.responses.Response.model_validate(
                outputs["text"]["response"]["body"]
            )
            assert (answered.object, answered.status) == ("response", "completed")
            assert answered.output_text and answered.metadata == {"job": "nightly"}
            assert answered.usage is not None and answered.usage.input_tokens > 0
            refused = jsonl(mine, done.error_file_id)["unknown"]["response"]
            assert refused["status_code"] == 400
            assert refused["body"]["error"]["code"] == "unknown_parameter"
            assert refused["body"]["error"]["param"] == "colour"
            retrieved = mine.responses.retrieve(answered.id)
            assert (retrieved.id, retrieved.output_text) == (answered.id, answered.output_text)
            with pytest.raises(openai.NotFoundError):
                theirs.responses.retrieve(answered.id)  # the batch's key's alone
            with pytest.raises(openai.NotFoundError):
                mine.responses.retrieve(outputs["unstored"]["response"]["body"]["id"])
    finally:
        server.stop()
    # the interactive response in the foreground, the batch's two lines in the background
    assert [r.background for r in engine.prepared] == [False, True, True]
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    rows = [e for e in ledger.entries_now() if e.status == "completed"]
    ledger.close_now()
    assert sum(1 for e in rows if e.batch) == 2


def test_a_responses_batch_refuses_streamed_lines_and_unserved_models(
    client: openai.OpenAI,
) -> None:
    lines = [
        line("ok", {"model": MODEL, "input": "hello"}, RESPONSES),
        line("streamed", {"model": MODEL, "input": "hello", "stream": True}, RESPONSES),
        line("speaker", {"model": "tts-1", "input": "hello"}, RESPONSES),
        line("chat", text_body("hello")),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, lines), endpoint=RESPONSES, completion_window="24h"
    )
    failed = wait_for(client, batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None and failed.errors.data is not None
    assert [(e.line, e.code) for e in failed.errors.data] == [
        (2, "streaming_unsupported"),
        (3, "model_not_found"),
        (4, "invalid_url"),
    ]
