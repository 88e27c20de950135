"""How the cascade engine turns a conversation into chat messages, and its small pure parts."""

from __future__ import annotations

import numpy as np
import pytest

from omnivox.engines.base import (
    AudioClip,
    GenerationRequest,
    SpeechOutput,
    ToolCall,
    Turn,
)
from omnivox.engines.cascade.chat.prompt import (
    DEFAULT_SYSTEM_PROMPT,
    SPEAK_PLAINLY,
    build_messages,
    client_audio_transcripts,
)
from omnivox.engines.cascade.listening.transcripts import TranscriptBook
from omnivox.engines.cascade.speaking.synthesizer import VOICES, voice_settings
from omnivox.engines.stops import StopScanner

OPENAI_VOICES = (
    *("alloy", "ash", "ballad", "coral", "echo", "fable", "nova"),
    *("onyx", "sage", "shimmer", "verse", "marin", "cedar"),
)


def clip(sha256: str, transcript: str | None = None) -> AudioClip:
    return AudioClip(np.zeros(1600, dtype=np.float32), 16_000, sha256, transcript)


def heard(audio: AudioClip) -> str:
    return audio.transcript or f"<words of {audio.sha256}>"


def test_default_system_prompt_comes_first_when_the_client_gives_none() -> None:
    request = GenerationRequest(turns=(Turn("user", ("Hi",)),))
    assert build_messages(request, heard) == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Hi"},
    ]


def test_the_clients_system_and_developer_messages_are_honoured() -> None:
    request = GenerationRequest(
        turns=(Turn("developer", ("Answer in French.",)), Turn("user", ("Hi",)))
    )
    assert build_messages(request, heard)[0] == {"role": "system", "content": "Answer in French."}


def test_speech_output_appends_speak_plainly_to_the_clients_system_message() -> None:
    request = GenerationRequest(
        turns=(Turn("system", ("Be brief.",)), Turn("user", ("Hi",))),
        speech=SpeechOutput("alloy"),
    )
    assert build_messages(request, heard)[0] == {
        "role": "system",
        "content": f"Be brief.\n\n{SPEAK_PLAINLY}",
    }


def test_audio_parts_become_transcripts_and_history_audio_keeps_its_transcript() -> None:
    request = GenerationRequest(
        turns=(
            Turn("user", ("Listen:", clip("q1"))),
            Turn("assistant", (clip("a1", transcript="Paris."),)),
            Turn("user", (clip("q2"),)),
        )
    )
    messages = build_messages(request, heard)[1:]
    assert messages == [
        {"role": "user", "content": "Listen:\n<words of q1>"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "<words of q2>"},
    ]
    assert client_audio_transcripts(request, heard) == ["<words of q1>", "Paris.", "<words of q2>"]


def test_tool_calls_are_written_as_the_model_writes_them_and_results_as_tool_messages() -> None:
    request = GenerationRequest(
        turns=(
            Turn("user", ("Weather?",)),
            Turn("assistant", (), tool_calls=(ToolCall("c1", "weather", '{"city":"Paris"}'),)),
            Turn("tool", ("Sunny",), tool_call_id="c1"),
        )
    )
    messages = build_messages(request, heard)
    assert messages[2] == {
        "role": "assistant",
        "content": '<tool_call>[{"name": "weather", "arguments": {"city": "Paris"}}]</tool_call>',
    }
    assert messages[3] == {"role": "tool", "content": "Sunny"}
    # for chat templates without a tool role
    plain = build_messages(request, heard, tool_role=False)
    assert plain[3] == {"role": "user", "content": "Result of tool call c1: Sunny"}


class CountingRecogniser:
    sample_rate = 16_000

    def __init__(self) -> None:
        self.calls: list[int] = []

    def transcribe(self, samples: np.ndarray) -> str:
        self.calls.append(len(samples))
        return f"{len(samples)} samples"


def test_transcripts_are_recognised_once_per_clip_at_the_recognisers_rate() -> None:
    recogniser = CountingRecogniser()
    book = TranscriptBook(recogniser, max_entries=2)
    audio = AudioClip(np.zeros(4800, dtype=np.float32), 48_000, "x")
    assert book.transcript(audio) == "1600 samples"
    assert book.transcript(audio) == "1600 samples"
    assert recogniser.calls == [1600]
    assert book.transcript(clip("known", transcript="given")) == "given"
    assert recogniser.calls == [1600]


def test_the_transcript_cache_forgets_the_least_recently_used() -> None:
    recogniser = CountingRecogniser()
    book = TranscriptBook(recogniser, max_entries=2)
    for name in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        book.transcript(clip(name))
    assert book.cached(clip("a")) is not None
    assert book.cached(clip("b")) is None
    assert book.cached(clip("c")) is not None


@pytest.mark.parametrize(
    ("pieces", "stops", "shown"),
    [
        (["Hello E", "N", "D never"], ["END"], "Hello "),
        (["Hello E", "x"], ["END"], "Hello Ex"),
        (["a", "b", "c"], [], "abc"),
        (["line one\n", "\nline two"], ["\n\n"], "line one"),
    ],
)
def test_stop_sequences_cut_the_text_and_are_never_shown(
    pieces: list[str], stops: list[str], shown: str
) -> None:
    scanner = StopScanner(stops)
    text = "".join(scanner.feed(piece) for piece in pieces) + scanner.flush()
    assert text == shown


def test_every_openai_voice_has_its_own_settings() -> None:
    settings = [voice_settings(name) for name in OPENAI_VOICES]
    assert set(VOICES) == set(OPENAI_VOICES)
    sounds = {(s.pitch, s.length_scale, s.noise_scale) for s in settings}
    assert len(sounds) == len(OPENAI_VOICES)
    assert voice_settings("not-a-voice") == voice_settings("alloy")
