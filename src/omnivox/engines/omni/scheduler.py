"""The model thread: every live conversation's thinker and talker, stepped together.

One thread owns the thinker and the talker. Each turn of its loop:

1. admits new conversations: one thinker prefill each (a batch of one;
   at most ``MAX_PREFILLS_PER_TURN`` per turn while others are decoding, so
   that a burst of arrivals delays running conversations by a few prefills,
   not by all of them), then joins their rows to the thinker's batch;
2. drops cancelled conversations from both batches (their slot is free at the
   next step);
3. runs ONE batched thinker step for all conversations still writing: each
   row's next token, and for speaking rows the reply part the talker reads;
4. runs ONE batched talker step for all talking rows (a frame each: one code
   for Qwen2.5-Omni; for Qwen3-Omni the talker's code and, in one batched
   pass of its code predictor, 15 residual codes), then starts the talker
   of speaking conversations whose first reply part now exists (a talker
   prefill each; they join the talker's batch for the next turn). New frames
   go to the vocoder thread.

So several conversations share every forward pass, and none waits for another
to finish: that is batching of decoding steps across conversations, not a
lock around whole generations. The talker reads one reply part per code and
the thinker makes one per turn, so talker step s always finds part s (the
thinker steps first in a turn; a talker starts one turn after its first part);
after the text's last token the parts are its end marker, then padding, until
the talker says it is done.

Speech length: the talker stops at its end-of-speech code, or at
``SpeechLimits`` (``base_codes + codes_per_text_token`` x the text's tokens
frames, 4096 at most: a runaway talker never holds a slot for ever; the
family sets the defaults, ``QWEN2_5_LIMITS`` at 50 frames/s and
``QWEN3_LIMITS`` at 12.5).

This module knows nothing of HTTP, asyncio or how codes become audio.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from omnivox.engines.events import TextDelta
from omnivox.engines.omni.batch import RaggedBatch
from omnivox.engines.omni.conversation import Conversation, Failure, SpeechEnd, TextEnd
from omnivox.engines.omni.qwen2_5_networks import OmniNetworks
from omnivox.engines.omni.sampling import choose_codes
from omnivox.engines.omni.vocoder import VocoderThread
from omnivox.errors import ServerError

MAX_PREFILLS_PER_TURN = 2
IDLE_WAIT_S = 0.05


@dataclass(frozen=True, slots=True)
class SpeechLimits:
    base_codes: int = 100
    codes_per_text_token: int = 40
    max_codes: int = 4096

    def for_text(self, n_tokens: int) -> int:
        return min(self.max_codes, self.base_codes + self.codes_per_text_token * n_tokens)


QWEN2_5_LIMITS = SpeechLimits()  # 2 s + 0.8 s per text token, at 50 codes/s
QWEN3_LIMITS = SpeechLimits(base_codes=25, codes_per_text_token=10)  # the same at 12.5 frames/s


class Scheduler:
    def __init__(
        self,
        networks: OmniNetworks,
        vocoder: VocoderThread,
        eos_ids: frozenset[int],
        limits: SpeechLimits,
        token_text: Any,
        text_vocab_size: int | None = None,
    ) -> None:
        self.networks = networks
        # Checkpoints pad the thinker's output layer past the tokenizer (Qwen2.5-Omni-7B:
        # 152,064 rows for 151,665 tokens); an id past the tokenizer has no text, so it is
        # never drawn (a model with random weights would otherwise draw them often).
        self.text_vocab_size = text_vocab_size
        self.vocoder = vocoder
        self.eos_ids = eos_ids
        self._eos_columns: Any = None  # eos_ids as an index on the logits' device, made once
        self.limits = limits
        self.token_text = token_text  # id -> text, for logprobs
        self._inbox: queue.SimpleQueue[Conversation] = queue.SimpleQueue()
        self._thinker = networks.new_thinker_batch()
        self._talker = networks.new_talker_batch()
        self._conversations: dict[int, Conversation] = {}
        self._wake = threading.Event()
        self._running = False
        self._thread: threading.Thread | None = None
        self._cpu_threads: int | None = None
        self.steps = 0
        self.peak_thinker_rows = 0  # the most conversations one thinker step has decoded
        self.peak_talker_rows = 0

    def start(self, cpu_threads: int | None = None) -> None:
        self._running = True
        self._cpu_threads = cpu_threads
        self._thread = threading.Thread(target=self._run, name="omnivox-omni-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the loop; conversations still running fail with a server error."""
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        waiting = list(self._conversations.values())
        while not self._inbox.empty():
            waiting.append(self._inbox.get_nowait())
        for conversation in waiting:
            self._fail(conversation, ServerError("the omni engine was stopped"))

    def submit(self, conversation: Conversation) -> None:
        self._inbox.put(conversation)
        self._wake.set()

    def poke(self) -> None:
        """Wake the loop (a conversation was cancelled)."""
        self._wake.set()

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        import torch

        if self._cpu_threads is not None:
            torch.set_num_threads(self._cpu_threads)
        with torch.inference_mode():
            while self._running:
                busy = bool(self._conversations)
                self._admit(MAX_PREFILLS_PER_TURN if busy else None)
                self._drop_cancelled()
                if not self._conversations:
                    self._wake.wait(IDLE_WAIT_S)
                    self._wake.clear()
                    continue
                self._guarded(self._thinker, self._thinker_step)
                self._guarded(self._talker, self._talker_step)
                self._start_talkers()
                self.steps += 1

    def _guarded(self, batch: RaggedBatch, step: Any) -> None:
        """Run ``step``; if it raises, every conversation in ``batch`` fails with it."""
        if not len(batch):
            return
        try:
            step()
        except Exception as exc:
            for row in list(batch.row_ids):
                conversation = self._conversations.get(row)
                if conversation is not None:
                    self._fail(conversation, exc)
            batch.remove(list(batch.row_ids))

    def _admit(self, limit: int | None) -> None:
        admitted = 0
        while limit is None or admitted < limit:
            try:
                conversation = self._inbox.get_nowait()
            except queue.Empty:
                return
            admitted += 1
            if conversation.cancel.is_set():
                self._release(conversation)
                continue
            self._conversations[conversation.id] = conversation
            try:
                self._prefill(conversation)
            except Exception as exc:
                self._fail(conversation, exc)

    def _prefill(self, conversation: Conversation) -> None:
        prefill = self.networks.prefill_thinker(conversation.prompt, for_talker=conversation.speaks)
        conversation.talker_context = prefill.talker_context
        self._thinker.add(conversation.id, prefill.cache, prefill.length)
        self._take_tokens([conversation], prefill.logits.unsqueeze(0))

    def _drop_cancelled(self) -> None:
        gone = [c for c in self._conversations.values() if c.cancel.is_set()]
        if gone:
            ids = [c.id for c in gone]
            self._thinker.remove(ids)
            self._talker.remove(ids)
            for conversation in gone:
                self._release(conversation)

    # -- thinker -----------------------------------------------------------------

    def _thinker_step(self) -> None:
        import torch

        rows = [self._conversations[row] for row in self._thinker.row_ids]
        self.peak_thinker_rows = max(self.peak_thinker_rows, len(rows))
        tokens = torch.tensor([c.last_token for c in rows], device=self.networks.device)
        logits, parts = self.networks.thinker_step(self._thinker, tokens)
        for i, conversation in enumerate(rows):
            if conversation.speaks:
                conversation.reply.append(parts[i])
        self._take_tokens(rows, logits)

    def _take_tokens(self, rows: list[Conversation], logits: Any) -> None:
        import torch

        if self.text_vocab_size is not None and self.text_vocab_size < logits.shape[-1]:
            logits[:, self.text_vocab_size :] = float("-inf")
        forced = [i for i, c in enumerate(rows) if c.forced_tokens is not None]
        if forced and self.eos_ids:  # a forced-length row never draws an end
            if self._eos_columns is None:
                self._eos_columns = torch.tensor(sorted(self.eos_ids), device=logits.device)
            forced_rows = torch.tensor(forced, device=logits.device)
            logits[forced_rows[:, None], self._eos_columns[None, :]] = float("-inf")
        chosen = torch.stack([c.sampler.choose(logits[i]) for i, c in enumerate(rows)]).tolist()
        finished = []
        for i, (conversation, token) in enumerate(zip(rows, chosen, strict=True)):
            if self._take_token(conversation, int(token), logits[i]):
                finished.append(conversation)
        if finished:
            self._thinker.remove(c.id for c in finished)

    def _take_token(self, conversation: Conversation, token: int, logits: Any) -> bool:
        """Add ``token`` to the answer; True when the text has ended."""
        if token in self.eos_ids:
            self._end_text(conversation, "stop")
            return True
        conversation.n_tokens += 1
        conversation.sampler.record(token)
        if conversation.sampler.params.logprobs:
            conversation.pending_logprobs.append(
                conversation.sampler.logprobs(logits, token, self.token_text)
            )
        shown = conversation.stops.feed(conversation.detokenizer.push(token))
        self._show(conversation, shown)
        limit = conversation.forced_tokens or conversation.max_tokens
        if conversation.stops.stopped:
            self._end_text(conversation, "stop")
            return True
        if conversation.n_tokens >= limit:
            self._end_text(conversation, "length")
            return True
        conversation.last_token = token
        return False

    def _show(self, conversation: Conversation, text: str) -> None:
        if text:
            logprobs = tuple(conversation.pending_logprobs)
            conversation.pending_logprobs.clear()
            conversation.sink.put(TextDelta(text, logprobs))

    def _end_text(self, conversation: Conversation, reason: Any) -> None:
        if not conversation.stops.stopped:
            held = conversation.stops.feed(conversation.detokenizer.flush())
            self._show(conversation, held + conversation.stops.flush())
        conversation.text_done = True
        if conversation.speaks and not conversation.talker_done:
            networks = self.networks
            conversation.reply.extend([networks.text_eos_part, networks.text_pad_part])
            conversation.reply_closed = True
            conversation.max_codes = self.limits.for_text(conversation.n_tokens)
            if conversation.n_tokens == 0 and not conversation.talker_started:
                self._end_speech(conversation)  # nothing to say
        self._release_if_done(conversation)  # before the end is told: finished => released
        conversation.sink.put(TextEnd(reason, conversation.n_tokens))

    # -- talker ------------------------------------------------------------------

    def _start_talkers(self) -> None:
        for conversation in list(self._conversations.values()):
            if (
                not conversation.speaks
                or conversation.talker_started
                or conversation.talker_done
                or conversation.reply_part(0) is None
            ):
                continue
            try:
                self._start_talker(conversation)
            except Exception as exc:
                self._fail(conversation, exc)

    def _start_talker(self, conversation: Conversation) -> None:
        assert conversation.speech is not None
        conversation.talker_started = True
        self.vocoder.open(conversation)
        prefill = self.networks.prefill_talker(
            conversation.talker_context, conversation.speech.speaker_bos, conversation.reply[0]
        )
        conversation.talker_context = None
        self._talker.add(conversation.id, prefill.cache, prefill.length)
        hidden = None if prefill.hidden is None else prefill.hidden.unsqueeze(0)
        self._take_codes([conversation], prefill.logits.unsqueeze(0), hidden)

    def _talker_step(self) -> None:
        import torch

        rows = [self._conversations[row] for row in self._talker.row_ids]
        self.peak_talker_rows = max(self.peak_talker_rows, len(rows))
        parts = [c.reply_part(c.n_codes) for c in rows]
        if any(part is None for part in parts):
            raise RuntimeError("the talker ran ahead of the thinker")  # an invariant broke
        frames = torch.tensor([c.last_frame for c in rows], device=self.networks.device)
        logits, hidden = self.networks.talker_step(self._talker, frames, torch.stack(parts))
        self._take_codes(rows, logits, hidden)

    def _take_codes(self, rows: list[Conversation], logits: Any, hidden: Any) -> None:
        """Draw each row's next code; complete the frames of rows that go on speaking."""
        import torch

        networks = self.networks
        allowed = torch.stack(
            [networks.speech_codes_only if c.forced_codes else networks.allowed_codes for c in rows]
        )
        samplers = [c.speech.sampler for c in rows if c.speech is not None]
        codes = choose_codes(logits, samplers, allowed, networks.code_sampling)
        ends = networks.codec_end_ids
        speaking = [i for i, code in enumerate(codes.tolist()) if code not in ends]
        frames: dict[int, list[int]] = {}
        if speaking:
            index = torch.tensor(speaking, device=codes.device)
            completed = networks.complete_frames(
                None if hidden is None else hidden.index_select(0, index),
                codes.index_select(0, index),
                [samplers[i] for i in speaking],
            )
            frames = dict(zip(speaking, completed.tolist(), strict=True))
        finished = []
        for i, conversation in enumerate(rows):
            frame = frames.get(i)
            if frame is None:
                finished.append(conversation)
                continue
            conversation.n_codes += 1
            conversation.last_frame = frame
            conversation.stream.add(frame)
            limit = conversation.forced_codes or conversation.max_codes or self.limits.max_codes
            if conversation.n_codes >= limit:
                finished.append(conversation)
        if finished:
            self._talker.remove(c.id for c in finished)
            for conversation in finished:
                self._end_speech(conversation)
        self.vocoder.poke()

    def _end_speech(self, conversation: Conversation) -> None:
        conversation.talker_done = True
        stream = conversation.stream
        if stream is None:
            conversation.release("vocoder")
        self._release_if_done(conversation)  # before the end is told: finished => released
        if stream is None:
            conversation.sink.put(SpeechEnd())
        else:
            stream.finish()  # the vocoder tells the end once the last chunk is out
            self.vocoder.poke()

    # -- endings -----------------------------------------------------------------

    def _fail(self, conversation: Conversation, error: BaseException) -> None:
        conversation.sink.put(Failure(error))
        conversation.cancel.set()
        self._thinker.remove([conversation.id])
        self._talker.remove([conversation.id])
        self._release(conversation)

    def _release_if_done(self, conversation: Conversation) -> None:
        if conversation.text_done and (not conversation.speaks or conversation.talker_done):
            self._release(conversation)

    def _release(self, conversation: Conversation) -> None:
        """The model thread is done with ``conversation`` (its vocoder part may go on)."""
        self._conversations.pop(conversation.id, None)
        conversation.talker_context = None
        conversation.reply = []
        if not conversation.speaks or conversation.stream is None:
            conversation.release("vocoder")
        conversation.release("model")
