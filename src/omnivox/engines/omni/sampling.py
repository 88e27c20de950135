"""Choose the next token of every row of a batched step, and turn text tokens into text.

``TextSampler`` (one per conversation) applies the client's sampling
parameters to a thinker row: logit_bias, presence and frequency penalties,
temperature (0 is greedy), top_p, and a seeded ``torch.Generator`` of its own,
so a seed reproduces a conversation whatever else shares the batch. Logprobs
are read from the raw distribution, before biases and penalties.

``CodeSampler`` does the same for a talker row with the settings of the
model family (``CodeSampling``: transformers' ``generate`` uses top_k 40,
top_p 0.8, temperature 0.9 and a repetition penalty of 1.05 over the codes so
far for Qwen2.5-Omni; top_k 50, top_p 1.0, temperature 0.9 and 1.05 for
Qwen3-Omni), and allows only real speech codes and the end-of-speech codes:
the codec vocabulary's other specials (start, mask, padding slots) have no
waveform and end a random-weight model's run with an index error otherwise.
The talker's rows are filtered together; only the random draws are per row.
``choose_residuals`` draws the rest of a Qwen3-Omni frame (one code per
residual codebook) from the distribution its code predictor's ``generate``
draws from (top_k 50, top_p 0.8, no penalty), by the Gumbel-max trick over
noise made beforehand from each row's own generator (``gumbel_noise``), so
that a whole frame can be replayed from a CUDA graph.

``Detokenizer`` yields text as soon as it is whole: a token that ends inside
a UTF-8 character waits for the next one.

This module knows nothing of batches or caches; it gets logits, returns ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omnivox.engines.base import SamplingParams
from omnivox.engines.events import TokenLogprob

GREEDY_BELOW = 1e-5
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class CodeSampling:
    """How a family's ``generate`` draws speech codes (all rows alike)."""

    top_k: int
    top_p: float
    temperature: float
    repetition_penalty: float = 1.0


QWEN2_5_TALKER = CodeSampling(top_k=40, top_p=0.8, temperature=0.9, repetition_penalty=1.05)
QWEN3_TALKER = CodeSampling(top_k=50, top_p=1.0, temperature=0.9, repetition_penalty=1.05)
QWEN3_RESIDUALS = CodeSampling(top_k=50, top_p=0.8, temperature=1.0)


def make_generator(device: Any, seed: int | None) -> Any:
    import torch

    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _top_p_filter(logits: Any, top_p: float) -> Any:
    """``logits`` with the tokens outside the ``top_p`` nucleus set to -inf (last dim)."""
    import torch

    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    outside = cumulative - torch.softmax(sorted_logits, dim=-1) > top_p
    sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


@dataclass
class TextSampler:
    params: SamplingParams
    generator: Any
    counts: Counter[int] = field(default_factory=Counter)

    def choose(self, logits: Any) -> Any:
        """The next token (a 0-d tensor on the logits' device) from one row of logits."""
        import torch

        params = self.params
        row = logits.float()
        if params.logit_bias:
            ids = torch.tensor(list(params.logit_bias), device=row.device, dtype=torch.long)
            bias = torch.tensor(list(params.logit_bias.values()), device=row.device)
            row = row.index_add(0, ids.clamp(0, row.shape[0] - 1), bias.to(row.dtype))
        if self.counts and (params.presence_penalty or params.frequency_penalty):
            ids = torch.tensor(list(self.counts), device=row.device, dtype=torch.long)
            seen = torch.tensor(list(self.counts.values()), device=row.device, dtype=row.dtype)
            penalty = seen * params.frequency_penalty + params.presence_penalty
            row = row.index_add(0, ids, -penalty)
        if params.temperature < GREEDY_BELOW:
            return torch.argmax(row)
        row = _top_p_filter(row / params.temperature, params.top_p)
        probs = torch.softmax(row, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator)[0]

    def record(self, token: int) -> None:
        self.counts[token] += 1

    def logprobs(self, logits: Any, token: int, token_text: Any) -> TokenLogprob:
        """The raw log-probability of ``token`` and of the most likely alternatives."""
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        top: tuple[tuple[str, float], ...] = ()
        k = min(self.params.top_logprobs, MAX_TOP_LOGPROBS)
        if k > 0:
            values, ids = torch.topk(logp, k)
            top = tuple(
                (token_text(i), float(v))
                for i, v in zip(ids.tolist(), values.tolist(), strict=True)
            )
        return TokenLogprob(token_text(token), float(logp[token]), top)


@dataclass
class CodeSampler:
    generator: Any
    seen: Any  # bool [vocab] on the device: codes to penalise


def choose_codes(
    logits: Any, samplers: Sequence[CodeSampler], allowed: Any, sampling: CodeSampling
) -> Any:
    """The next speech code of each talker row (a [rows] long tensor on the device)."""
    import torch

    rows = logits.float().masked_fill(~allowed, float("-inf"))
    seen = torch.stack([s.seen for s in samplers])
    penalty = sampling.repetition_penalty
    penalised = torch.where(rows > 0, rows / penalty, rows * penalty)
    rows = torch.where(seen, penalised, rows)
    codes = _draw(rows, sampling, [s.generator for s in samplers])
    for i, sampler in enumerate(samplers):
        sampler.seen[codes[i]] = True
    return codes


def gumbel_noise(generators: Sequence[Any], draws: int, vocab: int, device: Any) -> Any:
    """Gumbel noise [rows, draws, vocab], each row from its own generator.

    argmax(filtered logits + noise) is a draw from softmax(filtered logits): the same
    distribution as ``torch.multinomial``, with the randomness made before the
    arithmetic, so the arithmetic can be replayed from a CUDA graph.
    """
    import torch

    uniform = torch.stack(
        [torch.rand(draws, vocab, generator=g, device=device) for g in generators]
    )
    return -torch.log(-torch.log(uniform))


def choose_residuals(logits: Any, noise: Any, sampling: CodeSampling) -> Any:
    """One residual code per row (a [rows] long tensor) from ``logits`` [rows, codebook]
    and the rows' ``noise`` [rows, codebook] from ``gumbel_noise``."""
    import torch

    return torch.argmax(_filter(logits.float(), sampling) + noise, dim=-1)


def _filter(rows: Any, sampling: CodeSampling) -> Any:
    """Logits over temperature, with the tokens outside top_k and top_p at -inf."""
    import torch

    rows = rows / sampling.temperature
    k = min(sampling.top_k, rows.shape[-1])
    kth = torch.topk(rows, k, dim=-1).values[..., -1:]
    rows = rows.masked_fill(rows < kth, float("-inf"))
    return _top_p_filter(rows, sampling.top_p)


def _draw(rows: Any, sampling: CodeSampling, generators: Sequence[Any]) -> Any:
    import torch

    probs = torch.softmax(_filter(rows, sampling), dim=-1)
    draws = [
        torch.multinomial(probs[i], 1, generator=generator)
        for i, generator in enumerate(generators)
    ]
    return torch.cat(draws)


class Detokenizer:
    """Text of a growing list of token ids, handed out as it becomes whole."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token: int) -> str:
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix_offset : self._read_offset])
        after = self._decode(self._ids[self._prefix_offset :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """The text ended: whatever is still held back (a cut character shows as U+FFFD)."""
        before = self._decode(self._ids[self._prefix_offset : self._read_offset])
        after = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        text: str = self._tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return text
