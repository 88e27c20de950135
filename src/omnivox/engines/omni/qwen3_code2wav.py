"""Qwen3-Omni's Code2Wav, streamed: frames of 16 codes become waveform while the talker speaks.

Code2Wav turns a frame (12.5 per second) into 1,920 samples at 24 kHz: a
causal transformer over the frames (sliding window), then causal transposed
convolutions and a causal convolutional decoder. Everything is causal except
the transposed convolutions, each of which looks one input step ahead: in all
555 samples (~23 ms; ``Code2Wave.look_ahead`` measures it at load rather than
assuming it). So the samples up to ``n x 1920 - 555`` depend on the first ``n``
frames only, and a window of frames decoded on its own is exact on its right
side. On its left it sees ``FramePlan.context_frames`` earlier frames: 25, the
left context of transformers' ``chunked_decode``. That is an approximation
(the real Code2Wav's transformer attends 72 frames back, over 8 layers, and
its convolutions reach back too), and this stream makes it more often than
``generate`` does, which cuts every 300 frames where this stream cuts every
12 at most; a wider context costs Code2Wav work on every window.

``FrameStream`` keeps a conversation's frames and what has been sent. Its
chunks are fixed (``FramePlan``: the first chunk is one frame, the earliest
audio the model allows (57 ms of it); each next chunk twice the last, up to
``frames`` (~1 s), the rest at the end), so the audio does not depend on how
fast the talker ran and a seed reproduces it. Doubling keeps a listener fed
while the talker runs at least twice as fast as real time (chunk k+1 has
twice the frames of chunk k, whose audio plays while they are made) and
keeps the chunks few. A chunk ending at frame ``e`` decodes the window
``[max(0, s - context), e)``, ``s`` being the previous chunk's end, and sends
samples ``[s x 1920 - 555, e x 1920 - 555)`` (from 0 for the first). The last
555 samples of the clip are never made, as in transformers' ``generate``.

``Code2WavVocoder`` decodes the windows of several conversations in one call:
windows of different lengths are right-padded, which is exact for each row's
own samples, because of the causality above.

This module knows nothing of text, sampling or HTTP.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnivox.engines.omni.conversation import Conversation
from omnivox.engines.omni.vocoder import MAX_BATCH, Jobs, VocoderThread


@dataclass(frozen=True, slots=True)
class FramePlan:
    first_frames: int = 1  # the first chunk: 80 ms of codes, 57 ms of audio
    frames: int = 12  # chunks double up to this (~1 s)
    context_frames: int = 25  # earlier frames each window sees (transformers' value)

    def __post_init__(self) -> None:
        if min(self.first_frames, self.frames, self.context_frames) < 1:
            raise ValueError("a FramePlan needs at least one frame per chunk and of context")

    def chunk_frames(self, index: int) -> int:
        """Frames in chunk ``index`` (0 first): doubling from ``first_frames`` to ``frames``."""
        return min(self.frames, self.first_frames << min(index, 30))


class Code2Wave:
    """Code2Wav called on windows of frames, several conversations at once."""

    def __init__(self, code2wav: Any, device: Any) -> None:
        import torch

        self.module = code2wav
        self.device = device
        self.n_groups = int(code2wav.config.num_quantizers)
        self.samples_per_frame = int(code2wav.total_upsample)
        probe_frames = 2
        with torch.inference_mode():
            codes = torch.zeros(1, self.n_groups, probe_frames, dtype=torch.long, device=device)
            made = int(code2wav(codes).shape[-1])
        self.look_ahead = probe_frames * self.samples_per_frame - made

    def decode(self, windows: list[list[list[int]]]) -> list[np.ndarray]:
        """The waveform (float32, 24 kHz) of each window of frames, all in one call."""
        import torch

        longest = max(len(window) for window in windows)
        codes = torch.zeros(len(windows), longest, self.n_groups, dtype=torch.long)
        for row, window in enumerate(windows):
            codes[row, : len(window)] = torch.tensor(window, dtype=torch.long)
        wave = self.module(codes.to(self.device).transpose(1, 2))
        waves = np.asarray(wave.float().cpu().numpy(), dtype=np.float32).reshape(len(windows), -1)
        return [
            waves[row, : len(window) * self.samples_per_frame - self.look_ahead]
            for row, window in enumerate(windows)
        ]


@dataclass(frozen=True, slots=True)
class WindowJob:
    """Decode frames [start, end) of a stream; send its samples from the last chunk's end."""

    stream: FrameStream
    frames: list[list[int]]
    start: int
    end: int


class FrameStream:
    """One conversation's frames in, waveform out; frames may arrive from another thread."""

    def __init__(self, c2w: Code2Wave, plan: FramePlan) -> None:
        self._c2w = c2w
        self._plan = plan
        self._lock = threading.Lock()
        self._frames: list[list[int]] = []
        self._finished = False
        self.sent_frames = 0  # audio up to this frame's boundary has been sent
        self.chunks = 0
        self.done = False

    def add(self, frame: list[int]) -> None:
        with self._lock:
            self._frames.append(frame)

    def finish(self) -> None:
        with self._lock:
            self._finished = True

    @property
    def n_frames(self) -> int:
        with self._lock:
            return len(self._frames)

    def job(self) -> WindowJob | None:
        """The next chunk's window, if its frames are all there (or the speech ended)."""
        if self.done:
            return None
        with self._lock:
            n_frames, finished = len(self._frames), self._finished
            end = self.sent_frames + self._plan.chunk_frames(self.chunks)
            if end > n_frames:
                if not finished:
                    return None
                end = n_frames
            if end <= self.sent_frames:  # finished, nothing left to say
                self.done = True
                return None
            start = max(0, self.sent_frames - self._plan.context_frames)
            frames = self._frames[start:end]
        return WindowJob(self, frames, start, end)

    def take(self, job: WindowJob, wave: np.ndarray) -> np.ndarray:
        """The new audio of ``wave`` (the decoded window); marks the stream done at the end."""
        per_frame, ahead = self._c2w.samples_per_frame, self._c2w.look_ahead
        first = self.sent_frames * per_frame - ahead if self.sent_frames else 0
        audio = wave[first - job.start * per_frame :]
        self.sent_frames = job.end
        self.chunks += 1
        with self._lock:
            self.done = self._finished and job.end >= len(self._frames)
        return audio


class Code2WavVocoder(VocoderThread):
    """Qwen3-Omni: every ready window, earliest deadline first, in one Code2Wav call."""

    def __init__(self, c2w: Code2Wave, plan: FramePlan) -> None:
        super().__init__(c2w.device)
        self.c2w = c2w
        self.plan = plan

    def _new_stream(self, conversation: Conversation) -> FrameStream:
        return FrameStream(self.c2w, self.plan)

    def _pick(self) -> Jobs:
        jobs: Jobs = []
        for conversation in self._by_deadline():
            stream: FrameStream = conversation.stream
            job = stream.job()
            if job is not None or stream.done:
                jobs.append((conversation, job))
            if len(jobs) == MAX_BATCH:
                break
        return jobs

    def _work(self, jobs: Jobs) -> None:
        windows = [(conversation, job) for conversation, job in jobs if job is not None]
        if windows:
            self.peak_batch = max(self.peak_batch, len(windows))
            waves = self.c2w.decode([job.frames for _, job in windows])
            for (conversation, job), wave in zip(windows, waves, strict=True):
                self._send(conversation, job.stream.take(job, wave))
        self._end_done(jobs)
