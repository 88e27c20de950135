"""OpenAI's sampling parameters in llama.cpp's terms, and logprobs of generated tokens.

- temperature and top_p as given (0 is greedy); llama.cpp's own top_k, min_p
  and typical_p are switched off, since OpenAI's API has no such knobs;
- presence and frequency penalties as given, plus ``REPEAT_PENALTY``: not an
  OpenAI parameter, but llama.cpp's classic mild penalty on tokens repeated in
  the last 64, without which small chat models loop;
- logit_bias is added to the logits by a logits processor.

Logprobs come from the last logits of the context (no ``logits_all``, which
would cost n_ctx x n_vocab floats): the model's raw distribution, before
penalties and biases. This module knows nothing of prompts or pools.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def bias_processor(logit_bias: Mapping[int, float]) -> Any:
    if not logit_bias:
        return None
    from llama_cpp import LogitsProcessorList

    ids = np.fromiter(logit_bias.keys(), dtype=np.intp)
    biases = np.fromiter(logit_bias.values(), dtype=np.float32)

    def add_bias(_input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        valid = (ids >= 0) & (ids < scores.shape[0])
        scores[ids[valid]] += biases[valid]
        return scores

    return LogitsProcessorList([add_bias])


def token_logprob(llm: Any, token: int, n_top: int) -> TokenLogprob:
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
