"""Server-side turn detection: where the user's speech starts and where their turn ends.

``TurnDetector`` reads the speech probability of each 32 ms window of the input
audio (``engines.vad.StreamingVad``) and says what changed, in ms of the session's
input audio (the clock OpenAI's ``audio_start_ms``/``audio_end_ms`` count):

- ``SpeechStarted``: a window at or above ``threshold``; ``audio_start_ms`` reaches
  back ``prefix_padding_ms`` before it, so the first sound is kept.
- ``SpeechPaused``: ``PAUSE_MS`` of silence (probability under ``threshold`` - 0.15,
  Silero's own hysteresis) after speech. The turn may be over: the session starts
  recognising and answering it now, speculatively, on the audio up to
  ``end_ms + PAUSE_MS``.
- ``SpeechResumed``: speech again before the turn ended: that speculation is thrown
  away.
- ``SpeechStopped``: ``silence_duration_ms`` of silence: the turn is over. Its audio
  ends at ``end_ms + min(PAUSE_MS, silence_duration_ms)``, the same audio a
  speculation started at the pause has heard.
- ``IdleTimeout``: no speech for ``idle_timeout_ms`` after ``arm_idle`` (the end of
  the last answer's audio, in the same clock).

Nothing here touches audio or the network; the detector is fed numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnivox.serving.realtime.config import TurnRules

HYSTERESIS = 0.15
PAUSE_MS = 160  # the silence after which a turn is recognised speculatively


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int  # with the padding before the first speech window
    speech_ms: int  # the first speech window's start


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    end_ms: int  # where the speech ended


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    pass


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    end_ms: int  # where the speech ended


@dataclass(frozen=True, slots=True)
class IdleTimeout:
    start_ms: int
    end_ms: int


TurnSignal = SpeechStarted | SpeechPaused | SpeechResumed | SpeechStopped | IdleTimeout


def tail_ms(rules: TurnRules) -> int:
    """How much of the silence after the speech a turn's audio keeps."""
    return min(PAUSE_MS, rules.silence_duration_ms)


class TurnDetector:
    def __init__(self, rules: TurnRules) -> None:
        self.rules = rules
        self.in_speech = False
        self._silence_from: int | None = None
        self._paused = False
        self._idle_from: int | None = None

    def arm_idle(self, from_ms: int) -> None:
        """Count idle time from ``from_ms`` (only with ``idle_timeout_ms``)."""
        if self.rules.idle_timeout_ms is not None:
            self._idle_from = from_ms

    def reset(self) -> None:
        """Forget the speech in progress (the buffer was committed or cleared)."""
        self.in_speech = False
        self._silence_from = None
        self._paused = False

    def window(self, probability: float, start_ms: int, end_ms: int) -> list[TurnSignal]:
        rules = self.rules
        signals: list[TurnSignal] = []
        if not self.in_speech:
            if probability >= rules.threshold:
                self.in_speech = True
                self._idle_from = None
                self._silence_from = None
                self._paused = False
                padded = max(0, start_ms - rules.prefix_padding_ms)
                signals.append(SpeechStarted(padded, start_ms))
            elif (
                self._idle_from is not None
                and rules.idle_timeout_ms is not None
                and end_ms - self._idle_from >= rules.idle_timeout_ms
            ):
                signals.append(IdleTimeout(self._idle_from, end_ms))
                self._idle_from = None
            return signals
        if probability >= rules.threshold:
            if self._paused:
                signals.append(SpeechResumed())
            self._silence_from = None
            self._paused = False
            return signals
        if probability < rules.threshold - HYSTERESIS and self._silence_from is None:
            self._silence_from = start_ms
        if self._silence_from is None:
            return signals
        silent_ms = end_ms - self._silence_from
        if silent_ms >= rules.silence_duration_ms:
            signals.append(SpeechStopped(self._silence_from))
            self.reset()
        elif silent_ms >= PAUSE_MS and not self._paused:
            self._paused = True
            signals.append(SpeechPaused(self._silence_from))
        return signals
