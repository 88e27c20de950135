"""Server VAD's state machine: what it says, window by window, for a sequence of speech
probabilities (32 ms windows of the session's input audio)."""

from __future__ import annotations

from dataclasses import replace

from omnivox.serving.realtime.config import TurnRules
from omnivox.serving.realtime.turns import (
    EARLY_PAUSE_MS,
    PAUSE_MS,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    TurnSignal,
    tail_ms,
)

WINDOW_MS = 32
RULES = TurnRules(
    threshold=0.5,
    prefix_padding_ms=300,
    silence_duration_ms=500,
    idle_timeout_ms=None,
    create_response=True,
    interrupt_response=True,
)


def run(detector: TurnDetector, probabilities: list[float], start_ms: int = 0) -> list[TurnSignal]:
    signals: list[TurnSignal] = []
    for k, probability in enumerate(probabilities):
        at_ms = start_ms + k * WINDOW_MS
        signals += detector.window(probability, at_ms, at_ms + WINDOW_MS)
    return signals


def test_a_pause_is_told_at_the_first_silent_window_then_after_pause_ms_then_the_turn_ends() -> (
    None
):
    detector = TurnDetector(RULES)
    speech, silent = [0.9] * 20, [0.05] * 20  # 640 ms each
    signals = run(detector, speech + silent)
    end_ms = 20 * WINDOW_MS
    assert signals == [
        SpeechStarted(0, 0),
        SpeechPaused(end_ms, early=True),
        SpeechPaused(end_ms, early=False),
        SpeechStopped(end_ms),
    ]
    assert not detector.in_speech


def test_each_pause_is_told_at_its_own_times_and_speech_again_withdraws_it() -> None:
    detector = TurnDetector(RULES)
    windows_to_early = EARLY_PAUSE_MS // WINDOW_MS
    windows_to_pause = -(-PAUSE_MS // WINDOW_MS)
    short_pause = [0.9] * 5 + [0.05] * windows_to_early + [0.9] * 5
    signals = run(detector, short_pause)
    assert signals == [
        SpeechStarted(0, 0),
        SpeechPaused(5 * WINDOW_MS, early=True),
        SpeechResumed(),
    ]
    # a longer pause, and the hysteresis: 0.4 is neither speech nor silence
    longer = [0.05] * windows_to_pause + [0.4] * 3 + [0.9]
    signals = run(detector, longer, start_ms=len(short_pause) * WINDOW_MS)
    pause_ms = len(short_pause) * WINDOW_MS
    assert signals == [
        SpeechPaused(pause_ms, early=True),
        SpeechPaused(pause_ms, early=False),
        SpeechResumed(),
    ]
    assert detector.in_speech


def test_a_short_silence_rule_ends_the_turn_before_any_late_pause() -> None:
    rules = replace(RULES, silence_duration_ms=100)
    signals = run(TurnDetector(rules), [0.9] * 5 + [0.05] * 10)
    assert signals == [
        SpeechStarted(0, 0),
        SpeechPaused(5 * WINDOW_MS, early=True),
        SpeechStopped(5 * WINDOW_MS),
    ]
    # the turn's audio keeps 160 ms of its silence, never more than the rule's
    assert tail_ms(RULES) == PAUSE_MS
    assert tail_ms(replace(RULES, silence_duration_ms=10)) == 10
