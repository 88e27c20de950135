"""The chat model: a GGUF file run by llama-cpp-python on the CPU.

``LlamaGenerator`` renders chat messages with the GGUF's own chat template,
counts tokens with the GGUF's own tokenizer, and streams the answer a token at
a time (``stream``), honouring the sampling parameters: temperature, top_p,
seed, stop sequences, the token limit (and the end of the context: both finish
with "length"), presence and frequency penalties, logit_bias, and
logprobs/top_logprobs. ``grammar`` (a ``llama_cpp.LlamaGrammar``) is passed
through to the sampler, for constrained output.

A ``Llama`` object is not thread-safe, so the generator keeps a small pool of
them sharing one memory-mapped weight file: each generation leases one for its
whole length, and the pool grows on demand up to ``max_instances``.
Tokenizing and rendering touch only read-only state and need no lease.

Logprobs are computed from the last logits of the context (no ``logits_all``,
which would cost n_ctx x n_vocab floats); they are the model's raw
distribution, before penalties and biases.

This module knows nothing of speech, events or HTTP.
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from omnivox.engines.base import SamplingParams
from omnivox.engines.cascade.stops import StopScanner
from omnivox.engines.events import TokenLogprob
from omnivox.errors import ModelUnavailableError

DEFAULT_CONTEXT_TOKENS = 8192
LEASE_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """Text of one or more generated tokens, with their logprobs when asked for."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationEnd:
    reason: Literal["stop", "length"]
    n_tokens: int


class LlamaGenerator:
    def __init__(
        self,
        gguf_path: Path,
        *,
        n_threads: int,
        n_ctx: int = DEFAULT_CONTEXT_TOKENS,
        max_instances: int = 2,
    ) -> None:
        self.gguf_path = gguf_path
        self._n_threads = n_threads
        self._n_ctx = n_ctx
        self._max_instances = max_instances
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._instances: list[Any] = []
        self._grow_lock = threading.Lock()
        first = self._load()
        self._instances.append(first)
        self._idle.put(first)
        self._template = _chat_formatter(first)
        self.context_window_tokens: int = first.n_ctx()

    def _load(self) -> Any:
        from llama_cpp import Llama

        try:
            return Llama(
                model_path=str(self.gguf_path),
                n_ctx=self._n_ctx,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(
                f"llama.cpp could not load {self.gguf_path}: is it a GGUF chat model? ({exc})"
            ) from exc

    def close(self) -> None:
        for llm in self._instances:
            llm.close()
        self._instances.clear()

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text for ``messages``, ending where the assistant's answer begins."""
        return str(self._template(messages=list(messages)).prompt)

    def tokenize_prompt(self, prompt: str) -> list[int]:
        llm = self._instances[0]
        tokens: list[int] = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        bos = llm.token_bos()
        if len(tokens) > 1 and tokens[0] == tokens[1] == bos:  # the template wrote one too
            tokens = tokens[1:]
        return tokens

    def count_tokens(self, text: str) -> int:
        return len(self._instances[0].tokenize(text.encode("utf-8"), add_bos=False))

    @contextlib.contextmanager
    def _lease(self, cancel: threading.Event) -> Iterator[Any]:
        """A model of the pool for this thread alone; waits while all are busy."""
        llm = self._take(cancel)
        try:
            yield llm
        finally:
            if llm is not None:
                self._idle.put(llm)

    def _take(self, cancel: threading.Event) -> Any:
        while not cancel.is_set():
            with contextlib.suppress(queue.Empty):
                return self._idle.get_nowait()
            with self._grow_lock:
                if len(self._instances) < self._max_instances:
                    llm = self._load()
                    self._instances.append(llm)
                    return llm
            with contextlib.suppress(queue.Empty):
                return self._idle.get(timeout=LEASE_POLL_S)
        return None

    def stream(
        self,
        prompt_tokens: Sequence[int],
        sampling: SamplingParams,
        cancel: threading.Event,
        *,
        grammar: Any = None,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        """Generate; ends with one ``GenerationEnd`` unless ``cancel`` is set first."""
        with self._lease(cancel) as llm:
            if llm is None:
                return
            yield from self._generate(llm, list(prompt_tokens), sampling, cancel, grammar)

    def _generate(
        self,
        llm: Any,
        prompt_tokens: list[int],
        sampling: SamplingParams,
        cancel: threading.Event,
        grammar: Any,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        import llama_cpp

        room = self.context_window_tokens - len(prompt_tokens)
        limit = min(room, sampling.max_output_tokens or room)
        if limit <= 0:
            yield GenerationEnd("length", 0)
            return
        llm.set_seed(sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokens = llm.generate(
            prompt_tokens,
            **_sampler_args(sampling),
            logits_processor=_bias_processor(sampling.logit_bias),
            grammar=grammar,
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(sampling.stop)
        pending: list[TokenLogprob] = []
        reason: Literal["stop", "length"] = "length"
        n_tokens = 0
        try:
            for token in tokens:
                if cancel.is_set():
                    return
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                n_tokens += 1
                if sampling.logprobs:
                    pending.append(_token_logprob(llm, token, sampling.top_logprobs))
                text = scanner.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    yield TokenPiece(text, tuple(pending))
                    pending = []
                if scanner.stopped:
                    reason = "stop"
                    break
                if n_tokens >= limit:
                    break
        finally:
            tokens.close()
        tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
        if tail:
            yield TokenPiece(tail, tuple(pending))
        yield GenerationEnd(reason, n_tokens)


def _chat_formatter(llm: Any) -> Any:
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ModelUnavailableError(
            f"{llm.model_path} has no chat template (tokenizer.chat_template): "
            "use an instruction-tuned GGUF."
        )

    vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def special_text(token: int) -> str:
        return llama_cpp.llama_vocab_get_text(vocab, token).decode() if token != -1 else ""

    return Jinja2ChatFormatter(
        template=template,
        eos_token=special_text(llm.token_eos()),
        bos_token=special_text(llm.token_bos()),
    )


def _sampler_args(sampling: SamplingParams) -> dict[str, Any]:
    """OpenAI's sampling: temperature and top_p only (llama.cpp's top_k, min_p off)."""
    return {
        "temp": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }


def _bias_processor(logit_bias: Mapping[int, float]) -> Any:
    if not logit_bias:
        return None
    from llama_cpp import LogitsProcessorList

    ids = np.fromiter(logit_bias.keys(), dtype=np.intp)
    biases = np.fromiter(logit_bias.values(), dtype=np.float32)

    def add_bias(_input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        valid = ids < scores.shape[0]
        scores[ids[valid]] += biases[valid]
        return scores

    return LogitsProcessorList([add_bias])


def _token_logprob(llm: Any, token: int, n_top: int) -> TokenLogprob:
    import llama_cpp

    n_vocab = llm.n_vocab()
    raw = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    logits = raw.astype(np.float64)
    peak = logits.max()
    logprobs = logits - (peak + np.log(np.exp(logits - peak).sum()))
    top: tuple[tuple[str, float], ...] = ()
    if n_top > 0:
        best = np.argpartition(-logprobs, n_top - 1)[:n_top]
        best = best[np.argsort(-logprobs[best])]
        top = tuple((_token_text(llm, int(i)), float(logprobs[i])) for i in best)
    return TokenLogprob(_token_text(llm, token), float(logprobs[token]), top)


def _token_text(llm: Any, token: int) -> str:
    return str(llm.detokenize([token]).decode("utf-8", errors="replace"))
