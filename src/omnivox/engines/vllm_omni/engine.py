"""The vllm-omni engine: Qwen2.5-Omni or Qwen3-Omni served by vLLM-Omni servers.

vLLM-Omni (``vllm serve MODEL --omni``) runs the model's thinker, talker and vocoder
as stages and answers OpenAI's Chat Completions in a dialect of its own
(``dialect``). This engine sends it the conversation and reads back the answer's text
and speech as they arrive: text deltas as the thinker writes them, speech (wav
files, ``wav``) resampled to the output rate as the server sends it, and one
``Finished`` with the thinker's token count from the server's usage.

Streaming came to vLLM-Omni after its first releases: a server that fails a streamed
request but answers the same request whole is asked for whole answers from then on
(the text and speech then arrive at the end, all at once).

The servers are an ``UpstreamPool`` (chosen by load, retried, watched); ``start``
asks them for their model (``GET /models``) unless ``--upstream-model`` names it.
OpenAI's voices map to the checkpoint's speakers as ``omnivox.engines.qwen_omni``
documents; the speaker is sent by name, which servers that take per-request
speakers read and older ones ignore (they speak in the model's default voice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from omnivox.engines.base import Capability, GenerationRequest, PreparedGeneration
from omnivox.engines.events import AudioDelta, EngineEvent, Finished, TextDelta
from omnivox.engines.qwen_omni import speaker_for, voice_table
from omnivox.engines.upstream import UpstreamPool, is_url, split_urls
from omnivox.engines.vllm_omni.dialect import (
    Conversation,
    Piece,
    conversation,
    estimate_tokens,
    family_of,
    parse_json,
    read_chunk,
    read_completion,
    request_body,
)
from omnivox.engines.vllm_omni.wav import WavPieces
from omnivox.engines.worker import ThreadBridge
from omnivox.errors import (
    InvalidRequestError,
    ModelUnavailableError,
    ServerError,
    UpstreamError,
)
from omnivox.settings import Settings

log = logging.getLogger("omnivox.vllm_omni")

PART = "speech-to-speech model"
DEFAULT_CONTEXT_TOKENS = 32_768  # Qwen2.5-Omni's, when the server does not say
# Servers before chunked speech send an answer's speech only once all of it is made: the
# pause before it lasts as long as the talker and vocoder take.
SPEECH_PAUSE_S = 300.0
CANCEL_POLL_S = 0.1


class VllmOmniEngine:
    name = "vllm-omni"
    capabilities: frozenset[Capability] = frozenset({"speech"})

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context_window_tokens = DEFAULT_CONTEXT_TOKENS
        self.model: str | None = settings.upstream_model
        self.family = family_of(self.model)
        self.streams = True  # until a server shows that it answers only whole
        self._pool: UpstreamPool | None = None

    def model_names(self) -> tuple[str, ...]:
        return (self.model or "vllm-omni",)

    def voice_table(self) -> Mapping[str, str]:
        return voice_table(self.family.speakers)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        spec = self.settings.upstream
        if not spec:
            raise ModelUnavailableError(
                "The vllm-omni engine needs a vLLM-Omni server: start one "
                "(vllm serve Qwen/Qwen2.5-Omni-7B --omni --port 8091) and give its URL with "
                "--upstream http://HOST:8091/v1 (or OMNIVOX_UPSTREAM)."
            )
        urls = split_urls(spec)
        if not urls or not all(is_url(url) for url in urls):
            raise ModelUnavailableError(
                f"--upstream takes http(s)://HOST/v1 URLs (comma-separated), not {spec!r}."
            )
        await asyncio.to_thread(self._connect, urls)

    def _connect(self, urls: list[str]) -> None:
        settings = self.settings
        pool = UpstreamPool(
            urls,
            part=PART,
            api_key=settings.upstream_api_key,
            timeout_s=settings.upstream_timeout_s,
        )
        entries: list[Mapping[str, Any]] = []
        try:
            listing = pool.request("GET", "/models").json()
            entries = [e for e in listing.get("data", []) if isinstance(e, Mapping)]
        except Exception as exc:
            if self.model is None:
                pool.close()
                raise ModelUnavailableError(
                    f"The speech-to-speech model's upstream ({', '.join(urls)}) did not answer "
                    f"GET /models ({exc}); start it, or name its model with --upstream-model."
                ) from exc
            log.warning("vLLM-Omni upstream did not answer GET /models (%s); serving anyway", exc)
        if self.model is None:
            if not entries:
                pool.close()
                raise ModelUnavailableError(
                    f"The speech-to-speech model's upstream ({', '.join(urls)}) lists no model."
                )
            self.model = str(entries[0].get("id"))
        entry = next((e for e in entries if e.get("id") == self.model), {})
        self.family = family_of(self.model, str(entry.get("root") or ""))
        window = entry.get("max_model_len")
        if isinstance(window, int) and window > 0:
            self.context_window_tokens = window
        self._pool = pool
        log.info("vLLM-Omni upstream serves %s (%s)", self.model, self.family.name)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)

    def unavailable_parts(self) -> tuple[str, ...]:
        """The model, when none of its servers answers now."""
        return (PART,) if self._pool is not None and not self._pool.available() else ()

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise ServerError("the vllm-omni engine is not started")
        return self._pool

    # -- prepare ------------------------------------------------------------------------

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        if request.sampling.logit_bias:
            raise InvalidRequestError(
                "The vLLM-Omni upstream can not serve logit_bias.",
                param="logit_bias",
                code="unsupported_parameter",
            )
        conv = await asyncio.to_thread(conversation, request, self.family)
        n_messages = len(conv.messages)
        return PreparedGeneration(
            request=request,
            context_tokens=estimate_tokens(
                conv.text_chars + conv.transcript_chars, n_messages, conv.audio_s
            ),
            prompt_text_tokens=estimate_tokens(conv.text_chars, n_messages, 0.0),
            payload=conv,
        )

    # -- generate -----------------------------------------------------------------------

    async def generate(self, prepared: PreparedGeneration) -> AsyncIterator[EngineEvent]:
        conv = prepared.payload
        if not isinstance(conv, Conversation):
            raise ServerError("this generation was not prepared by the vllm-omni engine")
        pool, request = self.pool, prepared.request
        speech = request.speech
        speaker = speaker_for(speech.voice, self.family.speakers) if speech else None
        bridge: ThreadBridge[EngineEvent] = ThreadBridge(name="omnivox-vllm-omni")
        bridge.spawn(lambda cancel: self._answer(pool, conv, request, speaker, cancel))
        async with contextlib.aclosing(bridge.items()) as items:
            async for event in items:
                yield event

    def _answer(
        self,
        pool: UpstreamPool,
        conv: Conversation,
        request: GenerationRequest,
        speaker: str | None,
        cancel: threading.Event,
    ) -> Iterator[EngineEvent]:
        assert self.model is not None  # set by start()
        messages, sampling = conv.messages, request.sampling
        max_tokens = sampling.max_output_tokens
        failed: UpstreamError | None = None
        if self.streams:
            body = request_body(self.model, messages, sampling, speaker=speaker, stream=True)
            # A streamed answer's usage may count the prompt of the stage that spoke last
            # (the vocoder's), as the first streaming versions do: only text answers' is kept.
            counted = not conv.has_audio and speaker is None
            reading = Reading(max_tokens, upstream_counts_prompt=counted)
            try:
                yield from self._streamed(pool, body, reading, cancel)
                return
            except UpstreamError as exc:
                # Only a server's refusal of the stream itself (an error status instead of
                # an answer) is worth asking again whole; a timeout or a broken connection
                # (an exception under it), or an error in an answer begun, is not.
                if reading.begun or cancel.is_set() or exc.__cause__ is not None:
                    raise
                failed = exc
        body = request_body(self.model, messages, sampling, speaker=speaker, stream=False)
        reading = Reading(max_tokens, upstream_counts_prompt=not conv.has_audio)
        events = list(self._whole(pool, body, reading))
        if failed is not None:
            self.streams = False
            log.warning(
                "the vLLM-Omni upstream failed a streamed answer (%s) but gave it whole: "
                "its answers are asked for whole from now on",
                failed,
            )
        yield from events

    def _streamed(
        self,
        pool: UpstreamPool,
        body: dict[str, Any],
        reading: Reading,
        cancel: threading.Event,
    ) -> Iterator[EngineEvent]:
        timeout = self._timeout()
        with (
            pool.stream("POST", "/chat/completions", json=body, timeout=timeout) as answer,
            _closed_when(cancel, answer),
        ):
            reading.begun = True
            try:
                for line in answer.iter_lines():
                    if cancel.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    for piece in read_chunk(parse_json(data)):
                        yield from reading.take(piece)
            except Exception:
                if cancel.is_set():  # the answer was closed under the read: the client left
                    return
                raise
        yield from reading.end()

    def _whole(
        self, pool: UpstreamPool, body: dict[str, Any], reading: Reading
    ) -> Iterator[EngineEvent]:
        answer = pool.request("POST", "/chat/completions", json=body, timeout=self._timeout())
        for piece in read_completion(parse_json(answer.text)):
            yield from reading.take(piece)
        yield from reading.end()

    def _timeout(self) -> Any:
        import httpx

        timeout_s = self.settings.upstream_timeout_s
        return httpx.Timeout(timeout_s, read=max(timeout_s, SPEECH_PAUSE_S))


class Reading:
    """One answer's pieces as engine events: text as it comes, speech decoded and
    resampled, and the ``Finished`` that ends them."""

    def __init__(self, max_tokens: int | None, *, upstream_counts_prompt: bool) -> None:
        self.max_tokens = max_tokens
        # The upstream's prompt count is all text only when no audio went in (audio and
        # the transcripts of earlier answers are billed as audio, by duration).
        self.upstream_counts_prompt = upstream_counts_prompt
        self.begun = False  # the upstream answered with a stream
        self.wav = WavPieces()
        self.text_pieces = 0
        self.completion_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.cut = False

    def take(self, piece: Piece) -> Iterator[EngineEvent]:
        if piece.text:
            self.text_pieces += 1
            yield TextDelta(piece.text)
        if piece.audio:
            pcm = self.wav.feed(piece.audio)
            if pcm:
                yield AudioDelta(pcm)
        if piece.finish_reason == "length":
            self.cut = True
        if piece.completion_tokens is not None:
            self.completion_tokens = piece.completion_tokens
        if piece.prompt_tokens is not None:
            self.prompt_tokens = piece.prompt_tokens

    def end(self) -> Iterator[EngineEvent]:
        tail = self.wav.flush()
        if tail:
            yield AudioDelta(tail)
        n_tokens = self.completion_tokens
        if n_tokens is None:
            n_tokens = self.text_pieces  # a chunk holds at least one token
        # A server holds back the text's finish reason while speech is still to come, so
        # an answer cut at max_tokens is also known by its count.
        cut = self.cut or (self.max_tokens is not None and n_tokens >= self.max_tokens)
        prompt = self.prompt_tokens if self.upstream_counts_prompt else None
        yield Finished("length" if cut else "stop", n_tokens, prompt)


@contextlib.contextmanager
def _closed_when(cancel: threading.Event, answer: Any) -> Iterator[None]:
    """Close ``answer`` as soon as ``cancel`` is set, so that a read waiting for the
    upstream's next chunk ends at once and the upstream sees the client leave."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(CANCEL_POLL_S):
            if cancel.is_set():
                with contextlib.suppress(Exception):
                    _interrupt(answer)
                return

    watcher = threading.Thread(target=watch, name="omnivox-vllm-omni-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _interrupt(answer: Any) -> None:
    """End a read blocked on ``answer`` from another thread: closing the response alone
    leaves the read waiting for the next bytes, shutting its socket down ends it."""
    stream = answer.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)
    answer.close()
