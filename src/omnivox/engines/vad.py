"""Speech probability of a live 16 kHz stream, 32 ms at a time, with Silero VAD.

The model is the Silero VAD v6 that faster-whisper ships, run through onnxruntime
on the CPU. It scores windows of ``WINDOW_SAMPLES`` samples, each seen with the
``CONTEXT_SAMPLES`` samples before it, and carries an LSTM state (h, c) from one
window to the next. A ``StreamingVad`` keeps that state, that context and the samples
of the window not yet complete, so feeding a stream in pieces of any length gives
the probabilities that one pass over the whole stream gives.

The onnx graph treats its first input dimension as time: the windows of one call
run through the LSTM in order, starting from the state passed in, so a run over n
windows equals n runs over one window. ``feed`` therefore scores all the windows it
completes in one run: on one thread of an AMD EPYC core a window fed alone costs
~100 µs (0.3% of the 32 ms it lasts), and ~60 µs each when one feed completes ten
or more (0.2%). Loading the model takes ~0.15 s. The session is loaded once
per process and shared by every stream: ``InferenceSession.run`` is thread-safe,
and each stream passes its own state. A single ``StreamingVad`` is not: feed it
from one thread at a time.

This module knows nothing of turn detection (thresholds, padding, silence
durations) or of where the samples come from; it only scores them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

VAD_SAMPLE_RATE = 16_000  # Hz
WINDOW_SAMPLES = 512  # 32 ms at 16 kHz
CONTEXT_SAMPLES = 64  # the end of the window before, seen with each window
STATE_SHAPE = (1, 1, 128)  # the LSTM's h and c
# Bounds the memory of one run when a long recording is fed at once (~2.3 MB a run).
MAX_WINDOWS_PER_RUN = 1_024


@functools.cache
def _shared_session() -> Any:
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


def load_streaming_vad() -> None:
    """Load the shared VAD model now (once per process), rather than on the first ``feed``."""
    _shared_session()


class StreamingVad:
    """Scores a mono float32 stream at ``VAD_SAMPLE_RATE`` window by window.

    ``feed`` returns the speech probability (0 to 1) of each window that its samples
    complete, in order, and keeps the rest for the next call; window ``i`` covers
    samples ``i * WINDOW_SAMPLES`` to ``(i + 1) * WINDOW_SAMPLES`` of the stream.
    ``reset`` starts a new stream. Creating one is cheap: the model is shared.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything fed so far: the next sample starts a new stream."""
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._n_windows = 0

    @property
    def n_windows(self) -> int:
        """How many windows have been scored since the stream started."""
        return self._n_windows

    def feed(self, samples: np.ndarray) -> list[float]:
        """Add mono float32 ``samples``; returns the probabilities of the windows they complete."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be one channel (1-D), got shape {samples.shape}")
        stream = np.concatenate([self._pending, samples])
        n_windows = stream.size // WINDOW_SAMPLES
        complete = n_windows * WINDOW_SAMPLES
        self._pending = stream[complete:].copy()
        windows = stream[:complete].reshape(n_windows, WINDOW_SAMPLES)
        probabilities: list[float] = []
        for start in range(0, n_windows, MAX_WINDOWS_PER_RUN):
            probabilities.extend(self._score(windows[start : start + MAX_WINDOWS_PER_RUN]))
        return probabilities

    def _score(self, windows: np.ndarray) -> list[float]:
        """One model run over consecutive ``windows``, carrying the state through them."""
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT_SAMPLES:]])
        batch = np.concatenate([contexts, windows], axis=1)
        probabilities, self._h, self._c = _shared_session().run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -CONTEXT_SAMPLES:].copy()
        self._n_windows += len(windows)
        return [float(p) for p in np.ravel(probabilities)]
