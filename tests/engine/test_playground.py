"""The playground in a real browser, on the real cascade: what a person sees and hears.

Debian's ``chromium`` is driven by Playwright (launched by its path: Playwright's own
browser download is not used), its microphone fed from a WAV said by espeak-ng
through Chromium's fake capture device. Each test gets a fresh browser, so that the
fake microphone starts the question from its beginning, and fails on any console
error or uncaught exception in the page. Chat answers are asked at temperature 0,
where the embedded model names Paris; assertions are on that word, never on timings
(the time to the first sound is recorded beside the SDK's, not asserted).
"""

from __future__ import annotations

import re
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from devtools.first_audio import streamed_first_audio_s
from omnivox.access.keys import SqliteKeyStore
from omnivox.access.setup import build_access
from omnivox.access.tiers import Limits
from omnivox.engines.cascade.engine import CascadeEngine
from tests.engine.conftest import LentEngine, lend
from tests.support.live_server import LiveServer, start_server

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

# Whisper base hears this one right from the fake microphone, Chromium's resampling and
# Opus included ("What is the capital of France?" came out as "... and friends?")
QUESTION = "Which city is the capital of France?"
LEAD_SILENCE_S = 0.5  # before the question, as a person draws breath: VAD hears it begin
PARIS = re.compile("paris", re.IGNORECASE)
ANSWER_TIMEOUT_MS = 120_000  # a shared 2-core host may be slow; the test only waits
TALK_S = 3.5  # the question lasts about 2 s at espeak-ng's 140 words a minute
ANSWER_AUDIO = "audio[aria-label='Answer audio']"
SOUND_WAIT_S = 10.0


@dataclass
class Browser:
    page: Any
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture(scope="module")
def question_wav(espeak: Callable[..., bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    said = tmp_path_factory.mktemp("playground") / "said.wav"
    said.write_bytes(espeak(QUESTION))
    with wave.open(str(said)) as reader:
        params = reader.getparams()
        speech = reader.readframes(params.nframes)
    lead = bytes(round(params.framerate * LEAD_SILENCE_S) * params.sampwidth * params.nchannels)
    path = said.with_name("question.wav")
    with wave.open(str(path), "wb") as writer:
        writer.setparams(params)
        writer.writeframes(lead + speech)
    return path


@pytest.fixture(scope="module")
def server(
    cascade: CascadeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = lend(cascade, tmp_path_factory.mktemp("playground-server"))
    yield live
    live.stop()


@pytest.fixture
def browser(question_wav: Path) -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={question_wav}%noloop",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        page = chromium.new_page()
        page.set_default_timeout(ANSWER_TIMEOUT_MS)
        sync_api.expect.set_options(timeout=ANSWER_TIMEOUT_MS)
        opened = Browser(page)
        page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: opened.errors.append(f"uncaught: {exc}"))
        try:
            yield opened
        finally:
            chromium.close()
    assert opened.unexpected_errors() == []


def timings(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("window.playgroundTimings"))


def heard(page: Any) -> dict[str, Any]:
    """The last turn's timings once its first sound was played through Web Audio (the
    worklet's report may come just after the answer's end); fails if none ever was."""
    deadline = time.monotonic() + SOUND_WAIT_S
    while (found := timings(page))["firstSoundAt"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found["firstSoundAt"] is not None, "the answer was never played"
    return found


def answers(page: Any) -> Any:
    return page.locator("article.turn.assistant")


def test_a_typed_question_is_answered_in_words_and_playable_sound(
    server: LiveServer, browser: Browser, request: pytest.FixtureRequest
) -> None:
    page = browser.page
    expect = sync_api.expect
    # The request the page should send: asked once first, so that the page's request and
    # the SDK's after it both find its prompt in the chat model's cache.
    body = {
        "model": "omnivox-audio",
        "messages": [{"role": "user", "content": QUESTION}],
        "modalities": ["text", "audio"],
        "audio": {"voice": "cedar", "format": "pcm16"},
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_completion_tokens": 300,
    }
    sdk_first_audio_s(server, body)
    page.goto(server.root + "/playground")
    expect(page.get_by_label("Model")).to_have_value("omnivox-audio")
    page.get_by_label("Voice").select_option("cedar")
    page.get_by_label("Temperature").fill("0")
    page.get_by_role("textbox", name="Message").press_sequentially(QUESTION)  # as typed
    page.get_by_role("button", name="Send").click()

    expect(page.locator(ANSWER_AUDIO)).to_have_count(1)
    expect(answers(page).first.locator(".words")).to_have_text(PARIS)
    duration_s = page.locator(ANSWER_AUDIO).evaluate(
        "audio => new Promise(done => audio.readyState >= 1 ? done(audio.duration)"
        " : audio.addEventListener('loadedmetadata', () => done(audio.duration)))"
    )
    assert duration_s > 0.5
    link = answers(page).first.get_by_role("link", name=re.compile("Download"))
    assert link.get_attribute("download").endswith(".wav")
    expect(answers(page).first.locator(".usage")).to_contain_text("Tokens:")

    first = heard(page)  # through Web Audio, from the stream, not from the finished file
    assert first["body"] == body
    assert first["firstDeltaAt"] <= first["doneAt"]
    record_first_sound(first, sdk_first_audio_s(server, body), request.node.user_properties)

    # a second turn sends the spoken answer back by its audio id, as OpenAI's API asks
    page.get_by_role("textbox", name="Message").fill("Say it again.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(ANSWER_AUDIO)).to_have_count(2)
    expect(page.get_by_role("alert")).to_be_hidden()
    sent = timings(page)["body"]["messages"]
    assert sent[0] == {"role": "user", "content": QUESTION}
    assert sent[1]["role"] == "assistant"
    assert sent[1]["audio"]["id"].startswith("audio_")
    assert sent[2] == {"role": "user", "content": "Say it again."}


def sdk_first_audio_s(server: LiveServer, body: dict[str, Any]) -> float | None:
    """Seconds from the request to its first audio delta, as the official SDK sees them."""
    with openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client:
        return streamed_first_audio_s(client, body)[0]


def record_first_sound(
    page_timings: dict[str, Any], sdk_s: float | None, properties: list[tuple[str, object]]
) -> None:
    """The page's time from Send to its first sound, beside the SDK's time to the first
    audio delta of the same request: kept in the test's properties (and printed, for
    ``-rP``), never asserted: hosts are shared. ``bench/playground.py`` measures it."""
    page_s = (page_timings["firstSoundAt"] - page_timings["sendAt"]) / 1000
    delta_s = (page_timings["firstDeltaAt"] - page_timings["sendAt"]) / 1000
    properties.append(("page_first_sound_s", round(page_s, 3)))
    properties.append(("page_first_delta_s", round(delta_s, 3)))
    if sdk_s:
        properties.append(("sdk_first_audio_s", round(sdk_s, 3)))
        properties.append(("page_over_sdk", round(page_s / sdk_s, 3)))
    print(", ".join(f"{name} {value}" for name, value in properties))


def test_a_spoken_question_is_answered(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    expect = sync_api.expect
    page.goto(server.root + "/playground")
    expect(page.get_by_label("Model")).to_have_value("omnivox-audio")
    page.get_by_label("Temperature").fill("0")
    talk = page.get_by_role("button", name="Talk", exact=True)
    talk.click()
    expect(talk).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(TALK_S * 1000)
    talk.click()
    expect(talk).to_have_attribute("aria-pressed", "false")

    expect(page.get_by_label("Your recording")).to_have_count(1)
    expect(page.locator(ANSWER_AUDIO)).to_have_count(1)
    expect(answers(page).first.locator(".words")).to_have_text(PARIS)
    expect(page.get_by_role("alert")).to_be_hidden()
    sent = heard(page)["body"]["messages"][-1]["content"][0]
    assert sent["type"] == "input_audio"
    assert sent["input_audio"]["format"] in {"webm", "ogg"}


def test_live_mode_answers_speech_without_a_button(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    expect = sync_api.expect
    page.goto(server.root + "/playground")
    expect(page.get_by_label("Model")).to_have_value("omnivox-audio")
    live = page.get_by_role("button", name="Live")
    live.click()
    expect(live).to_have_attribute("aria-pressed", "true")
    # a Realtime session sets no temperature (the server samples at 0.6): the words heard
    # are checked, and that an answer was spoken, not what it says
    expect(page.locator("article.turn.user .words").first).to_contain_text(
        re.compile("france", re.IGNORECASE)
    )
    expect(page.locator(ANSWER_AUDIO)).to_have_count(1)
    expect(answers(page).first.locator(".words")).not_to_be_empty()
    live.click()
    expect(live).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_role("alert")).to_be_hidden()


def test_stop_cuts_the_answer_and_the_conversation_goes_on(
    server: LiveServer, browser: Browser
) -> None:
    page = browser.page
    expect = sync_api.expect
    page.goto(server.root + "/playground")
    expect(page.get_by_label("Model")).to_have_value("omnivox-audio")
    page.get_by_label("Temperature").fill("0")
    page.get_by_role("textbox", name="Message").fill("Tell me a long story about a lighthouse.")
    page.get_by_role("button", name="Send").click()
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled()
    expect(answers(page).first.locator(".words")).not_to_be_empty()
    stop.click()
    expect(stop).to_be_disabled()
    expect(page.get_by_role("alert")).to_be_hidden()

    page.get_by_role("textbox", name="Message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    expect(answers(page).last.locator(".words")).to_have_text(PARIS)
    expect(answers(page).last.locator("audio")).to_have_count(1)


def test_api_errors_are_shown_in_words(server: LiveServer, browser: Browser) -> None:
    page = browser.page
    expect = sync_api.expect
    browser.allowed.append(re.compile(r"status of 400"))  # the browser logs the failed request
    page.goto(server.root + "/playground")
    expect(page.get_by_label("Model")).to_have_value("omnivox-audio")
    page.get_by_label("Temperature").fill("3")
    page.get_by_role("textbox", name="Message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("temperature")
    expect(page.locator(ANSWER_AUDIO)).to_have_count(0)


def test_a_server_with_keys_is_used_with_the_key_typed_in_the_page(
    cascade: CascadeEngine, browser: Browser, tmp_path: Path
) -> None:
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    try:
        secret = store.create("playground", "1", Limits())[1]
    finally:
        store.close()
    keyed = start_server(LentEngine(cascade), tmp_path, access=build_access, require_keys=True)  # type: ignore[arg-type]
    try:
        page = browser.page
        expect = sync_api.expect
        browser.allowed.append(re.compile(r"status of 401"))
        page.goto(keyed.root + "/playground")
        expect(page.get_by_role("alert")).to_contain_text("API key")
        page.get_by_label("API key").fill(secret)
        page.get_by_label("API key").dispatch_event("change")
        expect(page.get_by_label("Model")).to_have_value("omnivox-audio")
        page.get_by_label("Temperature").fill("0")
        page.get_by_role("textbox", name="Message").fill(QUESTION)
        page.get_by_role("button", name="Send").click()
        expect(page.locator(ANSWER_AUDIO)).to_have_count(1)
        expect(page.get_by_role("alert")).to_be_hidden()
        heard(page)  # Send was the first press on the page: the player starts with it
        assert page.evaluate("localStorage.getItem('omnivox.playground.apiKey')") == secret
    finally:
        keyed.stop()
