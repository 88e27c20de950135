"""Chunked vocoding: speech codes become waveform while the talker is still speaking.

Qwen2.5-Omni's token2wav is a DiT (codes -> mel, flow matching solved with
RK4) followed by BigVGAN (mel -> 24 kHz waveform). Its DiT attends within
blocks of ``block_size`` mel frames (24 = 0.24 s): every layer sees its own
block, the look-back layers (2 in the published config) also the block
before, the look-ahead layer (1) the block after. That is what Qwen designed
it for: mel block ``b`` is computed from a window of blocks b-2 .. b+1 (the
values Qwen's own streaming code uses, derived here from the config), so it
is ready once the codes of block b+1 exist (2 mel frames per code).

``SpeechStream`` keeps, per conversation:

- a noise tensor drawn block by block from the conversation's own generator,
  so that overlapping windows start from the same noise and a seed
  reproduces the audio however it was chunked;
- the final mel frames. Blocks are solved in fixed groups (``ChunkPlan``: 2
  at first, then 2 at a time, the rest at the end) on the window [group - past
  blocks, group + future blocks], so that the windows, and the audio, do not
  depend on how fast the talker ran: a seed reproduces the audio exactly;
- the vocoder edge: BigVGAN's receptive field reaches ~20 mel frames each
  way, so each run covers [emitted - 20, final mel] and only audio up to
  ``final - 20`` frames is sent (all of it at the end): the same overlap-trim
  Qwen's streaming token2wav uses.

Work comes out as jobs (``MelJob``, ``WaveJob``) so that the vocoder thread
can solve the windows of several conversations in one batch: mid-stream
windows all have the same length (5 blocks, 120 frames), and so do their
vocoder runs (88 frames).

The DiT is called through its own sub-modules (``Token2Wave``) rather than
``sample``: the speaker encoder (ECAPA) of the reference mel and the code
embeddings are computed once per window instead of at each of the 36 ODE
evaluations, and the window needs its own noise. With a window covering
the whole clip it computes exactly what ``sample`` computes (tested).

Limits: the first audio needs (first_blocks + future_blocks) x 12 codes (36 =
0.72 s of speech) from the talker, and each later chunk 24 more; a window
solves 2 blocks out of 5 (2.5x the DiT work of one pass over the clip), the
price of streaming with the published look-back and look-ahead.

This module knows nothing of text, sampling or HTTP.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnivox.engines.omni.graphs import GraphedFunction


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    first_blocks: int = 2
    blocks: int = 2
    vocoder_context_frames: int = 20
    ode_steps: int = 10
    guidance_scale: float = 0.5
    sway_coefficient: float = -1.0


@dataclass(frozen=True, slots=True)
class SpeakerCondition:
    """A speaker's DiT inputs that do not depend on the codes, computed once."""

    vector: Any  # [1, enc_emb_dim]: the speaker embedding ("cond")
    encoded: Any  # [2, enc_dim]: ECAPA of the reference mel, and of silence (guidance)


class Token2Wave:
    """token2wav's DiT and BigVGAN, called window by window."""

    def __init__(
        self,
        token2wav: Any,
        speaker_map: dict[str, Any],
        device: Any,
        *,
        cuda_graphs: bool = False,
    ) -> None:
        import torch

        self.dit = token2wav.code2wav_dit_model
        self.bigvgan = token2wav.code2wav_bigvgan_model
        self.device = device
        config = self.dit.config
        self.block_size = int(config.block_size)
        self.repeats = int(config.repeats)
        self.mel_dim = int(config.mel_dim)
        self.past_blocks = len(config.look_backward_layers)
        self.future_blocks = len(config.look_ahead_layers)
        self.hop = math.prod(int(r) for r in self.bigvgan.config.upsample_rates)
        weight = self.dit.input_embed.proj.weight
        self._noise_weight = weight[:, : self.mel_dim]
        self._static_weight = weight[:, self.mel_dim :]
        self._static_bias = self.dit.input_embed.proj.bias
        self.speakers: dict[str, SpeakerCondition] = {}
        self._cuda_graphs = cuda_graphs and device.type == "cuda"
        self._solvers: dict[ChunkPlan, GraphedFunction] = {}
        with torch.no_grad():
            for name, params in speaker_map.items():
                ref = params["ref_mel"].to(device, torch.float32).reshape(1, -1, self.mel_dim)
                encoder = self.dit.input_embed.spk_encoder
                encoded = torch.cat([encoder(ref), encoder(torch.zeros_like(ref))])
                vector = params["cond"].to(device, torch.float32).reshape(1, -1)
                self.speakers[name] = SpeakerCondition(vector, encoded)

    def sample_mels(
        self, codes: Any, noise: Any, speakers: list[SpeakerCondition], plan: ChunkPlan
    ) -> Any:
        """Mel [rows, frames, mel_dim] of ``codes`` [rows, n] solved from ``noise``
        [rows, frames, mel_dim]: one window per row, all of one length, solved together."""
        import torch

        encoded = torch.cat(
            [
                torch.cat([s.encoded[:1] for s in speakers]),
                torch.cat([s.encoded[1:] for s in speakers]),
            ]
        )  # rows with guidance first, then the same rows without (transformers' order)
        vectors = torch.cat([s.vector for s in speakers])
        solve = self._solvers.get(plan)
        if solve is None:
            solve = GraphedFunction(
                functools.partial(self._solve, plan), "DiT solver", enabled=self._cuda_graphs
            )
            self._solvers[plan] = solve
        return solve(codes, noise, encoded, vectors)

    def solvers(self) -> list[GraphedFunction]:
        """The graphed DiT solves made so far, one per chunk plan."""
        return list(self._solvers.values())

    def _solve(self, plan: ChunkPlan, codes: Any, noise: Any, encoded: Any, vectors: Any) -> Any:
        """The ODE solve of ``sample_mels``: its work depends only on the shapes."""
        import torch

        rows, frames = noise.shape[0], noise.shape[1]
        code_embed = self.dit.text_embed(codes)[:, :frames]
        silent_embed = self.dit.text_embed(torch.zeros_like(codes))[:, :frames]
        static_in = torch.cat(
            [
                encoded.unsqueeze(1).expand(-1, frames, -1),
                torch.cat([code_embed, silent_embed]),
                torch.cat([vectors, torch.zeros_like(vectors)]).unsqueeze(1).expand(-1, frames, -1),
            ],
            dim=-1,
        )
        static = torch.nn.functional.linear(static_in, self._static_weight, self._static_bias)
        positions = torch.arange(frames, device=self.device).unsqueeze(0).expand(2 * rows, -1)
        rotary = self.dit.rotary_embed(static, positions)
        block_diff = self.dit._create_block_diff(static)

        def velocity(t: Any, x: Any) -> Any:
            hidden = torch.nn.functional.linear(torch.cat([x, x]), self._noise_weight) + static
            time = self.dit.time_embed(t.reshape(1).expand(2 * rows))
            for block in self.dit.transformer_blocks:
                hidden = block(hidden, time, position_embeddings=rotary, block_diff=block_diff)
            out = self.dit.proj_out(self.dit.norm_out(hidden, time))
            guided, unguided = out.chunk(2)
            return guided + (guided - unguided) * plan.guidance_scale

        times = torch.linspace(0, 1, plan.ode_steps, device=self.device, dtype=torch.float32)
        times = times + plan.sway_coefficient * (torch.cos(torch.pi / 2 * times) - 1 + times)
        x = noise
        for t0, t1 in itertools.pairwise(times):
            dt = t1 - t0
            k1 = velocity(t0, x)
            k2 = velocity(t0 + dt / 3, x + dt * k1 / 3)
            k3 = velocity(t0 + dt * 2 / 3, x + dt * (k2 - k1 / 3))
            k4 = velocity(t1, x + dt * (k1 - k2 + k3))
            x = x + (k1 + 3 * (k2 + k3) + k4) * dt / 8
        return x

    def vocode(self, mels: Any) -> np.ndarray:
        """Waveforms [rows, samples] (float32, 24 kHz) of mels [rows, mel_dim, frames]."""
        wave = self.bigvgan(mels)
        return np.asarray(wave.float().numpy(), dtype=np.float32).reshape(mels.shape[0], -1)


@dataclass(frozen=True, slots=True)
class MelJob:
    """Solve mel blocks [first, end) of a stream on the window of frames [start, stop)."""

    stream: SpeechStream
    codes: list[int]
    first: int
    end: int
    start: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class WaveJob:
    """Vocode mel frames [start, final) of a stream; keep audio for [emitted, until)."""

    stream: SpeechStream
    start: int
    final: int
    until: int

    @property
    def frames(self) -> int:
        return self.final - self.start


class SpeechStream:
    """One conversation's codes in, waveform out; codes may arrive from another thread."""

    def __init__(
        self, t2w: Token2Wave, speaker: SpeakerCondition, generator: Any, plan: ChunkPlan
    ) -> None:
        import torch

        self._t2w = t2w
        self.speaker = speaker
        self._generator = generator
        self._plan = plan
        self._lock = threading.Lock()
        self._codes: list[int] = []
        self._finished = False
        self._noise = torch.zeros(0, t2w.mel_dim, device=t2w.device)
        self._mel = torch.zeros(t2w.mel_dim, 0, device=t2w.device)
        self._blocks_done = 0
        self.emitted_frames = 0
        self.done = False

    def add(self, codes: list[int]) -> None:
        with self._lock:
            self._codes.extend(codes)

    def finish(self) -> None:
        with self._lock:
            self._finished = True

    @property
    def n_codes(self) -> int:
        with self._lock:
            return len(self._codes)

    def _snapshot(self) -> tuple[int, bool]:
        with self._lock:
            return len(self._codes), self._finished

    def _final_blocks(self, n_codes: int, finished: bool) -> int:
        frames, size = n_codes * self._t2w.repeats, self._t2w.block_size
        if finished:
            return math.ceil(frames / size)
        return max(0, frames // size - self._t2w.future_blocks)

    def _next_group_end(self, final_blocks: int, finished: bool) -> int | None:
        """The end block of the next group, or None when it can not be solved yet.

        Groups are fixed (first_blocks, then blocks at a time; the last one whatever is
        left), so windows, and thus the audio, do not depend on how fast the talker ran.
        """
        size = self._plan.first_blocks if self._blocks_done == 0 else self._plan.blocks
        end = self._blocks_done + size
        if end <= final_blocks:
            return end
        if finished and self._blocks_done < final_blocks:
            return final_blocks
        return None

    def mel_job(self) -> MelJob | None:
        """The next group of mel blocks to solve, if its codes are all there."""
        if self.done:
            return None
        n_codes, finished = self._snapshot()
        end = self._next_group_end(self._final_blocks(n_codes, finished), finished)
        if end is None:
            return None
        t2w, size = self._t2w, self._t2w.block_size
        first = self._blocks_done
        start = max(0, first - t2w.past_blocks) * size
        stop = min(n_codes * t2w.repeats, (end + t2w.future_blocks) * size)
        with self._lock:
            window = self._codes[start // t2w.repeats : math.ceil(stop / t2w.repeats)]
        return MelJob(self, window, first, end, start, stop)

    def noise(self, job: MelJob) -> Any:
        import torch

        while self._noise.shape[0] < job.stop:
            block = torch.randn(
                self._t2w.block_size,
                self._t2w.mel_dim,
                generator=self._generator,
                device=self._t2w.device,
            )
            self._noise = torch.cat([self._noise, block])
        return self._noise[job.start : job.stop]

    def take_mel(self, job: MelJob, mel: Any) -> None:
        """Keep the solved blocks of ``mel`` [frames, mel_dim] (the window's middle)."""
        import torch

        size = self._t2w.block_size
        kept = mel[job.first * size - job.start : min(job.end * size, job.stop) - job.start]
        self._mel = torch.cat([self._mel, kept.transpose(0, 1)], dim=1)
        self._blocks_done = job.end

    def wave_job(self) -> WaveJob | None:
        """The audio now certain: up to 20 frames before the last final mel frame, or all."""
        n_codes, finished = self._snapshot()
        everything = finished and self._blocks_done >= self._final_blocks(n_codes, finished)
        final = self._mel.shape[1]
        context = self._plan.vocoder_context_frames
        until = final if everything else final - context
        if until <= self.emitted_frames:
            if everything:
                self.done = True
            return None
        return WaveJob(self, max(0, self.emitted_frames - context), final, until)

    def mel_for(self, job: WaveJob) -> Any:
        return self._mel[:, job.start : job.final]

    def take_wave(self, job: WaveJob, wave: np.ndarray) -> np.ndarray:
        """The new audio from ``wave`` (the vocoded window); marks the stream done at the end."""
        hop = self._t2w.hop
        audio = wave[(self.emitted_frames - job.start) * hop : (job.until - job.start) * hop]
        self.emitted_frames = job.until
        n_codes, finished = self._snapshot()
        if job.until == job.final and finished:
            self.done = self._blocks_done >= self._final_blocks(n_codes, finished)
        return audio
