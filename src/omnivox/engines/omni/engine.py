"""The omni engine: Qwen2.5-Omni or Qwen3-Omni hears the conversation and answers in speech.

``prepare`` builds the ChatML prompt with the audio in place (``prompt``) and
turns it into token ids and Whisper features on a worker thread
(``encoding``). ``generate`` hands a ``Conversation`` to two threads shared by
every conversation (``scheduler``, ``vocoder``) and relays what they report:

    model thread: thinker prefill, batched thinker steps ── TextDelta ───────┐
        └─ batched talker steps ── speech codes ─> vocoder thread:           ├─> events
               windows of codes to waveform, batched across conversations ── AudioDelta ┘

Text deltas leave as the thinker writes them; audio leaves chunk by chunk as
the talker's codes become waveform; ``Finished`` comes last, once both are
done. Closing the event iterator (the client went away) sets the
conversation's cancel event: the model thread drops its rows before its next
step and the vocoder before its next chunk, freeing the slot at once
(``active_conversations`` counts the conversations either thread still holds).

The checkpoint's family (see ``loading``) picks the parts: Qwen2.5-Omni runs
``qwen2_5_networks.Networks`` and token2wav's DiT and BigVGAN (``qwen2_5_token2wav``,
``vocoder``); Qwen3-Omni runs ``qwen3_networks.Qwen3Networks`` (talker and code
predictor) and Code2Wav (``qwen3_code2wav``); the scheduler, the conversations, the
API and the threads are the same. OpenAI voices map to the checkpoint's
speakers as ``speakers`` documents. This module wires the parts; it knows
nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

from omnivox.engines.base import Capability, GenerationRequest, PreparedGeneration
from omnivox.engines.events import AudioDelta, EngineEvent, Finished, TextDelta
from omnivox.engines.omni import speakers
from omnivox.engines.omni.conversation import (
    Conversation,
    Failure,
    Sink,
    SpeechEnd,
    SpeechRequest,
    TextEnd,
)
from omnivox.engines.omni.encoding import QWEN2_5_AUDIO, EncodedPrompt, PromptEncoder, qwen3_audio
from omnivox.engines.omni.loading import DEFAULT_MODEL, Checkpoint, Family, load_checkpoint
from omnivox.engines.omni.prompt import QWEN_SYSTEM_PROMPT, build_prompt
from omnivox.engines.omni.qwen2_5_token2wav import ChunkPlan
from omnivox.engines.omni.qwen3_code2wav import FramePlan
from omnivox.engines.omni.sampling import CodeSampler, Detokenizer, TextSampler, make_generator
from omnivox.engines.omni.scheduler import QWEN2_5_LIMITS, QWEN3_LIMITS, Scheduler, SpeechLimits
from omnivox.engines.stops import StopScanner
from omnivox.errors import ServerError
from omnivox.settings import Settings

DEFAULT_CONTEXT_TOKENS = 32_768
END_TOKENS = ("<|im_end|>", "<|endoftext|>")
NOISE_SEED_OFFSET = 1  # the DiT's noise and the talker's draws use different streams


class OmniEngine:
    name = "omni"
    capabilities: frozenset[Capability] = frozenset({"speech", "logprobs"})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context_window_tokens = DEFAULT_CONTEXT_TOKENS
        self.plan = ChunkPlan()  # Qwen2.5-Omni's chunking of speech into vocoder windows
        self.frame_plan = FramePlan()  # Qwen3-Omni's
        self.limits = QWEN2_5_LIMITS  # how long an answer may speak: the family's, once loaded
        self._system_prompt: str | None = QWEN_SYSTEM_PROMPT
        self.checkpoint: Checkpoint | None = None
        self._encoder: PromptEncoder | None = None
        self._scheduler: Scheduler | None = None
        self._vocoder: Any = None
        self._eos_ids: frozenset[int] = frozenset()
        self._live: set[int] = set()
        self._live_lock = threading.Lock()
        self.cancelled_conversations = 0
        self.finished_conversations = 0

    def model_names(self) -> tuple[str, ...]:
        return (self.settings.model or DEFAULT_MODEL,)

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch

        checkpoint = self._load_checkpoint()
        # torch's thread count is per thread: the two worker threads set their own.
        cpu_threads = self.settings.threads if checkpoint.device.type == "cpu" else None
        model, tokenizer = checkpoint.model, checkpoint.tokenizer
        text_config = model.config.thinker_config.text_config
        self.context_window_tokens = int(text_config.max_position_embeddings)
        self._eos_ids = _end_token_ids(model, tokenizer)
        self.limits = self._speech_limits(checkpoint.family)
        if checkpoint.family == "qwen3":
            networks, self._vocoder, layout = self._qwen3_parts(checkpoint)
            self._system_prompt = None
        else:
            networks, self._vocoder, layout = self._qwen2_5_parts(checkpoint)
        self._scheduler = Scheduler(
            networks,
            self._vocoder,
            self._eos_ids,
            self.limits,
            _token_text(tokenizer),
            text_vocab_size=len(tokenizer),
        )
        self._encoder = PromptEncoder(tokenizer, checkpoint.feature_extractor, layout)
        self.checkpoint = checkpoint
        if checkpoint.device.type == "cuda":
            torch.cuda.synchronize()  # what was computed at load is read on the vocoder's stream
        self._vocoder.start(cpu_threads)
        self._scheduler.start(cpu_threads)

    def _load_checkpoint(self) -> Checkpoint:
        """``settings.model``, from disk or the hub."""
        settings = self.settings
        return load_checkpoint(settings.model, settings.models_dir, settings.device)

    def _speech_limits(self, family: Family) -> SpeechLimits:
        """How long an answer may speak: the family's limits."""
        return QWEN3_LIMITS if family == "qwen3" else QWEN2_5_LIMITS

    def _qwen2_5_parts(self, checkpoint: Checkpoint) -> tuple[Any, Any, Any]:
        from omnivox.engines.omni.qwen2_5_networks import Networks
        from omnivox.engines.omni.qwen2_5_token2wav import Token2Wave
        from omnivox.engines.omni.vocoder import Vocoder

        model = checkpoint.model
        networks = Networks(model, checkpoint.device, checkpoint.dtype)
        t2w = Token2Wave(
            model.token2wav,
            model.speaker_map,
            checkpoint.device,
            cuda_graphs=self.settings.cuda_graphs,
        )
        return networks, Vocoder(t2w, self.plan), QWEN2_5_AUDIO

    def _qwen3_parts(self, checkpoint: Checkpoint) -> tuple[Any, Any, Any]:
        from omnivox.engines.omni.qwen3_code2wav import Code2Wave, Code2WavVocoder
        from omnivox.engines.omni.qwen3_networks import Qwen3Networks

        model = checkpoint.model
        networks = Qwen3Networks(
            model, checkpoint.device, checkpoint.dtype, cuda_graphs=self.settings.cuda_graphs
        )
        vocoder = Code2WavVocoder(Code2Wave(model.code2wav, checkpoint.device), self.frame_plan)
        n_window = int(model.config.thinker_config.audio_config.n_window)
        return networks, vocoder, qwen3_audio(n_window)

    async def close(self) -> None:
        scheduler, vocoder = self._scheduler, self._vocoder
        self._scheduler = self._vocoder = self._encoder = self.checkpoint = None
        if scheduler is not None:
            await asyncio.to_thread(scheduler.stop)
        if vocoder is not None:
            await asyncio.to_thread(vocoder.stop)

    def voice_table(self) -> Mapping[str, str]:
        names = self.checkpoint.speaker_ids() if self.checkpoint is not None else None
        return speakers.voice_table(names)

    @property
    def active_conversations(self) -> int:
        """Conversations the model or vocoder thread still holds."""
        with self._live_lock:
            return len(self._live)

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise ServerError("the omni engine is not started")
        return self._scheduler

    # -- prepare ------------------------------------------------------------------

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        if self._encoder is None:
            raise ServerError("the omni engine is not started")
        prompt = build_prompt(request, self._system_prompt)
        encoded = await asyncio.to_thread(self._encoder.encode, prompt)
        billed_as_audio = encoded.audio_tokens + encoded.transcript_tokens
        return PreparedGeneration(
            request=request,
            context_tokens=encoded.n_tokens,
            prompt_text_tokens=max(0, encoded.n_tokens - billed_as_audio),
            payload=encoded,
        )

    # -- generate -----------------------------------------------------------------

    async def generate(self, prepared: PreparedGeneration) -> AsyncIterator[EngineEvent]:
        if not isinstance(prepared.payload, EncodedPrompt):
            raise ServerError("this generation was not prepared by the omni engine")
        scheduler = self.scheduler
        queue: asyncio.Queue[Any] = asyncio.Queue()
        conversation = self._conversation(prepared, Sink(asyncio.get_running_loop(), queue))
        with self._live_lock:
            self._live.add(conversation.id)
        scheduler.submit(conversation)
        outcome = "cancelled"
        try:
            text_end: TextEnd | None = None
            speech_done = not conversation.speaks
            while text_end is None or not speech_done:
                item = await queue.get()
                if isinstance(item, TextDelta | AudioDelta):
                    yield item
                elif isinstance(item, TextEnd):
                    text_end = item
                elif isinstance(item, SpeechEnd):
                    speech_done = True
                elif isinstance(item, Failure):
                    outcome = "failed"
                    raise item.error
            outcome = "finished"
            self.finished_conversations += 1
            yield Finished(text_end.reason, text_end.n_tokens)
        finally:
            if outcome != "finished":
                conversation.cancel.set()
                if outcome == "cancelled":
                    self.cancelled_conversations += 1
                with contextlib.suppress(Exception):
                    scheduler.poke()
                    self._vocoder.poke()

    def _conversation(self, prepared: PreparedGeneration, sink: Sink) -> Conversation:

        assert self.checkpoint is not None
        request, prompt = prepared.request, prepared.payload
        device = self.checkpoint.device
        sampling = request.sampling
        speech = None
        if request.speech is not None:
            speaker_ids = self.checkpoint.speaker_ids()
            speaker = speakers.speaker_for(request.speech.voice, speaker_ids)
            seen = self.scheduler.networks.initially_seen()
            noise_seed = None if sampling.seed is None else sampling.seed + NOISE_SEED_OFFSET
            speech = SpeechRequest(
                speaker=speaker,
                speaker_bos=speaker_ids[speaker],
                sampler=CodeSampler(make_generator(device, sampling.seed), seen),
                generator=make_generator(device, noise_seed),
            )
        max_tokens = sampling.max_output_tokens or (self.context_window_tokens - prompt.n_tokens)
        return Conversation(
            prompt=prompt,
            sampler=TextSampler(sampling, make_generator(device, sampling.seed)),
            detokenizer=Detokenizer(self.checkpoint.tokenizer),
            stops=StopScanner(sampling.stop),
            max_tokens=max(1, max_tokens),
            sink=sink,
            speech=speech,
            on_released=self._released,
        )

    def _released(self, conversation: Conversation) -> None:
        with self._live_lock:
            self._live.discard(conversation.id)


def _end_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.thinker.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_TOKENS if token in vocab)
    return frozenset(ids)


def _token_text(tokenizer: Any) -> Any:
    def text(token: int) -> str:
        decoded: str = tokenizer.decode([token], clean_up_tokenization_spaces=False)
        return decoded

    return text


def create_engine(settings: Settings) -> OmniEngine:
    return OmniEngine(settings)
