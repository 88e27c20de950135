"""``/v1/realtime`` beyond one client-committed turn: server VAD, barge-in, truncate,
function calls, input transcription, transcription sessions, G.711 audio and
out-of-band responses, through the official SDK with every event validated strictly.

Speech is espeak-ng's, sent as fast as the socket takes it: turn detection counts the
session's audio, not the wall clock, so where a turn starts and ends does not depend
on the host's speed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from omnivox.audio import OUTPUT_SAMPLE_RATE, decode_audio
from omnivox.audio.g711 import s16le_to_ulaw
from omnivox.audio.pcm import float_to_s16le
from omnivox.serving.realtime.session import PIECE_MIN_MS
from omnivox.serving.realtime.turns import PAUSE_MS
from tests.api.test_realtime import Session, realtime_client, session, types, user_text
from tests.support.fake_engine import WORD_DURATION_S, FakeEngine
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

CHUNK_BYTES = OUTPUT_SAMPLE_RATE // 10 * 2  # 100 ms of PCM16
WORD_BYTES = int(WORD_DURATION_S * OUTPUT_SAMPLE_RATE) * 2


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(seconds * OUTPUT_SAMPLE_RATE)


@pytest.fixture(scope="module")
def say(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    """``say(text)``: ``text`` said by espeak-ng, as PCM16 at 24 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("speech")

    def speak(text: str) -> bytes:
        path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
        samples = decode_audio(path.read_bytes(), sample_rate=OUTPUT_SAMPLE_RATE)
        return float_to_s16le(samples)

    return speak


def stream(session: Session, pcm: bytes, chunk_bytes: int = CHUNK_BYTES) -> None:
    for start in range(0, len(pcm), chunk_bytes):
        chunk = base64.b64encode(pcm[start : start + chunk_bytes]).decode()
        session.send({"type": "input_audio_buffer.append", "audio": chunk})


def ms(pcm: bytes, bytes_per_ms: int = 48) -> int:
    return len(pcm) // bytes_per_ms


def sound_span_ms(pcm: bytes) -> tuple[int, int]:
    """Where the sound in ``pcm`` starts and ends (espeak-ng pads its speech a little)."""
    loud = np.flatnonzero(np.abs(np.frombuffer(pcm, dtype="<i2")) > 600)
    return int(loud[0]) * 1000 // OUTPUT_SAMPLE_RATE, int(loud[-1]) * 1000 // OUTPUT_SAMPLE_RATE


def trimmed(pcm: bytes) -> bytes:
    """``pcm`` without the silence after its last sound (10 ms of it kept)."""
    _, last_ms = sound_span_ms(pcm)
    return pcm[: (last_ms + 10) * OUTPUT_SAMPLE_RATE // 1000 * 2]


@pytest.fixture
def tool_server(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server(FakeEngine(tools=True))


@pytest.fixture
def tool_session(tool_server: LiveServer) -> Iterator[Session]:
    with (
        realtime_client(tool_server.base_url) as client,
        client.realtime.connect(model="gpt-realtime") as connection,
    ):
        yield Session(connection)


@contextlib.contextmanager
def text_session(server: LiveServer) -> Iterator[Session]:
    """A new session of ``server`` that answers in text, its ``session.created`` read."""
    with (
        realtime_client(server.base_url) as client,
        client.realtime.connect(model="gpt-realtime") as connection,
    ):
        session = Session(connection)
        session.recv()
        session.update(output_modalities=["text"])
        yield session


def answer_text(events: list[dict[str, Any]]) -> str:
    kinds = ("response.output_text.delta", "response.output_audio_transcript.delta")
    return "".join(e["delta"] for e in events if e["type"] in kinds)


def test_a_spoken_turn_is_detected_committed_and_answered(
    session: Session, say: Callable[[str], bytes]
) -> None:
    assert session.recv()["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    speech = say("What is the capital of France?")
    stream(session, silence(0.6) + speech + silence(1.0))
    events = session.until("response.done")
    kinds = types(events)
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "response.created",
        "response.output_audio.delta",
        "response.done",
    ]
    assert [kinds.index(kind) for kind in order] == sorted(kinds.index(kind) for kind in order)
    assert kinds.count("input_audio_buffer.speech_started") == 1
    started = events[kinds.index("input_audio_buffer.speech_started")]
    stopped = events[kinds.index("input_audio_buffer.speech_stopped")]
    committed = events[kinds.index("input_audio_buffer.committed")]
    user_item = events[kinds.index("conversation.item.added")]["item"]
    item_id = started["item_id"]
    assert stopped["item_id"] == committed["item_id"] == user_item["id"] == item_id
    assert user_item["role"] == "user"
    # The start reaches 300 ms before the first sound, for its padding.
    first_ms, last_ms = (600 + t for t in sound_span_ms(speech))
    assert abs(started["audio_start_ms"] - (first_ms - 300)) <= 150
    assert abs(stopped["audio_end_ms"] - last_ms) <= 250
    done = events[-1]["response"]
    assert done["status"] == "completed"
    # The turn's audio: the padding, the speech, and 160 ms of the silence after it.
    heard_s = float(answer_text(events).split()[2])  # "You said: 2.3 seconds of audio"
    assert abs(heard_s - (300 + last_ms - first_ms + PAUSE_MS) / 1000) <= 0.3
    assert done["usage"]["input_token_details"]["audio_tokens"] >= 10
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0


def test_a_pause_shorter_than_the_silence_does_not_end_the_turn(
    session: Session, say: Callable[[str], bytes], fake_server: LiveServer
) -> None:
    session.recv()
    session.update(
        output_modalities=["text"],
        audio={"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}}},
    )
    first, second = say("Tell me"), say("about the moon.")
    stream(session, silence(0.5) + first + silence(0.5) + second + silence(1.5))
    events = session.until("response.done")
    kinds = types(events)
    assert kinds.count("input_audio_buffer.committed") == 1
    assert kinds.count("response.created") == 1
    heard_s = float(answer_text(events).split()[2])
    assert heard_s >= (ms(first) + 500 + ms(second)) / 1000 - 0.3  # both parts, one turn


@pytest.mark.parametrize(
    ("idle", "other_speaking", "early"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["idle", "busy", "idle-while-another-speaks"],
)
def test_a_turn_is_begun_at_its_first_silent_window_when_nobody_would_wait_for_it(
    make_server: Callable[..., LiveServer],
    say: Callable[[str], bytes],
    idle: bool,
    other_speaking: bool,
    early: bool,
) -> None:
    engine = FakeEngine()
    engine.idle_now = idle
    server = make_server(engine)
    speech = trimmed(say("Tell me about the moon."))
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(realtime_client(server.base_url))
        if other_speaking:  # a second session whose user has begun to speak
            other = Session(stack.enter_context(client.realtime.connect(model="gpt-realtime")))
            other.recv()
            stream(other, silence(0.5) + speech[: len(speech) // 2])
            other.until("input_audio_buffer.speech_started")
        session = Session(stack.enter_context(client.realtime.connect(model="gpt-realtime")))
        session.recv()
        session.update(output_modalities=["text"])
        # Speech, then less silence than PAUSE_MS (160 ms) and the VAD's lag need.
        stream(session, silence(0.5) + speech + silence(0.14))
        if early:
            assert engine.began_preparing.wait(10), "no answer begun at the first silent window"
        else:  # once the session has read every append, nothing has begun
            session.send({"type": "conversation.item.retrieve", "item_id": "item_none"})
            assert session.until("error")[-1]["error"]["param"] is not None
            assert not engine.began_preparing.is_set()
        stream(session, silence(1.0))
        events = session.until("response.done")
    assert events[-1]["response"]["status"] == "completed"
    assert "seconds of audio" in answer_text(events)
    assert engine.prepares == 1  # the answer begun early is the one sent


def test_a_busy_engine_still_begins_a_turn_early_when_the_work_is_what_that_turn_threw_away(
    make_server: Callable[..., LiveServer], say: Callable[[str], bytes]
) -> None:
    engine = FakeEngine()
    engine.idle_now = True
    server = make_server(engine)
    first, second = (trimmed(say(words)) for words in ("Tell me", "about the moon."))
    with text_session(server) as session:
        stream(session, silence(0.5) + first + silence(0.14))  # a pause: begun early
        assert engine.began_preparing.wait(10)
        engine.began_preparing.clear()
        engine.idle_now = False  # busy with the pause's recognition, say
        stream(session, second + silence(0.14))  # speech again, then the end of the turn
        assert engine.began_preparing.wait(10), "the turn's end waited for PAUSE_MS"
        stream(session, silence(1.0))
        events = session.until("response.done")
    assert events[-1]["response"]["status"] == "completed"
    assert engine.prepares == 2


def test_answers_begun_and_thrown_away_leave_nothing_in_the_conversation(
    make_server: Callable[..., LiveServer], say: Callable[[str], bytes]
) -> None:
    engine = FakeEngine()
    server = make_server(engine)
    first, second = (trimmed(say(words)) for words in ("Tell me", "about the moon."))
    with text_session(server) as session:
        # a pause that begins an answer and is thrown away, then the end of the turn
        stream(session, silence(0.5) + first + silence(0.3) + second + silence(1.0))
        events = session.until("response.done")
        assert engine.roles[-1] == ("user",)  # the turn, once
        stream(session, first + second + silence(1.0))
        events += session.until("response.done")
        assert engine.roles[-1] == ("user", "assistant", "user")
    # the client's conversation: each turn and its answer, once
    items = [e["item"] for e in events if e["type"] == "conversation.item.done"]
    assert [item["role"] for item in items] == ["user", "assistant", "user", "assistant"]
    assert len({item["id"] for item in items}) == 4


@pytest.mark.parametrize(
    ("pause_s", "n_parts"),
    [(0.3, 2), (0.12, 1)],
    ids=["a-pause", "speech-soon-after-the-pause-began"],
)
def test_a_long_turn_is_heard_in_pieces_cut_at_its_pauses(
    make_server: Callable[..., LiveServer],
    say: Callable[[str], bytes],
    pause_s: float,
    n_parts: int,
) -> None:
    engine = FakeEngine()
    server = make_server(engine)
    # over PIECE_MIN_MS (6 s) of speech with no pause in it, a pause, then a short end
    long = trimmed(
        say(
            "The quick brown fox jumps over the lazy dog while the old farmer watches them "
            "from the red barn door"
        )
    )
    short = trimmed(say("Tell me about the moon."))
    assert ms(long) + 300 + PAUSE_MS >= PIECE_MIN_MS
    with text_session(server) as session:
        # a pause past PAUSE_MS, short of the 500 ms that end the turn; a piece is cut there
        # when speech comes back PIECE_MARGIN_MS after it (the VAD hears an onset late)
        stream(session, silence(0.5) + long + silence(pause_s) + short + silence(1.0))
        events = session.until("response.done")
        final = engine.user_clips[-1]  # what the answer heard
        stream(session, short + silence(1.0))  # a short turn after it is heard whole
        session.until("response.done")
    kinds = types(events)
    assert kinds.count("input_audio_buffer.committed") == kinds.count("response.created") == 1
    assert len(final) == n_parts  # the piece before the pause, then the rest; or all at once
    heard_ms = 300 + ms(long) + pause_s * 1000 + ms(short) + PAUSE_MS  # padding to the tail
    assert abs(sum(clip.duration_s for clip in final) * 1000 - heard_ms) <= 250
    if n_parts == 2:
        piece, rest = (clip.duration_s * 1000 for clip in final)
        # the padding, the speech and PAUSE_MS of the pause; the pause's rest, speech, PAUSE_MS
        assert abs(piece - (300 + ms(long) + PAUSE_MS)) <= 250
        assert abs(rest - (pause_s * 1000 + ms(short))) <= 250
    heard_s = float(answer_text(events).split()[2])  # the answer heard every part
    assert abs(heard_s - sum(clip.duration_s for clip in final)) <= 0.1
    assert len(engine.user_clips[-1]) == 1


def test_speech_during_an_answer_cancels_it(session: Session, say: Callable[[str], bytes]) -> None:
    session.recv()
    session.update(output_modalities=["text"])
    session.send(user_text("slow " + "word " * 40))  # 0.2 s a word
    session.send({"type": "response.create"})
    first = session.until("response.output_text.delta")
    response_id = first[-1]["response_id"]
    stream(session, say("Stop, please.") + silence(1.0))
    events = session.until("input_audio_buffer.speech_started")
    events += session.until("response.done")
    done = events[-1]["response"]
    assert done["id"] == response_id
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    # The interruption is a turn of its own, and it is answered.
    events = session.until("response.done")
    assert events[-1]["response"]["id"] != response_id
    assert events[-1]["response"]["status"] == "completed"


def test_truncate_drops_the_words_that_were_not_heard(session: Session) -> None:
    session.recv()
    session.update(audio={"input": {"turn_detection": None}})
    session.send(user_text("one two three four five six"))
    session.send({"type": "response.create"})
    events = session.until("response.done")
    item = events[-1]["response"]["output"][0]
    assert item["content"][0]["transcript"] == "You said: one two three four five six"
    heard_ms = 3 * int(WORD_DURATION_S * 1000) + 100  # three words and a bit of the fourth
    session.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": heard_ms,
        }
    )
    truncated = session.recv()
    assert truncated == {**truncated, "type": "conversation.item.truncated", "item_id": item["id"]}
    assert truncated["audio_end_ms"] == heard_ms
    session.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    retrieved = session.recv()["item"]
    assert retrieved["content"][0]["transcript"] == "You said: one"
    # The next answer's prompt has only what was heard: the fake engine counts a turn's
    # words + 3 as its tokens (user 6+3, assistant 3+3, user 1+3).
    session.send(user_text("again"))
    session.send({"type": "response.create"})
    done = session.until("response.done")[-1]["response"]
    assert done["usage"]["input_token_details"]["text_tokens"] == 9 + 6 + 4
    session.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 60_000,
        }
    )
    error = session.recv()
    assert error["type"] == "error"
    assert error["error"]["param"] == "audio_end_ms"


def test_a_function_call_round_trip_ends_in_speech(tool_session: Session) -> None:
    session = tool_session
    session.recv()
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    session.update(tools=[tool], audio={"input": {"turn_detection": None}})
    session.send(user_text("call get_weather Paris"))
    session.send({"type": "response.create"})
    events = session.until("response.done")
    kinds = types(events)
    assert "response.output_audio.delta" not in kinds
    done = events[-1]["response"]
    call = done["output"][0]
    assert call["type"] == "function_call"
    assert call["name"] == "get_weather"
    assert call["status"] == "completed"
    arguments = "".join(
        e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
    )
    assert arguments == call["arguments"]
    assert '"city"' in arguments
    finished = events[kinds.index("response.function_call_arguments.done")]
    assert (finished["call_id"], finished["name"]) == (call["call_id"], "get_weather")
    session.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
        }
    )
    added = session.until("conversation.item.done")[-1]["item"]
    assert added["type"] == "function_call_output"
    session.send({"type": "response.create"})
    events = session.until("response.done")
    assert answer_text(events) == "The tool said: sunny"
    assert any(e["type"] == "response.output_audio.delta" for e in events)


def test_committed_audio_is_transcribed_when_asked(session: Session) -> None:
    session.recv()
    effective = session.update(
        audio={"input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}},
    )
    assert effective["audio"]["input"]["transcription"]["model"] == "whisper-1"
    tone = (0.3 * np.sin(np.arange(2 * OUTPUT_SAMPLE_RATE) * 0.05) * 32767).astype("<i2")
    stream(session, tone.tobytes())
    session.send({"type": "input_audio_buffer.commit"})
    events = session.until("conversation.item.input_audio_transcription.completed")
    item_id = events[0]["item_id"]
    deltas = [e for e in events if e["type"].endswith("input_audio_transcription.delta")]
    assert [d["item_id"] for d in deltas] == [item_id, item_id]
    completed = events[-1]
    assert completed["transcript"] == "Second 1. Second 2."
    assert completed["usage"] == {"type": "duration", "seconds": 2.0}
    session.send({"type": "conversation.item.retrieve", "item_id": item_id})
    content = session.recv()["item"]["content"]
    assert content == [{"type": "input_audio", "transcript": "Second 1. Second 2."}]
    session.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "no-such-recogniser"}}},
            },
        }
    )
    error = session.recv()
    assert error["error"]["param"] == "session.audio.input.transcription.model"


def test_a_transcription_session_writes_down_speech_and_answers_nothing(
    fake_server: LiveServer, say: Callable[[str], bytes]
) -> None:
    with (
        realtime_client(fake_server.base_url) as client,
        client.realtime.connect(extra_query={"intent": "transcription"}) as connection,
    ):
        session = Session(connection)
        created = session.recv()["session"]
        assert created["type"] == "transcription"
        assert created["audio"]["input"]["transcription"]["model"] == "whisper-1"
        session.send(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {
                        "input": {"transcription": {"model": "gpt-4o-mini-transcribe"}},
                    },
                },
            }
        )
        assert session.until("session.updated")[-1]["session"]["type"] == "transcription"
        stream(session, silence(0.5) + say("Write this down.") + silence(1.0))
        events = session.until("conversation.item.input_audio_transcription.completed")
        kinds = types(events)
        assert "input_audio_buffer.speech_stopped" in kinds
        assert "input_audio_buffer.committed" in kinds
        assert "response.created" not in kinds
        completed = events[-1]
        assert completed["transcript"].startswith("Second 1.")
        assert completed["usage"]["type"] == "tokens"
        session.send({"type": "response.create", "event_id": "evt_r"})
        error = session.recv()
        assert (error["type"], error["error"]["event_id"]) == ("error", "evt_r")
        session.send({"type": "session.update", "session": {"type": "realtime"}})
        error = session.recv()
        assert error["error"]["param"] == "session.type"


def test_g711_audio_in_and_out(session: Session) -> None:
    session.recv()
    session.update(
        audio={
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
            "output": {"format": {"type": "audio/pcma"}},
        },
    )
    tone = (0.3 * np.sin(np.arange(8000) * 0.3) * 32767).astype("<i2").tobytes()  # 1 s at 8 kHz
    stream(session, s16le_to_ulaw(tone), chunk_bytes=800)
    session.send({"type": "input_audio_buffer.commit"})
    session.until("conversation.item.done")
    session.send({"type": "response.create"})
    events = session.until("response.done")
    assert answer_text(events) == "You said: 1.0 seconds of audio"
    alaw = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    n_words = len(answer_text(events).split())
    assert abs(len(alaw) - n_words * WORD_DURATION_S * 8000) <= 80  # one byte a sample at 8 kHz
    assert events[-1]["response"]["audio"]["output"]["format"] == {"type": "audio/pcma"}


def test_an_out_of_band_response_leaves_the_conversation_alone(session: Session) -> None:
    session.recv()
    session.send(
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "metadata": {"topic": "classification"},
                "output_modalities": ["text"],
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "just this"}],
                    }
                ],
            },
        }
    )
    events = session.until("response.done")
    assert "conversation.item.added" not in types(events)
    created = events[0]["response"]
    assert created["metadata"] == {"topic": "classification"}
    assert created["conversation_id"] is None
    assert answer_text(events) == "You said: just this"
    item_id = events[-1]["response"]["output"][0]["id"]
    session.send({"type": "conversation.item.retrieve", "item_id": item_id})
    assert session.recv()["error"]["param"] == "item_id"


def test_an_oversized_event_is_refused_and_the_session_goes_on(session: Session) -> None:
    session.recv()
    session.send({"type": "input_audio_buffer.append", "audio": "A" * (15 * 1024 * 1024 + 4)})
    error = session.recv()
    assert error["type"] == "error"
    session.send(user_text("still here"))
    assert session.until("conversation.item.done")[-1]["item"]["role"] == "user"


__all__ = ["session"]  # the fixture, shared with test_realtime


def test_silence_past_the_idle_timeout_prompts_an_answer(session: Session) -> None:
    session.recv()
    session.update(
        output_modalities=["text"],
        audio={"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}},
    )
    session.send(user_text("hello"))
    session.send({"type": "response.create"})
    session.until("response.done")
    stream(session, silence(4.0))
    session.send(user_text("not yet"))  # the next event after 4 s of silence: no timeout before
    assert session.until("conversation.item.done")[0]["type"] == "conversation.item.added"
    stream(session, silence(2.0))
    events = session.until("response.done")
    kinds = types(events)
    timeout = events[kinds.index("input_audio_buffer.timeout_triggered")]
    assert timeout["audio_end_ms"] - timeout["audio_start_ms"] >= 5000
    committed = events[kinds.index("input_audio_buffer.committed")]
    assert committed["item_id"] == timeout["item_id"]
    assert events[-1]["response"]["status"] == "completed"


def test_semantic_vad_is_accepted_and_shown_whole(session: Session) -> None:
    session.recv()
    effective = session.update(
        audio={"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}
    )
    assert effective["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": True,
        "interrupt_response": True,
    }


@pytest.mark.parametrize(
    "event",
    [
        {"type": "session.update", "session": "realtime"},
        {"type": "session.update", "session": {"type": "realtime", "audio": []}},
        {"type": "session.update", "session": {"type": "realtime", "tools": [{"type": "x"}]}},
        {"type": "input_audio_buffer.append", "audio": 5},
        {"type": "input_audio_buffer.append", "audio": "not base64!"},
        {"type": "conversation.item.create", "item": None},
        {"type": "conversation.item.create", "item": {"type": "function_call_output"}},
        {"type": "conversation.item.truncate", "item_id": 5, "content_index": 0},
        {"type": "conversation.item.truncate", "item_id": "x", "content_index": -1},
        {"type": "conversation.item.retrieve"},
        {"type": "response.create", "response": {"input": [{"type": "item_reference"}]}},
        {"type": "response.create", "response": {"input": [{"type": "item_reference", "id": "x"}]}},
        {"type": "response.create", "response": {"conversation": "other"}},
        {"type": "response.create", "response": {"tool_choice": {"type": "function", "name": "f"}}},
        {"type": "response.cancel", "response_id": 7},
        {"type": 42},
        {"event_id": ["x"]},
    ],
)
def test_a_malformed_event_is_an_error_event_and_the_session_goes_on(
    session: Session, event: dict[str, Any]
) -> None:
    session.recv()
    session.send(event)
    error = session.recv()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    session.send(user_text("still here"))
    assert session.until("conversation.item.done")[-1]["item"]["role"] == "user"


def test_a_cancel_right_after_create_ends_that_response_and_the_next_one_runs(
    session: Session,
) -> None:
    session.recv()
    session.update(output_modalities=["text"])
    session.send(user_text("hello"))
    session.send({"type": "response.create"})
    session.send({"type": "response.cancel"})
    done = session.until("response.done")[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    session.send({"type": "response.create"})
    assert session.until("response.done")[-1]["response"]["status"] == "completed"


def test_an_event_nested_past_the_parsers_depth_is_an_error_not_a_dropped_socket(
    fake_server: LiveServer,
) -> None:
    import websockets.sync.client

    url = fake_server.base_url.replace("http", "ws", 1) + "/realtime?model=gpt-realtime"
    with websockets.sync.client.connect(url) as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        ws.send('{"type":"session.update","session":' + "[" * 5000 + "]" * 5000 + "}")
        error = json.loads(ws.recv())
        assert (error["type"], error["error"]["code"]) == ("error", "invalid_json")
        ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert json.loads(ws.recv())["type"] == "input_audio_buffer.cleared"
