"""The vocoder thread: every speaking conversation's speech stream, in batches.

``VocoderThread`` is the thread, shared by the families: it holds the speaking
conversations, picks each turn's work (earliest deadline first, below), sends
the audio as ``AudioDelta`` s and ``SpeechEnd`` after a stream's last chunk, and
drops cancelled conversations. What a turn computes is the family's:
``Vocoder`` here runs Qwen2.5-Omni's token2wav (``qwen2_5_token2wav``);
``qwen3_code2wav.Code2WavVocoder`` runs Qwen3-Omni's Code2Wav.

Qwen2.5-Omni: the model thread adds codes to a conversation's stream and wakes this thread.
Each turn it takes the conversation whose listener runs out of audio first
(earliest deadline first: one with no audio yet comes before all others, as its
first audio is what its user waits for; then the one whose audio sent so far
ends soonest in wall-clock time), and with it every other conversation whose
next DiT window has the same length (``MAX_BATCH`` at most): their windows are
solved in one batched DiT call, then their new mel is vocoded by BigVGAN, again
one call per window length. The audio now certain leaves as ``AudioDelta`` s; a
stream's last chunk is followed by ``SpeechEnd``. A cancelled conversation is
dropped before its next turn.

On CUDA the thread runs its kernels on a stream of its own, so that vocoding
overlaps the thinker and talker steps of the model thread.

This module knows nothing of text or sampling.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import float_to_s16le
from omnivox.engines.events import AudioDelta
from omnivox.engines.omni.conversation import Conversation, Failure, SpeechEnd
from omnivox.engines.omni.qwen2_5_token2wav import (
    ChunkPlan,
    MelJob,
    SpeechStream,
    Token2Wave,
    WaveJob,
)
from omnivox.errors import ServerError

IDLE_WAIT_S = 0.05
MAX_BATCH = 16


Jobs = list[tuple[Conversation, Any]]  # this turn's work: conversations and their jobs


class VocoderThread:
    """The thread and its bookkeeping; ``_new_stream``, ``_pick`` and ``_work`` are the family's."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._conversations: list[Conversation] = []
        self._first_audio_at: dict[int, float] = {}
        self._sent_s: dict[int, float] = {}
        self._wake = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._cpu_threads: int | None = None
        self.peak_batch = 0  # the most windows one batched call has vocoded

    def start(self, cpu_threads: int | None = None) -> None:
        self._running = True
        self._cpu_threads = cpu_threads
        self._thread = threading.Thread(target=self._run, name="omnivox-omni-vocoder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._running = False
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._wake:
            for conversation in list(self._conversations):
                conversation.sink.put(Failure(ServerError("the omni engine was stopped")))
                self._drop(conversation)

    def open(self, conversation: Conversation) -> Any:
        """Start ``conversation`` 's speech; the model thread then feeds its stream."""
        assert conversation.speech is not None
        conversation.stream = stream = self._new_stream(conversation)
        with self._wake:
            self._conversations.append(conversation)
            self._wake.notify_all()
        return stream

    def poke(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def __len__(self) -> int:
        with self._wake:
            return len(self._conversations)

    # -- the family's part ----------------------------------------------------------

    def _new_stream(self, conversation: Conversation) -> Any:
        raise NotImplementedError

    def _pick(self) -> Jobs:
        """This turn's work, or nothing (called with the lock held)."""
        raise NotImplementedError

    def _work(self, jobs: Jobs) -> None:
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        import torch

        if self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)
        cuda_stream = torch.cuda.Stream() if self.device.type == "cuda" else None
        with torch.inference_mode():
            while True:
                with self._wake:
                    if not self._running:
                        return
                    for conversation in [c for c in self._conversations if c.cancel.is_set()]:
                        self._drop(conversation)
                    jobs = self._pick()
                    if not jobs:
                        self._wake.wait(IDLE_WAIT_S)
                        continue
                try:
                    if cuda_stream is not None:
                        with torch.cuda.stream(cuda_stream):
                            self._work(jobs)
                    else:
                        self._work(jobs)
                except Exception as exc:  # re-raised in each conversation's generate()
                    for conversation, _ in jobs:
                        conversation.sink.put(Failure(exc))
                        with self._wake:
                            self._drop(conversation)

    def _by_deadline(self) -> list[Conversation]:
        return sorted(self._conversations, key=self._deadline)

    def _deadline(self, conversation: Conversation) -> tuple[int, float]:
        first = self._first_audio_at.get(conversation.id)
        if first is None:
            return (0, float(conversation.id))
        return (1, first + self._sent_s.get(conversation.id, 0.0))

    def _end_done(self, jobs: Jobs) -> None:
        """Tell the end of every stream of ``jobs`` that is done."""
        for conversation, _ in jobs:
            if conversation.stream.done:
                with self._wake:
                    self._drop(conversation)  # before the end is told: finished => released
                conversation.sink.put(SpeechEnd())

    def _send(self, conversation: Conversation, audio: np.ndarray) -> None:
        samples = len(audio)
        if not samples:
            return
        self._first_audio_at.setdefault(conversation.id, time.monotonic())
        sent = self._sent_s.get(conversation.id, 0.0)
        self._sent_s[conversation.id] = sent + samples / OUTPUT_SAMPLE_RATE
        conversation.sink.put(AudioDelta(float_to_s16le(audio)))

    def _drop(self, conversation: Conversation) -> None:
        if conversation in self._conversations:
            self._conversations.remove(conversation)
        self._first_audio_at.pop(conversation.id, None)
        self._sent_s.pop(conversation.id, None)
        conversation.release("vocoder")


class Vocoder(VocoderThread):
    """Qwen2.5-Omni: DiT windows and BigVGAN runs, batched by length."""

    def __init__(self, t2w: Token2Wave, plan: ChunkPlan) -> None:
        super().__init__(t2w.device)
        self.t2w = t2w
        self.plan = plan

    def _new_stream(self, conversation: Conversation) -> SpeechStream:
        assert conversation.speech is not None
        speech = conversation.speech
        return SpeechStream(
            self.t2w, self.t2w.speakers[speech.speaker], speech.generator, self.plan
        )

    def _pick(self) -> Jobs:
        """One DiT batch, or a last vocoding."""
        lead: tuple[Conversation, MelJob | None] | None = None
        others: list[tuple[Conversation, MelJob]] = []
        for conversation in self._by_deadline():
            stream: SpeechStream = conversation.stream
            job = stream.mel_job()
            if lead is None:
                if job is not None or stream.wave_job() is not None or stream.done:
                    lead = (conversation, job)
            elif job is not None:
                others.append((conversation, job))
        if lead is None:
            return []
        lead_job = lead[1]
        if lead_job is None:
            return [lead]
        same = [(c, j) for c, j in others if len(j.codes) == len(lead_job.codes)]
        return [lead, *same[: MAX_BATCH - 1]]

    def _work(self, jobs: Jobs) -> None:
        import torch

        mel_jobs = [job for _, job in jobs if job is not None]
        if mel_jobs:
            self.peak_batch = max(self.peak_batch, len(mel_jobs))
            device = self.t2w.device
            codes = torch.tensor([job.codes for job in mel_jobs], dtype=torch.long, device=device)
            noise = torch.stack([job.stream.noise(job) for job in mel_jobs])
            speakers = [job.stream.speaker for job in mel_jobs]
            mels = self.t2w.sample_mels(codes, noise, speakers, self.plan)
            for job, mel in zip(mel_jobs, mels, strict=True):
                job.stream.take_mel(job, mel)
        by_length: dict[int, list[tuple[Conversation, WaveJob]]] = defaultdict(list)
        for conversation, _ in jobs:
            wave_job = conversation.stream.wave_job()
            if wave_job is not None:
                by_length[wave_job.frames].append((conversation, wave_job))
        for group in by_length.values():
            streams = [c.stream for c, _ in group]
            wave_jobs = [j for _, j in group]
            mels = torch.stack([s.mel_for(j) for s, j in zip(streams, wave_jobs, strict=True)])
            waves = self.t2w.vocode(mels)
            for (conversation, wave_job), wave in zip(group, waves, strict=True):
                self._send(conversation, conversation.stream.take_wave(wave_job, wave))
        self._end_done(jobs)
