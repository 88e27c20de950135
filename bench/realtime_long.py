"""Long spoken turns over the Realtime API: heard in pieces while the user speaks, or whole.

Each turn is two sentences of context and a question (espeak-ng, as ``bench.realtime``
makes its clips), 0.3 s of silence between them (pauses that do not end the turn:
``silence_duration_ms`` is 500), 9-11 s of speech in all. It is streamed at real speed
into two ``omnivox serve`` servers in turn, a fresh session each time: one as it is, which
recognises a long turn in pieces cut at its pauses (``PIECE_MIN_MS``), and one told never
to cut a piece (a ``sitecustomize`` on its ``PYTHONPATH`` sets ``PIECE_MIN_MS`` out of
reach), which recognises the whole turn at its end. The time is from the end of speech
to the first audio delta, and to ``response.created`` (the commit, or the end of the
turn's recognition and prompt if later). Turns alternate between the servers, so the
host's drift enters both alike; the last bits of the audio change on every turn, so no
transcript is reused.

    .venv/bin/python -m bench.realtime_long [--rounds 2] [--out FILE]

Prints a table and writes bench/realtime_long.json (with the run's facts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.cascade import Server, percentile, progress
from bench.facts import run_facts
from bench.realtime import CHUNK_BYTES, RATE, Clip, Target, make_clip

OUT = Path(__file__).with_suffix(".json")
PAUSE_S = 0.3  # between the sentences of a turn
TURNS = (
    (
        "I am planning a trip to the coast next month with my family.",
        "We want to spend a few days near the sea and try the local food.",
        "What should we pack for a week at the beach?",
    ),
    (
        "My daughter has started learning about the planets at school.",
        "She keeps asking me questions that I cannot answer.",
        "Why is the planet Mars red?",
    ),
    (
        "I have been trying to sleep better for the last few weeks.",
        "I go to bed at the same time but I still wake up tired.",
        "Can you give me three tips for sleeping better?",
    ),
    (
        "We are cooking dinner for six friends on Saturday evening.",
        "Two of them do not eat meat and one does not eat fish.",
        "What is a simple main course that everyone can eat?",
    ),
    (
        "I bought a bicycle last year but I have hardly used it.",
        "The roads near my house are busy in the morning.",
        "How can I start cycling to work safely?",
    ),
    (
        "Our team at work is moving to a new office in the spring.",
        "Everyone is worried that it will be noisy and crowded.",
        "How can we keep an open office quiet?",
    ),
)
NO_PIECES = "import omnivox.serving.realtime.session as session\nsession.PIECE_MIN_MS = 10**9\n"


def long_clip(sentences: tuple[str, ...], folder: Path) -> Clip:
    """The sentences' speech, ``PAUSE_S`` of silence between them, after the usual lead."""
    clips = [make_clip(sentence, folder) for sentence in sentences]
    gap = bytes(round(PAUSE_S * RATE) * 2)
    speech = gap.join(clip.speech for clip in clips)
    lead = clips[0].recorded[: -clips[0].speech_bytes]
    lead += bytes((-len(lead + speech)) % CHUNK_BYTES)  # the speech ends on a chunk's end
    return Clip(" ".join(sentences), lead + speech, len(speech))


async def measure(
    targets: dict[str, Target], clips: list[Clip], rounds: int
) -> list[dict[str, Any]]:
    for target in targets.values():  # warm-ups
        await target.realtime(target.fresh(clips[0]))
    rows = []
    for round_ in range(1, rounds + 1):
        for i, clip in enumerate(clips):
            order = list(targets.items())
            if (round_ + i) % 2:
                order.reverse()
            for name, target in order:
                row = await target.realtime(target.fresh(clip))
                rows.append({"round": round_, "index": i, "server": name, **row})
                progress(
                    f"round {round_}, turn {i + 1}/{len(clips)}, {name}: first audio "
                    f"{row.get('first_audio_s')} s, response.created "
                    f"{row.get('response_created_s')} s"
                    + (f"; {row['problems']}" if row["problems"] else "")
                )
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in ("pieces", "whole"):
        mine = [r for r in rows if r["server"] == name]
        for key in ("first_audio_s", "response_created_s"):
            values = [r[key] for r in mine if r.get(key) is not None]
            summary[f"{name}_{key}"] = {
                "n": len(values),
                "p50": round(statistics.median(values), 3) if values else None,
                "p95": percentile(values, 0.95) if values else None,
            }
        summary[f"{name}_problems"] = sum(bool(r["problems"]) for r in mine)
    pairs = {}
    for r in rows:
        pairs.setdefault((r["round"], r["index"]), {})[r["server"]] = r.get("first_audio_s")
    ratios = [
        p["pieces"] / p["whole"] for p in pairs.values() if p.get("pieces") and p.get("whole")
    ]
    summary["pieces_over_whole_paired_p50"] = (
        round(statistics.median(ratios), 3) if ratios else None
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="times each turn is said to each")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the JSON report ({OUT})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = [long_clip(turn, folder) for turn in TURNS]
        patch = folder / "no-pieces"
        patch.mkdir()
        (patch / "sitecustomize.py").write_text(NO_PIECES)
        servers = {
            "pieces": Server(folder / "data-pieces"),
            "whole": Server(folder / "data-whole", python_path=[patch]),
        }
        try:
            rng = random.Random()
            targets = {
                name: Target(server.base_url, None, False, rng) for name, server in servers.items()
            }
            rows = asyncio.run(measure(targets, clips, args.rounds))
        finally:
            for server in servers.values():
                server.stop()
    report: dict[str, Any] = {
        "facts": run_facts(),
        "rounds": args.rounds,
        "pause_s": PAUSE_S,
        "turns": [{"text": clip.question, "speech_s": round(clip.speech_s, 3)} for clip in clips],
        "summary": summarise(rows),
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    summary = report["summary"]
    print(f"machine: {report['facts']['cpu']}; commit {report['facts']['commit']}")
    print("times from the end of speech, s:")
    print(f"  {'server':<40} {'n':>3} {'p50':>7} {'p95':>7}")
    for name, label in (("pieces", "heard in pieces (as served)"), ("whole", "heard whole")):
        for key, what in (("first_audio_s", "first audio"), ("response_created_s", "created")):
            row = summary[f"{name}_{key}"]
            print(f"  {label + ', ' + what:<40} {row['n']:>3} {row['p50']:>7} {row['p95']:>7}")
    print(f"  pieces / whole, paired p50: {summary['pieces_over_whole_paired_p50']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
