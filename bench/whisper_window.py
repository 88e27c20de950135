"""Whisper base's encoder window: word error rate and time of a pass, window by window.

Whisper was trained on 30 s windows, and faster-whisper pads every one to 30 s; the
recogniser (``engines/cascade/listening/recogniser.py``) encodes speech that ends early
enough in a shorter window (``SHORT_WINDOWS_S``). This measures what that costs in words
and saves in time: sentences and questions (1 to 18 s: the twelve questions of
``bench.cascade``, the twelve sentences of ``bench.audio_endpoints``, nineteen more,
two of them long) said by several synthetic voices (espeak-ng and flite, none of them the
server's), each trimmed to its speech with 0.2 s of silence around it, are heard by the
recogniser as the cascade runs it (int8, 2 threads, a beam of 3, English), once per
window (the only short one), with the same clips in the same order; ``--longest`` keeps
only the clips up to that length (a short turn's windows); ``--timestamps`` hears each clip
in each window twice, with and without timestamp tokens (``TIMESTAMPS_ALONE``: a clip heard
alone decodes none), in that order. The word error rate counts words after
lower-casing and dropping punctuation (numerals written as digits count as errors,
alike in every window).

    .venv/bin/python -m bench.whisper_window [--windows 30 25 20 18 15] [--voices 8]
        [--longest 7.5] [--timestamps] [--out FILE]

Prints a table and writes bench/whisper_window.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.audio_endpoints import SENTENCES
from bench.cascade import QUESTIONS
from bench.facts import run_facts
from devtools.wer import word_error_rate, words
from omnivox.audio import decode_audio
from omnivox.engines.cascade import assets
from omnivox.engines.cascade.listening import recogniser as recogniser_module
from omnivox.engines.cascade.listening.recogniser import SAMPLE_RATE, WhisperRecogniser
from omnivox.settings import Settings

OUT = Path(__file__).with_name("whisper_window.json")
MORE = (
    "Can you remind me to call the dentist tomorrow?",
    "How many kilometres are there in a mile?",
    "Set a timer for fifteen minutes.",
    "What time does the bakery open on Saturday?",
    "Translate good morning into Spanish.",
    "Who wrote the novel Pride and Prejudice?",
    "Turn off the lights in the kitchen.",
    "Is it going to snow this weekend?",
    "Book a table for four people at eight o'clock.",
    "What is the square root of one hundred and forty four?",
    "Play some quiet music while I read.",
    "How far away is the nearest hospital?",
    "Yes.",
    "No, thank you.",
    "Stop.",
    "Hello there.",
    "I would like to order a large pizza with mushrooms, olives and extra cheese, and "
    "please deliver it to the back door because the front bell is broken.",
    "Last summer we drove along the coast for two weeks, stopping in small fishing "
    "villages, eating fresh bread and swimming in the cold clear sea every single morning.",
    "The committee will review every application carefully, and the candidates who pass "
    "the first round will be invited to an interview in the second week of March.",
)
TEXTS = (*QUESTIONS, *SENTENCES, *MORE, " ".join(SENTENCES[:5]), " ".join(QUESTIONS[:4]))
# (name, command before the output path and the text); flite voices by name
VOICES: tuple[tuple[str, list[str]], ...] = (
    ("espeak-ng en-us", ["espeak-ng", "-v", "en-us", "-s", "140"]),
    ("espeak-ng en-gb+f3", ["espeak-ng", "-v", "en-gb+f3", "-s", "165"]),
    ("flite slt", ["flite", "-voice", "slt"]),
    ("espeak-ng en-us+m3", ["espeak-ng", "-v", "en-us+m3", "-s", "150"]),
    ("espeak-ng en-gb", ["espeak-ng", "-v", "en-gb", "-s", "130"]),
    ("flite awb", ["flite", "-voice", "awb"]),
    ("flite rms", ["flite", "-voice", "rms"]),
    ("flite kal16", ["flite", "-voice", "kal16"]),
)
PAD_S = 0.2


def say(command: list[str], text: str, path: Path) -> np.ndarray:
    if command[0] == "flite":
        subprocess.run([*command, "-t", text, "-o", str(path)], check=True)
    else:
        subprocess.run([*command, "-w", str(path), text], check=True)
    samples = decode_audio(path.read_bytes(), sample_rate=SAMPLE_RATE)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    pad = int(PAD_S * SAMPLE_RATE)
    return samples[max(0, loud[0] - pad) : loud[-1] + pad]


class Tally:
    """Wrong words, words and seconds spent, over the clips heard one way."""

    def __init__(self) -> None:
        self.by_voice: dict[str, list[int]] = {}
        self.spent_s = 0.0

    def add(self, voice: str, text: str, heard: str, spent_s: float) -> None:
        count = len(words(text))
        tally = self.by_voice.setdefault(voice, [0, 0])
        tally[0] += round(word_error_rate(text, heard) * count)
        tally[1] += count
        self.spent_s += spent_s

    def row(self, n_clips: int) -> dict[str, Any]:
        errors = sum(e for e, _ in self.by_voice.values())
        total = sum(n for _, n in self.by_voice.values())
        return {
            "word_error_rate": round(errors / total, 4),
            "words": total,
            "pass_s_mean": round(self.spent_s / n_clips, 3),
            "by_voice": {name: round(e / n, 4) for name, (e, n) in self.by_voice.items()},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[30, 25, 20, 18, 15])
    parser.add_argument("--voices", type=int, default=len(VOICES), help="the first N voices")
    parser.add_argument("--longest", type=float, help="only clips up to this many seconds")
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="each window with and without timestamp tokens (else as the recogniser does)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    voices = VOICES[: args.voices]
    for tool in {command[0] for _, command in voices}:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install {tool})")
    model_dir = assets.whisper_files("base", Settings().models_dir)
    recogniser = WhisperRecogniser(model_dir, cpu_threads=2, language="en")
    with tempfile.TemporaryDirectory() as folder:
        clips = [
            (name, text, say(command, text, Path(folder) / f"{v}-{t}.wav"))
            for v, (name, command) in enumerate(voices)
            for t, text in enumerate(TEXTS)
        ]
    if args.longest is not None:
        clips = [clip for clip in clips if len(clip[2]) <= args.longest * SAMPLE_RATE]
    longest_s = max(len(samples) for _, _, samples in clips) / SAMPLE_RATE
    print(f"{len(clips)} clips in {len(voices)} voices, the longest {longest_s:.1f} s", flush=True)
    recogniser.transcribe(clips[0][2])  # warm-up
    rows: list[dict[str, Any]] = []
    stamping = (True, False) if args.timestamps else (recogniser_module.TIMESTAMPS_ALONE,)
    for window_s in args.windows:
        recogniser_module.SHORT_WINDOWS_S = (window_s,)
        tallies = {timestamps: Tally() for timestamps in stamping}
        for k, (name, text, samples) in enumerate(clips):
            # both ways on each clip, in alternating order, so that the host's drift is shared
            for timestamps in stamping[::-1] if k % 2 else stamping:
                recogniser_module.TIMESTAMPS_ALONE = timestamps
                start = time.perf_counter()
                heard = recogniser.transcribe(samples)
                tallies[timestamps].add(name, text, heard, time.perf_counter() - start)
        for timestamps, tally in tallies.items():
            row = {"window_s": window_s, "timestamps": timestamps, **tally.row(len(clips))}
            rows.append(row)
            print(
                f"window {window_s:>2} s, timestamps {'on' if timestamps else 'off'}: "
                f"word error rate {row['word_error_rate']:.3f}, "
                f"a pass {row['pass_s_mean']:.3f} s",
                flush=True,
            )
    report = {
        "facts": run_facts(),
        "clips": len(clips),
        "longest_s": args.longest,
        "voices": [n for n, _ in voices],
    }
    report["windows"] = rows
    print(f"\n  {'window':>7} {'timestamps':>10} {'WER':>7} {'pass, mean':>11}")
    for row in rows:
        print(
            f"  {row['window_s']:>5} s {'on' if row['timestamps'] else 'off':>10}"
            f" {row['word_error_rate']:>7.3f} {row['pass_s_mean']:>9.3f} s"
        )
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
