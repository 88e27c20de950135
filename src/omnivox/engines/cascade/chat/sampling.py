"""OpenAI's sampling parameters in llama.cpp's terms, and logprobs of generated tokens.

- temperature and top_p as given (0 is greedy); llama.cpp's own top_k, min_p
  and typical_p are switched off, since OpenAI's API has no such knobs;
- presence and frequency penalties as given, plus ``REPEAT_PENALTY``: not an
  OpenAI parameter, but llama.cpp's classic mild penalty on tokens repeated in
  the last 64, without which small chat models loop;
- logit_bias is added to the logits by a logits processor, which can also
  forbid some tokens everywhere (tokens that would join two tool calls) or at
  the first position only (an answer that must not begin like a tool call).

Logprobs come from the last logits of the context (no ``logits_all``, which
would cost n_ctx x n_vocab floats): the model's raw distribution, before
penalties and biases. This module knows nothing of prompts or pools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from omnivox.engines.base import SamplingParams
from omnivox.engines.events import TokenLogprob

REPEAT_PENALTY = 1.1


def sampler_args(sampling: SamplingParams) -> dict[str, Any]:
    """OpenAI's sampling: temperature and top_p (llama.cpp's top_k and min_p off)."""
    return {
        "temp": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": REPEAT_PENALTY,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    }


def bias_processor(
    logit_bias: Mapping[int, float],
    *,
    banned_first: Sequence[int] = (),
    banned: Sequence[int] = (),
) -> Any:
    """A logits processor adding ``logit_bias``, banning ``banned`` tokens at every
    position and ``banned_first`` at the first; None when there is nothing to do.

    OpenAI's -100 and 100 are added as they are: with logits of a few tens,
    -100 bans a token and 100 all but forces it, as OpenAI documents.
    """
    if not logit_bias and not len(banned_first) and not len(banned):
        return None
    from llama_cpp import LogitsProcessorList

    ids = np.fromiter(logit_bias.keys(), dtype=np.intp, count=len(logit_bias))
    biases = np.fromiter(logit_bias.values(), dtype=np.float32, count=len(logit_bias))
    first = np.asarray(banned_first, dtype=np.intp)
    always = np.asarray(banned, dtype=np.intp)
    calls = 0

    def add_bias(_input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        nonlocal calls
        valid = (ids >= 0) & (ids < scores.shape[0])
        scores[ids[valid]] += biases[valid]
        if calls == 0 and first.size:
            scores[first] = -np.inf
        if always.size:
            scores[always] = -np.inf
        calls += 1
        return scores

    return LogitsProcessorList([add_bias])


def last_logprobs(llm: Any) -> np.ndarray:
    """Log-probabilities of the next token after what the model evaluated last."""
    import llama_cpp

    n_vocab = llm.n_vocab()
    raw = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    logits = raw.astype(np.float64)
    peak = logits.max()
    return logits - (peak + np.log(np.exp(logits - peak).sum()))


def token_logprob(llm: Any, token: int, n_top: int) -> TokenLogprob:
    logprobs = last_logprobs(llm)
    top: tuple[tuple[str, float], ...] = ()
    if n_top > 0:
        best = np.argpartition(-logprobs, n_top - 1)[:n_top]
        best = best[np.argsort(-logprobs[best])]
        top = tuple((_token_text(llm, int(i)), float(logprobs[i])) for i in best)
    return TokenLogprob(_token_text(llm, token), float(logprobs[token]), top)


def _token_text(llm: Any, token: int) -> str:
    return str(llm.detokenize([token]).decode("utf-8", errors="replace"))
