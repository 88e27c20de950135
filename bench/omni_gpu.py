"""The omni engine under load: first token, first audio, decode speed, real-time factor, memory.

At each concurrency (1, 4 and 10 by default) that many conversations start at
once, each a 3 s spoken question, through the engine's Protocol (prepare +
generate; the HTTP layer's own cost is measured by ``api_overhead.py``).
Output lengths are forced (end of text and end of speech suppressed) so runs
are comparable whatever the weights: every answer is ``--text-tokens`` tokens
and ``--speech-codes`` speech frames (Qwen2.5-Omni: one code each, 50 per
second of audio; Qwen3-Omni: 16 codes each, 12.5 per second).

Per conversation: time to first token and to first audio (from ``prepare``: the
decoded question in hand, features and prompt still to make),
decode tokens/s (text tokens after the first / time between first and last),
the audio's real-time factor (time from ``prepare`` to the last audio chunk /
audio duration) and playback stall (seconds a listener who starts playing at
the first chunk would wait for later chunks). Per level: peak GPU memory.

With ``--profile`` each level also says where the model thread's and the vocoder
thread's time went: every step of the networks, the sampling and the vocoder's
work is timed on its own thread's CUDA stream (waiting for that stream, so the
timings are slightly slower than an unprofiled run; the table's other columns
come from the same, profiled, run).

Models:
  --model DIR|HUB_ID   real weights (any Qwen2.5-Omni or Qwen3-Omni checkpoint)
  --size 3b|7b|30b-a3b no weights at hand: the published architecture with random
                       weights (speed does not depend on their values), built in
                       memory (30b-a3b: Qwen3-Omni-30B-A3B, ~64 GiB in bf16);
                       --config DIR reads config.json from a checkpoint dir
  --tiny [--family qwen3]  the tests' tiny random model, on the CPU (runs anywhere)

    .venv/bin/python -m bench.omni_gpu --size 7b --profile              # on a GPU
    .venv/bin/python -m bench.omni_gpu --size 30b-a3b --profile --out bench/omni_gpu_qwen3.json
    .venv/bin/python -m bench.omni_gpu --tiny --out bench/omni_cpu_tiny.json   # on a CPU
    .venv/bin/python -m bench.omni_gpu --tiny --family qwen3 --out bench/omni_cpu_tiny_qwen3.json

Prints a table and writes bench/omni_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.facts import run_facts
from devtools import tiny_qwen3_omni
from devtools.omni_engine import ControlledOmniEngine
from devtools.tiny_qwen2_5_omni import (
    SPECIAL_TOKENS,
    build_tiny_omni,
    save_feature_extractor,
    save_tokenizer,
)
from omnivox.engines.base import (
    AudioClip,
    GenerationRequest,
    SamplingParams,
    SpeechOutput,
    Turn,
)
from omnivox.engines.events import AudioDelta, Finished, TextDelta
from omnivox.engines.omni.engine import OmniEngine
from omnivox.engines.omni.loading import Checkpoint, drop_vision_tower, pick_device
from omnivox.settings import Settings

OUTPUT_RATE = 24_000
FRAMES_PER_S = {"qwen2.5": 50.0, "qwen3": 12.5}
QUESTION_S = 3.0

# Qwen2.5-Omni's published config.json dimensions (thinker text, talker, audio tower;
# token2wav's DiT and BigVGAN are transformers' defaults, which are the published ones).
# Written from the model cards' config.json; pass --config DIR to use a real one instead.
_AUDIO = {
    "num_mel_bins": 128,
    "encoder_layers": 32,
    "encoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "d_model": 1280,
    "n_window": 100,
    "max_source_positions": 1500,
}
PUBLISHED = {
    "3b": {
        "text": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "mrope_section": [16, 24, 24],
        },
        "talker": {
            "hidden_size": 896,
            "intermediate_size": 4864,
            "num_hidden_layers": 24,
            "num_attention_heads": 14,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "mrope_section": [8, 12, 12],
        },
    },
    "7b": {
        "text": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "mrope_section": [16, 24, 24],
        },
        "talker": {
            "hidden_size": 896,
            "intermediate_size": 18944,
            "num_hidden_layers": 24,
            "num_attention_heads": 12,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "mrope_section": [16, 24, 24],
        },
    },
}


# Qwen3-Omni-30B-A3B-Instruct's published config.json dimensions, laid over the tests'
# tiny layout (devtools/tiny_qwen3_omni.py: token ids, codec and speaker ids at the
# checkpoint's offsets from the codebook); pass --config DIR to use a real one instead.
_QWEN3_ROPE = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [24, 20, 20]}
PUBLISHED_QWEN3: dict[str, Any] = {
    "thinker_config": {
        "audio_config": {
            "encoder_layers": 32,
            "d_model": 1280,
            "encoder_attention_heads": 20,
            "encoder_ffn_dim": 5120,
            "downsample_hidden_size": 480,
            "output_dim": 2048,
        },
        "vision_config": {"out_hidden_size": 2048},
        "text_config": {
            "vocab_size": 152064,
            "hidden_size": 2048,
            "num_hidden_layers": 48,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "moe_intermediate_size": 768,
            "max_position_embeddings": 65536,
            "rope_parameters": {**_QWEN3_ROPE, "interleaved": True},
        },
    },
    "talker_config": {
        "text_config": {
            "vocab_size": 3072,
            "hidden_size": 1024,
            "intermediate_size": 2048,
            "num_hidden_layers": 20,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "head_dim": 128,
            "num_experts": 128,
            "num_experts_per_tok": 6,
            "moe_intermediate_size": 384,
            "shared_expert_intermediate_size": 768,
            "max_position_embeddings": 65536,
            "rope_parameters": {**_QWEN3_ROPE, "interleaved": True},
        },
        "code_predictor_config": {
            "vocab_size": 2048,
            "hidden_size": 1024,
            "intermediate_size": 3072,
            "num_hidden_layers": 5,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 65536,
        },
        "thinker_hidden_size": 2048,
        "accept_hidden_layer": 24,
    },
    "code2wav_config": {
        "codebook_size": 2048,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 8,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "decoder_dim": 1536,
        "initializer_range": 0.02,
    },
}
QWEN3_CODEBOOK = 2048


class Profile:
    """Seconds spent in named engine methods, each timed to its CUDA stream's end.

    Nested: _admit holds prefill_thinker; _take_codes holds complete_frames (Qwen3's
    code predictor); the vocoder's _work holds sample_mels and vocode, or decode.
    """

    # (owner attribute path on the engine, method names)
    TIMED = (
        (
            "_scheduler.networks",
            (
                "prefill_thinker",
                "thinker_step",
                "prefill_talker",
                "talker_step",
                "complete_frames",
            ),
        ),
        ("_scheduler", ("_take_tokens", "_take_codes", "_admit")),
        ("_vocoder", ("_work",)),
        ("_vocoder.t2w", ("sample_mels", "vocode")),  # Qwen2.5-Omni: DiT, BigVGAN
        ("_vocoder.c2w", ("decode",)),  # Qwen3-Omni: Code2Wav
    )

    def __init__(self, engine: OmniEngine) -> None:
        import torch

        self.cuda = engine.checkpoint is not None and engine.checkpoint.device.type == "cuda"
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        for path, names in self.TIMED:
            owner: Any = engine
            for attribute in path.split("."):
                owner = getattr(owner, attribute, None)
            for name in names:
                if hasattr(owner, name):
                    setattr(owner, name, self._timed(f"{path}.{name}", getattr(owner, name), torch))

    def _timed(self, label: str, method: Any, torch: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.cuda:
                torch.cuda.current_stream().synchronize()
            start = time.perf_counter()
            result = method(*args, **kwargs)
            if self.cuda:
                torch.cuda.current_stream().synchronize()
            self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
            self.calls[label] = self.calls.get(label, 0) + 1
            return result

        return timed

    def reset(self) -> None:
        self.calls, self.seconds = {}, {}

    def take(self, wall_s: float, turns: int) -> dict[str, Any]:
        """The totals since the last take, per component, then reset."""
        rows = {
            label.rsplit(".", 1)[-1]: {
                "calls": self.calls[label],
                "total_s": round(seconds, 3),
                "ms_per_call": round(1000 * seconds / self.calls[label], 3),
                "share_of_wall": round(seconds / wall_s, 3),
            }
            for label, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }
        self.reset()
        return {"model_thread_turns": turns, "wall_s": round(wall_s, 3), "components": rows}


@dataclass
class Run:
    """One conversation's timings, in seconds from its ``generate`` call."""

    first_token_s: float
    first_audio_s: float
    decode_tokens_per_s: float
    audio_s: float
    rtf: float
    stall_s: float
    text_tokens: int


def published_config(size: str, ids: dict[str, int]) -> dict[str, Any]:
    dims = PUBLISHED[size]
    text, talker = dict(dims["text"]), dict(dims["talker"])
    hidden = text["hidden_size"]
    text_rope = {
        "rope_type": "default",
        "rope_theta": 1e6,
        "mrope_section": text.pop("mrope_section"),
    }
    talker_rope = {
        "rope_type": "default",
        "rope_theta": 1e6,
        "mrope_section": talker.pop("mrope_section"),
    }
    specials = {
        "audio_token_index": ids["<|AUDIO|>"],
        "image_token_index": ids["<|IMAGE|>"],
        "video_token_index": ids["<|VIDEO|>"],
        "audio_start_token_id": ids["<|audio_bos|>"],
        "audio_end_token_id": ids["<|audio_eos|>"],
        "vision_start_token_id": ids["<|vision_bos|>"],
        "vision_end_token_id": ids["<|vision_eos|>"],
    }
    return {
        "thinker_config": {
            "audio_config": {**_AUDIO, "output_dim": hidden},
            "vision_config": {
                "depth": 1,
                "hidden_size": 64,
                "num_heads": 2,
                "out_hidden_size": hidden,
            },
            "text_config": {**text, "rope_parameters": text_rope, "tie_word_embeddings": False},
            **specials,
        },
        "talker_config": {
            **talker,
            **specials,
            "vocab_size": 8448,
            "embedding_size": hidden,
            "rope_parameters": talker_rope,
            "tts_text_start_token_id": ids["<tts_text_bos>"],
            "tts_text_end_token_id": ids["<tts_text_eod>"],
            "tts_text_pad_token_id": ids["<tts_pad>"],
        },
        "token2wav_config": {},
        "enable_audio_output": True,
    }


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def published_qwen3_config(ids: dict[str, int]) -> dict[str, Any]:
    config = _merge(tiny_qwen3_omni.config_dict(ids), PUBLISHED_QWEN3)
    shift = QWEN3_CODEBOOK - tiny_qwen3_omni.CODEBOOK  # codec specials and speakers: 2148.., 2301..
    talker = config["talker_config"]
    talker.update({key: value + shift for key, value in tiny_qwen3_omni.CODEC.items()})
    talker["speaker_id"] = {name: code + shift for name, code in tiny_qwen3_omni.SPEAKERS.items()}
    return config


def random_loader(size: str, config_dir: Path | None, device_setting: str) -> Any:
    """A loader building the full-size architecture with random weights, in memory."""
    if size == "30b-a3b":
        return random_qwen3_loader(config_dir, device_setting)

    def load(settings: Settings) -> Checkpoint:
        import torch
        from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

        folder = Path(tempfile.mkdtemp(prefix="omni-bench-"))
        tokenizer = save_tokenizer(folder)
        save_feature_extractor(folder)
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        if config_dir is not None:
            config = Qwen2_5OmniConfig.from_pretrained(config_dir)
        else:
            config = Qwen2_5OmniConfig(**published_config(size, ids))
        checkpoint = random_checkpoint(
            folder, Qwen2_5OmniForConditionalGeneration, config, device_setting, "qwen2.5"
        )
        model = checkpoint.model
        model.token2wav.float()
        dit = config.token2wav_config.dit_config
        model.speaker_map = {
            name: {
                "bos_token": ids["<tts_text_bos_single>"],
                "cond": torch.randn(dit.enc_emb_dim),
                "ref_mel": torch.randn(1, 300, dit.mel_dim),
            }
            for name in ("Chelsie", "Ethan")
        }
        return checkpoint

    return load


def random_qwen3_loader(config_dir: Path | None, device_setting: str) -> Any:
    def load(settings: Settings) -> Checkpoint:
        from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

        folder = Path(tempfile.mkdtemp(prefix="omni3-bench-"))
        ids = tiny_qwen3_omni.save_tokenizer_and_extractor(folder)
        if config_dir is not None:
            config = Qwen3OmniMoeConfig.from_pretrained(config_dir)
        else:
            config = Qwen3OmniMoeConfig(**published_qwen3_config(ids))
        checkpoint = random_checkpoint(
            folder, Qwen3OmniMoeForConditionalGeneration, config, device_setting, "qwen3"
        )
        std = config.talker_config.text_config.initializer_range
        tiny_qwen3_omni.initialise_experts(checkpoint.model, std)
        return checkpoint

    return load


def random_checkpoint(
    folder: Path, model_class: Any, config: Any, device_setting: str, family: Any
) -> Checkpoint:
    """``model_class`` built from ``config`` with random weights on the device, its vision
    tower dropped, with the tokenizer and feature extractor saved in ``folder``."""
    from transformers import AutoTokenizer, WhisperFeatureExtractor

    device, dtype = pick_device(device_setting)
    with device:
        model = model_class._from_config(config, dtype=dtype)
    drop_vision_tower(model)
    model.eval()
    return Checkpoint(
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(folder),
        feature_extractor=WhisperFeatureExtractor.from_pretrained(folder),
        device=device,
        dtype=dtype,
        model_dir=folder,
        name="random weights",
        family=family,
    )


def question(seed: int) -> GenerationRequest:
    t = np.arange(int(QUESTION_S * 16_000)) / 16_000
    samples = (0.3 * np.sin(2 * np.pi * (180 + 20 * seed) * t)).astype(np.float32)
    clip = AudioClip(samples, 16_000, f"tone-{seed}")
    return GenerationRequest(
        (Turn("user", (clip, "Please answer this question.")),),
        sampling=SamplingParams(temperature=0.7, seed=seed),
        speech=SpeechOutput("alloy"),
    )


async def one_conversation(engine: OmniEngine, seed: int) -> Run:
    start = time.perf_counter()  # the request's audio arrives: prepare is part of the wait
    prepared = await engine.prepare(question(seed))
    text_times: list[float] = []
    audio: list[tuple[float, float]] = []  # (arrival, seconds of audio)
    n_tokens = 0
    async for event in engine.generate(prepared):
        now = time.perf_counter() - start
        if isinstance(event, TextDelta):
            text_times.append(now)
        elif isinstance(event, AudioDelta):
            audio.append((now, len(event.pcm_s16le) / 2 / OUTPUT_RATE))
        elif isinstance(event, Finished):
            n_tokens = event.completion_text_tokens
    audio_s = sum(seconds for _, seconds in audio)
    # a delta may carry several tokens (bytes of one character): count the tokens
    decode_s = text_times[-1] - text_times[0]
    return Run(
        first_token_s=text_times[0],
        first_audio_s=audio[0][0],
        decode_tokens_per_s=(n_tokens - 1) / decode_s if decode_s > 0 else float("nan"),
        audio_s=audio_s,
        rtf=audio[-1][0] / audio_s,
        stall_s=playback_stall(audio),
        text_tokens=n_tokens,
    )


def playback_stall(chunks: list[tuple[float, float]]) -> float:
    """Seconds a listener who starts at the first chunk waits for later ones."""
    playing_until, stall = chunks[0][0], 0.0
    for arrival, seconds in chunks:
        if arrival > playing_until:
            stall += arrival - playing_until
            playing_until = arrival
        playing_until += seconds
    return stall


async def level(
    engine: OmniEngine, concurrency: int, base_seed: int, profile: Profile | None = None
) -> dict[str, Any]:
    import torch

    cuda = engine.checkpoint is not None and engine.checkpoint.device.type == "cuda"
    engine.scheduler.peak_thinker_rows = engine.scheduler.peak_talker_rows = 0
    if engine._vocoder is not None:
        engine._vocoder.peak_batch = 0
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    turns_before = engine.scheduler.steps
    if profile is not None:
        profile.reset()  # drop what an earlier level left
    wall = time.perf_counter()
    runs = await asyncio.gather(
        *(one_conversation(engine, base_seed + i) for i in range(concurrency))
    )
    wall_s = time.perf_counter() - wall
    peak_gb = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "mean": round(statistics.fmean(values), 4),
            "max": round(max(values), 4),
            "min": round(min(values), 4),
        }

    return {
        "concurrency": concurrency,
        "wall_s": round(wall_s, 3),
        "first_token_s": summary([r.first_token_s for r in runs]),
        "first_audio_s": summary([r.first_audio_s for r in runs]),
        "decode_tokens_per_s": summary([r.decode_tokens_per_s for r in runs]),
        "rtf": summary([r.rtf for r in runs]),
        "stall_s": summary([r.stall_s for r in runs]),
        "audio_s": round(statistics.fmean(r.audio_s for r in runs), 3),
        "peak_gpu_memory_gb": None if peak_gb is None else round(peak_gb, 2),
        "peak_thinker_rows": engine.scheduler.peak_thinker_rows,
        "peak_talker_rows": engine.scheduler.peak_talker_rows,
        "peak_vocoder_batch": engine._vocoder.peak_batch if engine._vocoder is not None else None,
        "runs": [asdict(r) for r in runs],
        "profile": None
        if profile is None
        else profile.take(wall_s, engine.scheduler.steps - turns_before),
    }


def graph_counts(engine: ControlledOmniEngine) -> dict[str, dict[str, int]]:
    """Captures and replays of each function the engine replays from CUDA graphs."""
    return {
        g.name: {"enabled": g.enabled, "captures": g.captures, "replays": g.replays}
        for g in engine.graphed_functions()
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['model']} on {result['device']}  ({result['forced']})")
    print(f"CUDA graphs: {result.get('cuda_graphs')}")
    header = (
        f"{'conc':>4} {'TTFT s':>8} {'TTFA s':>8} {'TTFA max':>9} {'tok/s':>7} "
        f"{'RTF':>6} {'RTF max':>8} {'stall s':>8} {'GPU GB':>7}"
    )
    print(header)
    for row in result["levels"]:
        gpu = row["peak_gpu_memory_gb"]
        print(
            f"{row['concurrency']:>4} {row['first_token_s']['mean']:>8.3f} "
            f"{row['first_audio_s']['mean']:>8.3f} {row['first_audio_s']['max']:>9.3f} "
            f"{row['decode_tokens_per_s']['mean']:>7.1f} {row['rtf']['mean']:>6.3f} "
            f"{row['rtf']['max']:>8.3f} {row['stall_s']['mean']:>8.3f} "
            f"{'-' if gpu is None else f'{gpu:.2f}':>7}"
        )
    for row in result["levels"]:
        profile = row.get("profile")
        if not profile:
            continue
        print(
            f"\nwhere the time went at {row['concurrency']} conversations "
            f"({profile['model_thread_turns']} model-thread turns in {profile['wall_s']:.2f} s)"
        )
        print(f"{'component':<18} {'calls':>7} {'ms/call':>9} {'total s':>8} {'of wall':>8}")
        for name, part in profile["components"].items():
            print(
                f"{name:<18} {part['calls']:>7} {part['ms_per_call']:>9.2f} "
                f"{part['total_s']:>8.2f} {part['share_of_wall']:>8.1%}"
            )


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    forced = (args.text_tokens, args.speech_codes)
    loader = None
    if args.tiny:
        qwen3 = args.family == "qwen3"
        build = tiny_qwen3_omni.build_tiny_qwen3_omni if qwen3 else build_tiny_omni
        folder = build(Path(tempfile.mkdtemp(prefix="omni-tiny-")))
        settings = Settings(engine="omni", model=str(folder), device="cpu", threads=args.threads)
        model_name = (
            "tiny random Qwen3-Omni (devtools/tiny_qwen3_omni.py)"
            if qwen3
            else "tiny random Qwen2.5-Omni (devtools/tiny_qwen2_5_omni.py)"
        )
    elif args.model:
        settings = Settings(engine="omni", model=args.model, device=args.device)
        model_name = args.model
    else:
        settings = Settings(engine="omni", device=args.device, threads=args.threads)
        loader = random_loader(args.size, args.config, args.device)
        published = "Qwen3-Omni-30B-A3B" if args.size == "30b-a3b" else "Qwen2.5-Omni-"
        if args.size != "30b-a3b":
            published += args.size.upper()
        shape = f"{args.config}/config.json" if args.config else published
        model_name = f"{shape} architecture, random weights"
    engine = ControlledOmniEngine(settings, forced_lengths=forced, loader=loader)
    loaded = time.perf_counter()
    await engine.start()
    load_s = time.perf_counter() - loaded
    assert engine.checkpoint is not None
    device = engine.checkpoint.device
    family = engine.checkpoint.family
    dtype = str(engine.checkpoint.dtype)
    weights_gb = None
    if device.type == "cuda":
        weights_gb = round(torch.cuda.memory_allocated() / 2**30, 2)
    profile = Profile(engine) if args.profile else None
    try:
        await level(engine, 1, base_seed=10_000)  # warm-up
        levels = [
            await level(engine, c, base_seed=100 * c, profile=profile) for c in args.concurrency
        ]
        graphs = graph_counts(engine)
    finally:
        await engine.close()
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "facts": run_facts(),
        "model": model_name,
        "device": device_name,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        + (
            f"{args.threads} torch threads per worker thread"
            if device.type == "cpu"
            else f"{device_name} (CUDA {torch.version.cuda})"
        ),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": dtype,
        "load_s": round(load_s, 1),
        "weights_gpu_memory_gb": weights_gb,
        "forced": f"{forced[0]} text tokens, {forced[1]} speech frames "
        f"({forced[1] / FRAMES_PER_S[family]:.1f} s of audio) per answer",
        "question": f"{QUESTION_S:.0f} s of audio + a short text",
        "family": family,
        "cuda_graphs": graphs,
        "chunk_plan": asdict(engine.frame_plan if family == "qwen3" else engine.plan),
        "levels": levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model, on the CPU")
    parser.add_argument("--model", help="an omni checkpoint dir or hub id (real weights)")
    parser.add_argument("--size", choices=[*sorted(PUBLISHED), "30b-a3b"], default="7b")
    parser.add_argument(
        "--family", choices=["qwen2.5", "qwen3"], default="qwen2.5", help="with --tiny"
    )
    parser.add_argument("--config", type=Path, help="read config.json from this checkpoint dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    parser.add_argument("--concurrency", default="1,4,10")
    parser.add_argument("--text-tokens", type=int, default=None)
    parser.add_argument("--speech-codes", type=int, default=None)
    parser.add_argument(
        "--profile", action="store_true", help="also time each engine component (see above)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.text_tokens = args.text_tokens or (24 if args.tiny else 100)
    qwen3 = args.size == "30b-a3b" or (args.tiny and args.family == "qwen3")
    if args.model:  # real weights: the checkpoint says which family it is
        from omnivox.engines.omni.loading import model_type, resolve_model_dir

        folder = resolve_model_dir(args.model, Settings().models_dir)
        qwen3 = model_type(folder) == "qwen3_omni_moe"
    seconds = 3 if args.tiny else 10  # of speech per answer
    args.speech_codes = args.speech_codes or round(
        seconds * FRAMES_PER_S["qwen3" if qwen3 else "qwen2.5"]
    )
    result = asyncio.run(run_bench(args))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
