"""The audio endpoints on the embedded cascade, through HTTP and the official SDK.

Runs ``omnivox serve`` with the default models and measures, for a short (~3 s)
and a long (~60 s) input:

- ``/v1/audio/speech`` (``pcm``, streamed): time to the first byte, and the real-time
  factor (the whole reading's wall time over the length of the speech made);
- ``/v1/audio/transcriptions``: the real-time factor of a clip said by espeak-ng
  (wall time over the clip's length);

and the word error rate of round trips: a dozen sentences read by the server's voice
and written down again by its recogniser. Each timing is the median of ``--repeats``
runs. Prints a table and writes ``bench/audio_endpoints.json`` (with the run's facts).

    .venv/bin/python -m bench.audio_endpoints [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import openai

from bench.facts import run_facts
from devtools.serve import serve_process
from devtools.wer import word_error_rate

OUT = Path(__file__).with_suffix(".json")
PCM_BYTES_PER_S = 48_000
SHORT_TEXT = "The quick brown fox jumps over the lazy dog."
LONG_TEXT = (
    "Lighthouses were once kept by families who lived beside the lamp all year round. "
    "Every evening the keeper climbed the tower, trimmed the wick and wound the clockwork "
    "that turned the great lens. In storms he stayed awake through the night, watching the "
    "beam sweep across the water and listening for the horns of ships that had lost their "
    "way. Supplies came by boat once a month, when the sea allowed it, and letters came "
    "with them. Children learned their lessons at the kitchen table and knew every bird "
    "that nested on the rocks. Today most lights are automatic, watched from far away by "
    "computers, and the old houses beside them have become museums, cafes and places to "
    "stay for people who want to hear nothing but the wind and the waves for a few days. "
    "Some keepers still visit the towers where they worked, and they say the silence at "
    "night is the thing they remember best."
)
# Read by the server's voice, the long text alone is ~44 s; with these, ~60 s.
LONG_READING = LONG_TEXT + (
    " One of them, who kept a light on a small island for twenty years, still wakes at the "
    "hour when he used to check the lamp. He says the sea taught him patience, because no "
    "storm lasts for ever, and that the best sound in the world was the engine of the supply "
    "boat coming round the point on a clear morning. His children grew up and moved to the "
    "city, but every summer they come back to the island with their own children."
)
SENTENCES = (
    "Paris is the capital of France.",
    "The train leaves the station at seven in the morning.",
    "Please bring an umbrella because it may rain later.",
    "My sister plays the piano every Sunday afternoon.",
    "The library is closed on public holidays.",
    "Water boils at one hundred degrees Celsius.",
    "We planted tomatoes and beans in the garden.",
    "The meeting has been moved to Thursday.",
    "A cat is sleeping on the warm windowsill.",
    "He forgot his keys at the office again.",
    "The museum opens a new exhibition next month.",
    "Drink a glass of water before you go running.",
)


def espeak_wav(text: str, folder: Path, name: str) -> bytes:
    path = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return path.read_bytes()


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as reader:
        return reader.getnframes() / reader.getframerate()


def long_clip(folder: Path) -> bytes:
    """About 60 s of espeak-ng speech: the long text (without the reading's extra sentences)."""
    return espeak_wav(LONG_TEXT, folder, "long")


def time_speech(client: openai.OpenAI, text: str) -> dict[str, float]:
    start = time.perf_counter()
    first_s = None
    n_bytes = 0
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        for chunk in response.iter_bytes():
            if first_s is None and chunk:
                first_s = time.perf_counter() - start
            n_bytes += len(chunk)
    wall_s = time.perf_counter() - start
    audio_s = n_bytes / PCM_BYTES_PER_S
    return {"first_byte_s": first_s or wall_s, "audio_s": audio_s, "rtf": wall_s / audio_s}


def time_transcription(client: openai.OpenAI, wav: bytes) -> dict[str, Any]:
    start = time.perf_counter()
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", wav), response_format="text"
    )
    wall_s = time.perf_counter() - start
    return {"wall_s": wall_s, "rtf": wall_s / wav_seconds(wav), "text": str(text).strip()}


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        short_wav = espeak_wav(SHORT_TEXT, folder, "short")
        long_wav = long_clip(folder)
        with serve_process([], folder / "data", ready_timeout_s=600) as served:
            client = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
            time_speech(client, "Warm up.")  # the first call pays for nothing else
            results: dict[str, Any] = {}
            for name, text in (("short", SHORT_TEXT), ("long", LONG_READING)):
                runs = [time_speech(client, text) for _ in range(args.repeats)]
                results[f"speech_{name}"] = {
                    "input_chars": len(text),
                    "audio_s": median(runs, "audio_s"),
                    "first_byte_s": median(runs, "first_byte_s"),
                    "rtf": median(runs, "rtf"),
                }
            for name, wav in (("short", short_wav), ("long", long_wav)):
                runs = [time_transcription(client, wav) for _ in range(args.repeats)]
                results[f"transcription_{name}"] = {
                    "audio_s": round(wav_seconds(wav), 2),
                    "rtf": median(runs, "rtf"),
                    "wer": round(
                        word_error_rate(
                            SHORT_TEXT if name == "short" else LONG_TEXT, runs[0]["text"]
                        ),
                        3,
                    ),
                }
            rates = []
            for sentence in SENTENCES:
                spoken = client.audio.speech.create(
                    model="tts-1", voice="alloy", input=sentence, response_format="wav"
                ).content
                heard = client.audio.transcriptions.create(
                    model="whisper-1", file=("s.wav", spoken), response_format="text"
                )
                rates.append(
                    {
                        "sentence": sentence,
                        "heard": str(heard).strip(),
                        "wer": word_error_rate(sentence, str(heard)),
                    }
                )
            results["round_trip"] = {
                "sentences": len(rates),
                "mean_wer": round(statistics.mean(r["wer"] for r in rates), 3),
                "exact": sum(r["wer"] == 0 for r in rates),
                "each": rates,
            }
    report = {"facts": run_facts(), "repeats": args.repeats, **results}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'measure':<44} {'short (~3 s)':>14} {'long (~60 s)':>14}")
    s, lg = results["speech_short"], results["speech_long"]
    print(f"{'speech: input audio made (s)':<44} {s['audio_s']:>14} {lg['audio_s']:>14}")
    print(
        f"{'speech: time to first byte (s)':<44} {s['first_byte_s']:>14} {lg['first_byte_s']:>14}"
    )
    print(f"{'speech: real-time factor':<44} {s['rtf']:>14} {lg['rtf']:>14}")
    ts, tl = results["transcription_short"], results["transcription_long"]
    print(f"{'transcription: clip length (s)':<44} {ts['audio_s']:>14} {tl['audio_s']:>14}")
    print(f"{'transcription: real-time factor':<44} {ts['rtf']:>14} {tl['rtf']:>14}")
    print(f"{'transcription: word error rate':<44} {ts['wer']:>14} {tl['wer']:>14}")
    rt = results["round_trip"]
    print(
        f"round trips (speech -> transcription): {rt['sentences']} sentences, mean WER "
        f"{rt['mean_wer']}, {rt['exact']} heard exactly"
    )
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
