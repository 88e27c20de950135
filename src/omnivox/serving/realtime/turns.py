"""Server-side turn detection: where the user's speech starts and where their turn ends.

``TurnDetector`` reads the speech probability of each 32 ms window of the input
audio (``engines.vad.StreamingVad``) and says what changed, in ms of the session's
input audio (the clock OpenAI's ``audio_start_ms``/``audio_end_ms`` count):

- ``SpeechStarted``: a window at or above ``threshold``; ``audio_start_ms`` reaches
  back ``prefix_padding_ms`` before it, so the first sound is kept.
- ``SpeechPaused``: silence (probability under ``threshold`` - 0.15, Silero's own
  hysteresis) after speech, told twice: ``early`` after ``EARLY_PAUSE_MS`` (the first
  silent window), then after ``PAUSE_MS``. The turn may be over: the session starts
  recognising and answering it speculatively, at the early signal when the engine has
  nothing else to do (a speculation thrown away then delays nobody), else at the later.
  Either hears the audio up to ``end_ms + tail_ms`` (the early one, the part of it not
  come yet as silence).
- ``SpeechResumed``: speech again before the turn ended: that speculation is thrown
  away.
- ``SpeechStopped``: ``silence_duration_ms`` of silence: the turn is over. Its audio
  ends at ``end_ms + tail_ms``, the same audio a speculation at the pause has heard.
- ``IdleTimeout``: no speech for ``idle_timeout_ms`` after ``arm_idle`` (the end of
  the last answer's audio, in the same clock).

Nothing here touches audio or the network; the detector is fed numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from omnivox.serving.realtime.config import TurnRules

HYSTERESIS = 0.15
EARLY_PAUSE_MS = 32  # the silence after which an idle engine recognises a turn speculatively
PAUSE_MS = 160  # the silence after which a busy one does, and that a turn's audio keeps


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int  # with the padding before the first speech window
    speech_ms: int  # the first speech window's start


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    end_ms: int  # where the speech ended
    early: bool  # told after EARLY_PAUSE_MS (else after PAUSE_MS)


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
        self._pauses_told = 0  # SpeechPaused signals since the speech last sounded
        self._idle_from: int | None = None

    def arm_idle(self, from_ms: int) -> None:
        """Count idle time from ``from_ms`` (only with ``idle_timeout_ms``)."""
        if self.rules.idle_timeout_ms is not None:
            self._idle_from = from_ms

    def reset(self) -> None:
        """Forget the speech in progress (the buffer was committed or cleared)."""
        self.in_speech = False
        self._silence_from = None
        self._pauses_told = 0

    def window(self, probability: float, start_ms: int, end_ms: int) -> list[TurnSignal]:
        rules = self.rules
        signals: list[TurnSignal] = []
        if not self.in_speech:
            if probability >= rules.threshold:
                self.in_speech = True
                self._idle_from = None
                self._silence_from = None
                self._pauses_told = 0
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
            if self._pauses_told:
                signals.append(SpeechResumed())
            self._silence_from = None
            self._pauses_told = 0
            return signals
        if probability < rules.threshold - HYSTERESIS and self._silence_from is None:
            self._silence_from = start_ms
        if self._silence_from is None:
            return signals
        silent_ms = end_ms - self._silence_from
        if silent_ms >= rules.silence_duration_ms:
            signals.append(SpeechStopped(self._silence_from))
            self.reset()
        else:
            for told, after_ms in enumerate((EARLY_PAUSE_MS, PAUSE_MS)):
                if silent_ms >= after_ms and self._pauses_told == told:
                    self._pauses_told += 1
                    signals.append(SpeechPaused(self._silence_from, early=told == 0))
        return signals
