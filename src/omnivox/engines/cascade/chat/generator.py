"""The chat model: a GGUF file run by llama-cpp-python on the CPU.

``LlamaGenerator`` renders chat messages with the GGUF's own chat template,
counts tokens with its own tokenizer, and streams the answer a token at a time
(``stream``), honouring the sampling parameters (mapped in ``sampling``).
``grammar`` (GBNF text) constrains the whole answer; a ``GrammarBranch`` lets
the model choose at its first token between a constrained block (a tool call)
and a free answer: the block is taken when the probability of a first token
that begins ``opener``, times ``exp(bias)``, reaches that of the most likely
first token; the choice is deterministic and costs no extra evaluation. A
``Llama`` is not thread-safe, so each generation leases one of ``n_instances``
contexts on one loaded model (``SharedModel``), with a 16-bit KV cache. Every
evaluation runs on one thread of the generator's own (``ModelThread``): libgomp
keeps a team of threads per calling thread, and more teams than cores slow every
token. Measurements: docs/performance.md. This module knows nothing of speech,
events or HTTP.
"""

from __future__ import annotations

import codecs
import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from omnivox.engines.base import ResponseFormat, SamplingParams
from omnivox.engines.cascade.chat.model import (
    ChatPrompt,
    GenerationEnd,
    Grammar,
    GrammarBranch,
    StepGate,
    TokenPiece,
    ungated,
)
from omnivox.engines.cascade.chat.sampling import (
    bias_processor,
    last_logprobs,
    sampler_args,
    token_logprob,
)
from omnivox.engines.events import TokenLogprob
from omnivox.engines.stops import StopScanner
from omnivox.engines.worker import ModelThread
from omnivox.errors import ModelUnavailableError

DEFAULT_CONTEXT_TOKENS = 4096
LEASE_POLL_S = 0.05
CLOSE_WAIT_S = 10.0


class LlamaGenerator:
    def __init__(
        self,
        gguf_path: Path,
        *,
        n_threads: int,
        n_ctx: int = DEFAULT_CONTEXT_TOKENS,
        n_instances: int = 2,
    ) -> None:
        self.gguf_path = gguf_path
        self._n_threads = n_threads
        self._n_ctx = n_ctx
        self._model = SharedModel()
        self._thread = ModelThread("omnivox-llama")
        try:
            self._instances: list[Any] = self._thread.run(self._load_warm, max(1, n_instances))
        except BaseException:
            self._thread.close()
            raise
        self._template = _chat_formatter(self._instances[0])
        self.context_window_tokens: int = self._instances[0].n_ctx()
        self._idle = list(self._instances)
        self._idle_changed = threading.Condition()
        self._token_sets: dict[tuple[str, ...], np.ndarray] = {}

    def _load_warm(self, n_instances: int) -> list[Any]:
        instances = [self._load() for _ in range(n_instances)]
        for llm in instances:
            _warm_up(llm)
        return instances

    def _load(self) -> Any:
        from llama_cpp import Llama

        try:
            with self._model.lent():
                # Flash attention with llama.cpp's default 16-bit KV cache: an 8-bit cache
                # halves its memory, but reads a long prompt at half the speed.
                return Llama(
                    model_path=str(self.gguf_path),
                    n_ctx=self._n_ctx,
                    n_threads=self._n_threads,
                    n_threads_batch=self._n_threads,
                    flash_attn=True,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailableError(
                f"llama.cpp could not load {self.gguf_path}: is it a GGUF chat model? ({exc})"
            ) from exc

    def close(self, *, wait_s: float = CLOSE_WAIT_S) -> None:
        """Free the models, waiting up to ``wait_s`` for running generations to end.

        A model still leased after that is left to the garbage collector rather
        than freed under a running generation.
        """
        deadline = time.monotonic() + wait_s
        with self._idle_changed:
            while len(self._idle) < len(self._instances) and time.monotonic() < deadline:
                self._idle_changed.wait(LEASE_POLL_S)
            idle, self._idle = self._idle, []
        for llm in idle:
            llm.close()
        if len(idle) == len(self._instances):
            self._model.close()
            self._thread.close()  # else a generation still running needs it

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt text for ``messages``, ending where the assistant's answer begins."""
        return str(self._template(messages=list(messages)).prompt)

    def prompt(self, messages: Sequence[Mapping[str, Any]]) -> ChatPrompt:
        """``messages`` in the model's chat template, and its tokens."""
        text = self.render(messages)
        tokens = tuple(self.tokenize_prompt(text))
        return ChatPrompt(tuple(messages), text, tokens, len(tokens))

    def tokenize_prompt(self, prompt: str) -> list[int]:
        llm = self._instances[0]
        tokens: list[int] = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        bos = llm.token_bos()
        if len(tokens) > 1 and tokens[0] == tokens[1] == bos:  # the template wrote one too
            tokens = tokens[1:]
        return tokens

    def count_tokens(self, text: str) -> int:
        return len(self._instances[0].tokenize(text.encode("utf-8"), add_bos=False))

    @property
    def n_vocab(self) -> int:
        return int(self._instances[0].n_vocab())

    def grammar_is_valid(self, grammar: str) -> bool:
        """Whether llama.cpp parses ``grammar`` (it would fail mid-generation otherwise)."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self._instances[0].model)
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    def opener_tokens(self, opener: str) -> np.ndarray:
        """Ids of the tokens a text beginning with ``opener`` can begin with."""
        return self._tokens_where(
            ("opener", opener), lambda t: opener.startswith(t) or t.startswith(opener)
        )

    def joining_tokens(self, first: str, then: str) -> np.ndarray:
        """Ids of the tokens that write ``first`` and, later in the same token, ``then``."""

        def joins(text: str) -> bool:
            at = text.find(first)
            return at >= 0 and then in text[at + len(first) :]

        return self._tokens_where(("join", first, then), joins)

    def _tokens_where(self, key: tuple[str, ...], test: Callable[[str], bool]) -> np.ndarray:
        """Token ids whose text passes ``test`` (computed once per ``key``: ~0.1 s)."""
        found = self._token_sets.get(key)
        if found is None:
            llm = self._instances[0]
            ids = []
            for token in range(llm.n_vocab()):
                text = llm.detokenize([token]).decode("utf-8", errors="ignore")
                if text and test(text):
                    ids.append(token)
            found = self._token_sets[key] = np.asarray(ids, dtype=np.intp)
        return found

    @contextlib.contextmanager
    def _lease(self, prompt_tokens: Sequence[int], cancel: threading.Event) -> Iterator[Any]:
        """A model of the pool for this thread alone; None once ``cancel`` is set."""
        llm = self._take(prompt_tokens, cancel)
        try:
            yield llm
        finally:
            if llm is not None:
                with self._idle_changed:
                    self._idle.append(llm)
                    self._idle_changed.notify()

    def _take(self, prompt_tokens: Sequence[int], cancel: threading.Event) -> Any:
        """Wait for an idle model; of several, the one whose KV cache holds the longest
        prefix of this prompt (the system prompt, the conversation so far), so that
        llama.cpp evaluates only the rest."""
        with self._idle_changed:
            while not self._idle:
                if cancel.is_set():
                    return None
                self._idle_changed.wait(LEASE_POLL_S)
            best = max(self._idle, key=lambda llm: _shared_prefix(llm, prompt_tokens))
            self._idle.remove(best)
            return best

    def stream(
        self,
        prompt: ChatPrompt,
        sampling: SamplingParams,
        cancel: threading.Event,
        *,
        grammar: Grammar | None = None,
        branch: GrammarBranch | None = None,
        gate: StepGate = ungated,
        response_format: ResponseFormat | None = None,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        """Generate; ends with one ``GenerationEnd`` unless ``cancel`` is set first.
        (``response_format`` is already in ``grammar``.)

        Each model step (evaluating the prompt, each token) runs inside ``gate``.
        """
        prompt_tokens = prompt.tokens
        with self._lease(prompt_tokens, cancel) as llm:
            if llm is None:
                return
            tokens = list(prompt_tokens)
            banned: Sequence[int] = ()
            if branch is not None:
                chosen = list(gate(_one_step(self._thread.run, self._choose, llm, tokens, branch)))
                if not chosen:  # cancelled while waiting
                    return
                grammar, banned = chosen[0]
            yield from self._generate(llm, tokens, sampling, cancel, grammar, banned, gate)

    def _choose(
        self, llm: Any, prompt_tokens: list[int], branch: GrammarBranch
    ) -> tuple[Grammar | None, Sequence[int]]:
        """The branch's grammar, or its ``otherwise`` and the first tokens it may not take."""
        opener_ids = self.opener_tokens(branch.opener)
        if branch.bias == -math.inf or opener_ids.size == 0:
            return branch.otherwise, opener_ids.tolist()
        # Evaluate the prompt now (reusing the cached prefix, as generate() would):
        # generate() then finds it fully cached and samples at once.
        keep = min(_shared_prefix(llm, prompt_tokens), len(prompt_tokens) - 1)
        llm.n_tokens = keep
        llm.eval(prompt_tokens[keep:])
        logprobs = last_logprobs(llm)
        opener = float(np.logaddexp.reduce(logprobs[opener_ids]))
        if opener + branch.bias >= float(logprobs.max()):
            return branch.grammar, ()
        return branch.otherwise, opener_ids.tolist()

    def _generate(
        self,
        llm: Any,
        prompt_tokens: list[int],
        sampling: SamplingParams,
        cancel: threading.Event,
        grammar: Grammar | None,
        banned_first: Sequence[int] = (),
        gate: StepGate = ungated,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        import llama_cpp
        from llama_cpp import LlamaGrammar

        banned = [self.joining_tokens(*pair) for pair in grammar.unjoined] if grammar else []

        room = self.context_window_tokens - len(prompt_tokens)
        limit = min(room, sampling.max_output_tokens or room)
        if limit <= 0:
            yield GenerationEnd("length", 0)
            return
        llm.set_seed(sampling.seed if sampling.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        generated = llm.generate(
            prompt_tokens,
            **sampler_args(sampling),
            logits_processor=bias_processor(
                sampling.logit_bias,
                banned_first=banned_first,
                banned=np.concatenate(banned).tolist() if banned else (),
            ),
            grammar=LlamaGrammar.from_string(grammar.text) if grammar is not None else None,
        )
        steps = self._thread.steps(generated)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(sampling.stop if grammar is None or grammar.stoppable else ())
        pending: list[TokenLogprob] = []
        reason: Literal["stop", "length"] = "length"
        n_tokens = 0
        try:
            for token in gate(steps):
                if cancel.is_set():
                    return
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                n_tokens += 1
                if sampling.logprobs:
                    pending.append(token_logprob(llm, token, sampling.top_logprobs))
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
            steps.close()
        tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
        if tail:
            yield TokenPiece(tail, tuple(pending))
        yield GenerationEnd(reason, n_tokens)


def _one_step(work: Callable[..., Any], *args: Any) -> Iterator[Any]:
    """An iterator whose one ``next()`` does ``work``: a step for a ``StepGate``."""
    yield work(*args)


def _shared_prefix(llm: Any, tokens: Sequence[int]) -> int:
    """How many leading ``tokens`` the model's KV cache already holds."""
    cached = llm.input_ids[: llm.n_tokens]
    n = min(len(cached), len(tokens))
    if n == 0:
        return 0
    differ = np.flatnonzero(cached[:n] != np.asarray(tokens[:n]))
    return int(differ[0]) if differ.size else n


class SharedModel:
    """One llama.cpp model for several ``Llama`` objects, freed once, after all of them.

    ``Llama`` loads its model through ``llama_cpp._internals.LlamaModel``; while
    ``lent()`` is active, that name gives the first caller a freshly loaded model
    and every later one the same model. Each ``Llama`` holds a ``_ModelHandle``
    whose ``close`` does nothing, so closing one instance frees only its context;
    ``close()`` frees the model itself (and the garbage collector does, once no
    instance is left).
    """

    def __init__(self) -> None:
        self._model: Any = None

    @contextlib.contextmanager
    def lent(self) -> Iterator[None]:
        import llama_cpp._internals as internals

        load = internals.LlamaModel

        def shared(**kwargs: Any) -> _ModelHandle:
            if self._model is None:
                self._model = load(**kwargs)
            return _ModelHandle(self._model)

        internals.LlamaModel = shared  # type: ignore[misc,assignment]
        try:
            yield
        finally:
            internals.LlamaModel = load  # type: ignore[misc]

    def close(self) -> None:
        if self._model is not None:
            self._model.close()


class _ModelHandle:
    """A ``Llama`` object's view of a shared model: everything but ``close``."""

    def __init__(self, model: Any) -> None:
        self._shared = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shared, name)

    def close(self) -> None:
        pass


def _warm_up(llm: Any) -> None:
    """One short generation, so that the first request does not pay for buffer set-up."""
    for _ in llm.generate(llm.tokenize(b"Hi", add_bos=True), temp=0.0):
        break
    llm.reset()


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
