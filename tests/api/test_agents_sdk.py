"""OpenAI's Agents SDK (``openai-agents[voice]``, import ``agents``) against omnivox.

Its default text agent (``Agent`` on ``OpenAIResponsesModel``: ``/v1/responses``, the
SDK's default model name and model settings) calling a function tool, and two of its
ways to hold a spoken conversation, each pointed at a server on loopback with nothing
but a URL and a key:

- ``agents.realtime``: a ``RealtimeAgent`` run by ``RealtimeRunner`` over
  ``/v1/realtime`` (GA). Its transport parses every server event with the openai
  SDK's pydantic ``RealtimeServerEvent`` and reports a failure as an ``error`` session
  event, so the test fails on any of those. Its defaults are kept (semantic VAD with
  ``interrupt_response``, input transcription by ``gpt-4o-mini-transcribe``, voice
  ``ash``, ``tracing: "auto"``, ``model: "gpt-realtime-2.1"`` in ``session.update``), with
  one exception: ``tool_choice: "required"``. The fake engine calls a tool under
  ``"auto"`` only when the user's words start with "call ", and spoken input reaches it
  as a clip ("N seconds of audio"), never as words; "required" makes it call the first
  tool, and after the tool's output (the last turn is the tool's) it answers "The tool
  said: <output>" instead of calling again. A second case names ``server_vad``.
- ``agents.voice``: a ``VoicePipeline`` running a ``SingleAgentVoiceWorkflow`` whose agent
  is served by omnivox over Chat Completions, with the SDK's OpenAI speech-to-text (the
  default ``gpt-transcribe``: a ``?intent=transcription`` Realtime session for streamed
  input, ``/v1/audio/transcriptions`` for a static clip) and text-to-speech
  (``gpt-4o-mini-tts``, voice ``ash``, ``response_format: "pcm"`` on ``/v1/audio/speech``).

The model names are the SDK's defaults on purpose: they are what a caller who gives only
a URL and a key sends (``gpt-realtime-2.1`` in ``session.update`` whatever the URL's
``?model=`` says, ``gpt-transcribe`` for speech-to-text).

The SDK's tracing would export to api.openai.com: it is off for the whole process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIProvider,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.realtime import RealtimeAgent, RealtimeRunner, RealtimeSessionModelSettings
from agents.voice import (
    AudioInput,
    OpenAIVoiceModelProvider,
    SingleAgentVoiceWorkflow,
    SingleAgentWorkflowCallbacks,
    StreamedAudioInput,
    VoicePipeline,
    VoicePipelineConfig,
)
from openai import AsyncOpenAI

from tests.support.agents_sdk import RealtimeExchange, frames, spoken_pcm
from tests.support.fake_engine import FakeEngine, word_tone
from tests.support.live_server import LiveServer

set_tracing_disabled(True)

QUESTION = "What is the weather like in Paris today?"
FORECAST = "sunny and twenty degrees"
CHAT_MODEL = "gpt-4o-audio-preview"
HANG_GUARD_S = 60  # a server that never answers fails the test instead of stalling the suite


def tones(text: str) -> bytes:
    """What the fake engine says for ``text``: one tone per word."""
    return b"".join(word_tone(word) for word in text.split())


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return spoken_pcm(QUESTION, tmp_path_factory.mktemp("agents_sdk"))


def realtime_url(server: LiveServer) -> str:
    return server.base_url.replace("http://", "ws://") + "/realtime?model=gpt-realtime"


@function_tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return FORECAST


@pytest.mark.parametrize(
    "turn_detection",
    [None, {"type": "server_vad", "silence_duration_ms": 500}],
    ids=["semantic_vad_default", "server_vad"],
)
async def test_a_realtime_agent_hears_a_question_calls_its_tool_and_speaks_the_answer(
    make_server: Callable[..., LiveServer],
    question: bytes,
    turn_detection: dict[str, Any] | None,
) -> None:
    server = make_server(FakeEngine(tools=True))
    agent = RealtimeAgent(
        name="forecaster",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
    )
    settings: RealtimeSessionModelSettings = {"tool_choice": "required"}
    if turn_detection is not None:
        settings["turn_detection"] = turn_detection  # type: ignore[typeddict-item]
    exchange = RealtimeExchange()
    session = await RealtimeRunner(agent).run(
        model_config={
            "url": realtime_url(server),
            "api_key": "sk-test",
            "initial_model_settings": settings,
        }
    )
    async with session:
        for frame in frames(question):
            await session.send_audio(frame)
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                async for event in session:
                    exchange.record(event)
                    if exchange.errors:
                        pytest.fail(f"the SDK reported an error\n{exchange.describe()}")
                    if exchange.answered is not None and exchange.input_transcripts:
                        break
        except TimeoutError:
            pytest.fail(f"the spoken exchange did not end\n{exchange.describe()}")

    assert len(exchange.tool_arguments) == 1, exchange.describe()
    arguments = json.loads(exchange.tool_arguments[0])
    assert list(arguments) == ["city"] and isinstance(arguments["city"], str)
    assert exchange.tool_outputs == [FORECAST]
    kinds = exchange.types()
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "response.function_call_arguments.done",
    ):
        assert kind in kinds, exchange.describe()
    answered = exchange.answered
    assert answered is not None
    answer = exchange.transcripts[answered]
    assert answer == f"The tool said: {FORECAST}"
    assert bytes(exchange.audio[answered]) == tones(answer)
    assert all(exchange.input_transcripts), exchange.input_transcripts


class Heard(SingleAgentWorkflowCallbacks):
    """The transcript of each turn, as the workflow receives it."""

    def __init__(self) -> None:
        self.transcripts: list[str] = []

    def on_run(self, workflow: SingleAgentVoiceWorkflow, transcription: str) -> None:
        self.transcripts.append(transcription)


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "static"])
async def test_a_voice_pipeline_turn_from_speech_to_speech(
    make_server: Callable[..., LiveServer], question: bytes, streamed: bool
) -> None:
    server = make_server(FakeEngine())
    client = AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    heard = Heard()
    agent = Agent(
        name="assistant",
        instructions="Answer briefly.",
        model=OpenAIChatCompletionsModel(model=CHAT_MODEL, openai_client=client),
    )
    pipeline = VoicePipeline(
        workflow=SingleAgentVoiceWorkflow(agent, heard),
        config=VoicePipelineConfig(
            model_provider=OpenAIVoiceModelProvider(openai_client=client),
            tracing_disabled=True,
        ),
    )
    samples = np.frombuffer(question, dtype="<i2")
    audio_input: AudioInput | StreamedAudioInput
    if streamed:
        audio_input = StreamedAudioInput()
        for frame in frames(question):
            await audio_input.add_audio(np.frombuffer(frame, dtype="<i2"))
        await audio_input.add_audio(None)  # the end of the input
    else:
        audio_input = AudioInput(buffer=samples)

    spoken = bytearray()
    lifecycle: list[str] = []
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            result = await pipeline.run(audio_input)
            async for event in result.stream():
                if event.type == "voice_stream_event_audio":
                    assert event.data is not None and event.data.dtype == np.int16
                    spoken += event.data.tobytes()
                elif event.type == "voice_stream_event_lifecycle":
                    lifecycle.append(event.event)
    except TimeoutError:
        pytest.fail(f"the pipeline did not end; heard {heard.transcripts}, events {lifecycle}")
    finally:
        await client.close()

    assert heard.transcripts and all(heard.transcripts), heard.transcripts
    answers = [f"You said: {transcript}" for transcript in heard.transcripts]
    assert result.total_output_text == "".join(answers)
    assert bytes(spoken) == b"".join(tones(answer) for answer in answers)
    assert lifecycle[0] == "turn_started"
    assert lifecycle[-2:] == ["turn_ended", "session_ended"]


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
async def test_an_agent_on_the_default_responses_model_calls_its_tool_to_the_end(
    make_server: Callable[..., LiveServer], streamed: bool
) -> None:
    """The SDK's default model (``OpenAIResponsesModel`` over ``/v1/responses``, its
    default model name and settings) with only the client's URL and key given."""
    server = make_server(FakeEngine(tools=True))
    client = AsyncOpenAI(base_url=server.base_url, api_key="unused-on-loopback")
    agent = Agent(name="Forecaster", instructions="Answer with the tool.", tools=[get_weather])
    config = RunConfig(model_provider=OpenAIProvider(openai_client=client))
    async with asyncio.timeout(HANG_GUARD_S):
        if streamed:
            result: Any = Runner.run_streamed(agent, "call Paris", run_config=config)
            kinds = [event.type async for event in result.stream_events()]
            assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
        else:
            result = await Runner.run(agent, "call Paris", run_config=config)
    calls = [item for item in result.new_items if item.type == "tool_call_item"]
    outputs = [item for item in result.new_items if item.type == "tool_call_output_item"]
    assert len(calls) == 1 and json.loads(calls[0].raw_item.arguments) == {"city": "call Paris"}
    assert [o.output for o in outputs] == [FORECAST]
    assert result.final_output == f"The tool said: {FORECAST}"
    assert [r.response_id[:5] for r in result.raw_responses] == ["resp_", "resp_"]
    await client.close()
