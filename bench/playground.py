"""The playground in a browser: time from Send to the first sound, against the SDK's first audio.

``omnivox serve`` (the embedded cascade) is opened at ``/playground`` in Debian's
``chromium`` driven by Playwright (launched by its path). Each of the twelve questions
of ``bench.cascade`` is typed into the page and sent (a fresh conversation each time,
voice alloy, temperature 0, at most 200 tokens), and the same request body is streamed
through the official OpenAI SDK:

- **page**: from Send (``performance.now()`` in the click's handler) to the moment the
  first sample of the answer leaves for the speakers: the AudioWorklet reports the frame
  it first plays, converted to ``performance.now()`` time by the AudioContext's
  ``getOutputTimestamp()`` (so the output latency is included). The page's own arrival
  time of the first audio delta is recorded too: the difference is the page's playback
  path (decoding, the worklet's next render quantum, output latency).
- **sdk**: from the call to ``chat.completions.create`` to the first chunk with
  ``delta.audio.data``.

Before each request, four short text requests fill the chat model's four KV caches
with other prompts, so that page and SDK alike find the question new (as a person's
next question is), and the server is left idle for a second. Page and SDK alternate
which goes first, question by question, over ``--rounds`` rounds; each request starts
once the previous answer has finished playing. The page is watched for the end of its
answer with a MutationObserver rather than Playwright's polling, which would keep the
renderer busy on the cores the server uses. Goal: the page's p50 at most 1.2 x the
SDK's, so that the page adds no buffering of its own.

Then one spoken exchange (Talk pressed, the question said by espeak-ng through
Chromium's fake microphone, Talk pressed again) is answered, and the page is saved as
``docs/playground.png`` (``--screenshot``).

    .venv/bin/python -m bench.playground [--rounds 2] [--screenshot docs/playground.png]
        [--chromium /usr/bin/chromium] [--out FILE]

Prints a table and writes bench/playground.json (with the run's facts).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import openai
from playwright.sync_api import Page, expect, sync_playwright

from bench.cascade import (
    MAX_ANSWER_TOKENS,
    QUESTIONS,
    VOICE,
    Server,
    espeak,
    percentile,
    progress,
)
from bench.facts import REPO_ROOT, run_facts
from devtools.first_audio import streamed_first_audio_s

OUT = Path(__file__).with_suffix(".json")
SCREENSHOT = REPO_ROOT / "docs" / "playground.png"
MODEL = "omnivox-audio"
TEMPERATURE = 0  # both paths get the same answer
ANSWER_TIMEOUT_MS = 180_000
SPOKEN_QUESTION = "Which city is the capital of France?"
LEAD_SILENCE_S = 0.5
TALK_S = 3.5
# Each measured request starts this long after the server's last request ended, as after
# a person's pause: what the server does once a stream is over (storing its audio, the
# ledger) is not timed in the next request.
QUIET_S = 1.0
# Short text requests, one per KV cache the chat model keeps, sent before each measured
# request so that it finds its question new, as a person's next question is.
FILLERS = ("Name a colour.", "Count to three.", "Say hello.", "Pick a number.")
# Resolves once the answer is complete and has finished playing, or an error is shown:
# a MutationObserver, not Playwright's polling, which would keep the page's renderer
# busy (and so the two shared cores) while the request is answered.
SETTLED = """() => new Promise((done) => {
  const settled = () =>
    !document.getElementById("error").hidden ||
    (document.querySelector("article.turn.assistant audio") !== null &&
      document.getElementById("stop").disabled);
  if (settled()) return done();
  const observer = new MutationObserver(() => {
    if (settled()) {
      observer.disconnect();
      done();
    }
  });
  observer.observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["disabled", "hidden"],
  });
})"""
VIEWPORT = {"width": 1280, "height": 760}
GOAL = 1.2


def page_body(question: str) -> dict[str, Any]:
    """What the page sends for ``question`` with this benchmark's settings."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "modalities": ["text", "audio"],
        "audio": {"voice": VOICE, "format": "pcm16"},
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": TEMPERATURE,
        "max_completion_tokens": MAX_ANSWER_TOKENS,
    }


def new_question(client: openai.OpenAI) -> None:
    """Fill every KV cache with another prompt, then let the server fall quiet."""
    for text in FILLERS:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], max_completion_tokens=1
        )
    time.sleep(QUIET_S)


def sdk_turn(client: openai.OpenAI, body: dict[str, Any]) -> dict[str, Any]:
    new_question(client)
    first_s, done_s = streamed_first_audio_s(client, body)
    return {"first_audio_s": first_s, "done_s": done_s}


def open_page(page: Page, root: str) -> None:
    page.goto(root + "/playground")
    expect(page.get_by_label("Model")).to_have_value(MODEL)
    page.get_by_label("Voice").select_option(VOICE)
    page.get_by_label("Temperature").fill(str(TEMPERATURE))
    page.get_by_label("Max tokens").fill(str(MAX_ANSWER_TOKENS))


def settled(page: Page) -> None:
    """Wait until the answer is complete and has finished playing."""
    page.evaluate(SETTLED)
    error = page.get_by_role("alert")
    if error.is_visible():
        raise RuntimeError(f"the page shows an error: {error.inner_text()}")
    expect(page.locator("article.turn.assistant audio")).to_have_count(1)


def page_turn(page: Page, client: openai.OpenAI, question: str) -> dict[str, Any]:
    page.get_by_role("button", name="New conversation").click()
    page.get_by_role("textbox", name="Message").fill(question)
    new_question(client)
    page.get_by_role("button", name="Send").click()
    settled(page)
    timings = page.evaluate("window.playgroundTimings")
    if timings["body"] != page_body(question):
        raise RuntimeError(f"the page sent another body: {json.dumps(timings['body'])}")
    if timings["firstSoundAt"] is None:
        raise RuntimeError("the page played no sound")
    send = timings["sendAt"]
    return {
        "first_sound_s": round((timings["firstSoundAt"] - send) / 1000, 4),
        "request_s": round((timings["requestAt"] - send) / 1000, 4),
        "first_delta_s": round((timings["firstDeltaAt"] - send) / 1000, 4),
        "done_s": round((timings["doneAt"] - send) / 1000, 4),
        "answer": page.locator("article.turn.assistant .words").last.inner_text(),
    }


def measure(page: Page, client: openai.OpenAI, rounds: int) -> list[dict[str, Any]]:
    pairs = []
    for round_ in range(rounds):
        for i, question in enumerate(QUESTIONS):
            body = page_body(question)
            page_first = (i + round_) % 2 == 0
            if page_first:
                shown = page_turn(page, client, question)
                sdk = sdk_turn(client, body)
            else:
                sdk = sdk_turn(client, body)
                shown = page_turn(page, client, question)
            pair: dict[str, Any] = {
                "round": round_ + 1,
                "question": question,
                "page_first": page_first,
                "page": shown,
                "sdk": {k: round(v, 4) if v is not None else None for k, v in sdk.items()},
            }
            pairs.append(pair)
            progress(
                f"round {round_ + 1}, question {i + 1}/{len(QUESTIONS)}: page first sound "
                f"{shown['first_sound_s']} s (its first delta {shown['first_delta_s']} s), "
                f"SDK first audio {pair['sdk']['first_audio_s']} s; {shown['answer'][:60]!r}"
            )
    return pairs


def spoken_exchange(page: Page, screenshot: Path | None) -> dict[str, Any]:
    page.get_by_role("button", name="New conversation").click()
    talk = page.get_by_role("button", name="Talk", exact=True)
    talk.click()
    page.wait_for_timeout(TALK_S * 1000)
    talk.click()
    settled(page)
    answer = page.locator("article.turn.assistant .words").last.inner_text()
    if screenshot is not None:
        page.locator("#settings").evaluate("settings => settings.scrollTo(0, 0)")
        page.screenshot(path=str(screenshot))
    return {"question": SPOKEN_QUESTION, "answer": answer, "names_paris": "paris" in answer.lower()}


def question_wav(folder: Path) -> Path:
    """The spoken question for the fake microphone, after a breath of silence."""
    with wave.open(io.BytesIO(espeak(SPOKEN_QUESTION, folder))) as reader:
        params = reader.getparams()
        speech = reader.readframes(params.nframes)
    path = folder / "question.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setparams(params)
        lead = round(params.framerate * LEAD_SILENCE_S) * params.sampwidth * params.nchannels
        writer.writeframes(bytes(lead) + speech)
    return path


def summarise(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    page = [p["page"]["first_sound_s"] for p in pairs]
    delta = [p["page"]["first_delta_s"] for p in pairs]
    sdk = [p["sdk"]["first_audio_s"] for p in pairs]
    playback_ms = [1000 * (p["page"]["first_sound_s"] - p["page"]["first_delta_s"]) for p in pairs]
    ratios = [a / b for a, b in zip(page, sdk, strict=True)]
    by_order = {
        name: statistics.median(
            r for r, p in zip(ratios, pairs, strict=True) if p["page_first"] == first
        )
        for name, first in (("page_first", True), ("sdk_first", False))
    }
    return {
        "n": len(pairs),
        "page_first_sound_p50_s": round(statistics.median(page), 3),
        "page_first_sound_p95_s": round(percentile(page, 0.95), 3),
        "page_first_delta_p50_s": round(statistics.median(delta), 3),
        "sdk_first_audio_p50_s": round(statistics.median(sdk), 3),
        "sdk_first_audio_p95_s": round(percentile(sdk, 0.95), 3),
        "page_over_sdk_p50": round(statistics.median(page) / statistics.median(sdk), 3),
        "page_over_sdk_paired_p50": round(statistics.median(ratios), 3),
        "page_over_sdk_paired_p50_by_order": {k: round(v, 3) for k, v in by_order.items()},
        "page_playback_p50_ms": round(statistics.median(playback_ms), 1),
        "page_playback_p95_ms": round(percentile(playback_ms, 0.95), 1),
        "goal": GOAL,
    }


def print_table(results: dict[str, Any]) -> None:
    s = results["summary"]
    rows = [
        (
            "page: Send to first sound, p50 / p95",
            f"{s['page_first_sound_p50_s']} / {s['page_first_sound_p95_s']} s",
        ),
        (
            "SDK: request to first audio delta, p50 / p95",
            f"{s['sdk_first_audio_p50_s']} / {s['sdk_first_audio_p95_s']} s",
        ),
        (
            "page / SDK, p50 (paired p50)",
            f"{s['page_over_sdk_p50']} ({s['page_over_sdk_paired_p50']}); goal at most {s['goal']}",
        ),
        (
            "page: first delta p50; its playback path p50 / p95",
            f"{s['page_first_delta_p50_s']} s; "
            f"{s['page_playback_p50_ms']} / {s['page_playback_p95_ms']} ms",
        ),
        ("spoken exchange (Talk): answer", repr(results["spoken"]["answer"])),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nplayground, {s['n']} pairs ({results['facts']['cpu']}, {results['facts']['date']})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--screenshot", type=Path, default=SCREENSHOT)
    parser.add_argument("--no-screenshot", action="store_true")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results: dict[str, Any] = {"facts": run_facts(), "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wav = question_wav(folder)
        server = Server(folder / "data")
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=args.chromium,
                    args=[
                        "--use-fake-ui-for-media-stream",
                        "--use-fake-device-for-media-stream",
                        f"--use-file-for-fake-audio-capture={wav}%noloop",
                        "--autoplay-policy=no-user-gesture-required",
                    ],
                )
                page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                page.set_default_timeout(ANSWER_TIMEOUT_MS)
                expect.set_options(timeout=ANSWER_TIMEOUT_MS)
                results["browser"] = f"Chromium {browser.version} (headless)"
                open_page(page, server.served.root)
                page_turn(page, client, QUESTIONS[0])  # warm-ups: the page's player, the models
                sdk_turn(client, page_body(QUESTIONS[0]))
                pairs = measure(page, client, args.rounds)
                shot = None if args.no_screenshot else args.screenshot
                results["spoken"] = spoken_exchange(page, shot)
                browser.close()
        finally:
            server.stop()
    results["summary"] = summarise(pairs)
    results["pairs"] = pairs
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
