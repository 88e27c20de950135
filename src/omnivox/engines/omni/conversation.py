"""One generation as the omni engine's threads see it, and how its events reach asyncio.

A ``Conversation`` is created by ``OmniEngine.generate`` and handed to the
model thread (thinker and talker) and, when it speaks, to the vocoder thread.
Each thread reports through the conversation's ``Sink`` (thread-safe, into the
generation's asyncio queue): text and audio deltas, then ``TextEnd`` and
``SpeechEnd``, or a ``Failure``. ``cancel`` is set when the client goes away;
both threads check it between steps and drop the conversation, each calling
``release`` for its part; when the last part is released the engine's
``on_released`` hook runs (it counts live conversations).

This module holds state; it computes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from omnivox.engines.events import FinishReason, TokenLogprob
from omnivox.engines.omni.encoding import EncodedPrompt
from omnivox.engines.omni.sampling import CodeSampler, Detokenizer, TextSampler
from omnivox.engines.stops import StopScanner

_ids = itertools.count(1)

Part = Literal["model", "vocoder"]


@dataclass(frozen=True, slots=True)
class TextEnd:
    reason: FinishReason
    n_tokens: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    pass


@dataclass(frozen=True, slots=True)
class Failure:
    error: BaseException


class Sink:
    """Items from any thread into an asyncio queue of the generation's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self._loop = loop
        self._queue = queue

    def put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody reads any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    speaker: str
    speaker_bos: int  # the id that starts this speaker's speech (Qwen2.5: text; Qwen3: codec)
    sampler: CodeSampler
    generator: Any  # torch.Generator of the DiT's noise (Qwen2.5-Omni)


@dataclass(eq=False)
class Conversation:
    prompt: EncodedPrompt
    sampler: TextSampler
    detokenizer: Detokenizer
    stops: StopScanner
    max_tokens: int
    sink: Sink
    speech: SpeechRequest | None
    on_released: Callable[[Conversation], None]
    # an answer of exactly this many text tokens / speech frames, its ends suppressed (the
    # benchmark sets them, so that runs compare whatever the weights)
    forced_tokens: int | None = None
    forced_codes: int | None = None
    id: int = field(default_factory=lambda: next(_ids))
    cancel: threading.Event = field(default_factory=threading.Event)
    # the model thread's state
    last_token: int = -1
    n_tokens: int = 0
    text_done: bool = False
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    reply: list[Any] = field(default_factory=list)  # the talker's reply stream, on the device
    reply_closed: bool = False
    talker_context: Any = None
    talker_started: bool = False
    talker_done: bool = False
    last_frame: list[int] = field(default_factory=list)  # the talker's last frame of codes
    n_codes: int = 0  # frames spoken (one code each for Qwen2.5, 16 for Qwen3)
    max_codes: int | None = None
    stream: Any = None  # SpeechStream or FrameStream, once the talker started
    _released: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def speaks(self) -> bool:
        return self.speech is not None

    def reply_part(self, index: int) -> Any:
        """The talker's input for its step ``index``, or None when not known yet."""
        if index < len(self.reply):
            return self.reply[index]
        return self.reply[-1] if self.reply_closed and self.reply else None

    def release(self, part: Part) -> None:
        with self._lock:
            if part in self._released:
                return
            self._released.add(part)
            last = self._released == {"model", "vocoder"}
        if last:
            self.on_released(self)
