"""Replay fixed-shape loops of small kernels from CUDA graphs.

A decode step of these models launches thousands of small kernels from Python
(Qwen2.5-Omni's DiT solves each window in 36 evaluations of 22 blocks;
Qwen3-Omni's code predictor runs 15 steps of 5 layers for every frame), and on
a GPU the time goes to launching, not computing (docs/performance.md). A CUDA
graph records the launches once and replays them as one.

``GraphedFunction`` wraps a function of tensors whose work depends only on the
shapes of its arguments. The first call with a shape runs eagerly, the second
captures a graph, later calls copy their arguments in and replay; shapes seen
once are never captured, a shape whose capture fails runs eagerly from then on
(logged once), and off CUDA it always runs eagerly. Captures use
``thread_local`` error mode, so the other engine thread may go on launching
meanwhile; every graph has its own memory pool, and each wrapped function
belongs to one engine thread, so replays are from one thread at a time.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MAX_GRAPHS = 32  # per wrapped function; the least recently replayed one goes first

_FAILED = object()


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[Any]  # static argument tensors (None where the argument is None)
    output: Any  # a tensor or a tuple of tensors, written by each replay


def _shape_key(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(None if a is None else (tuple(a.shape), a.dtype, a.device) for a in args)


class GraphedFunction:
    """``function(*tensors)`` replayed from one CUDA graph per argument shape."""

    def __init__(self, function: Callable[..., Any], name: str, *, enabled: bool) -> None:
        self.function = function
        self.name = name
        self.enabled = enabled
        self._seen: set[tuple[Any, ...]] = set()
        self._graphs: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.replays = 0
        self.captures = 0

    def __call__(self, *args: Any) -> Any:
        if not self.enabled:
            return self.function(*args)
        key = _shape_key(args)
        entry = self._graphs.get(key)
        if entry is None:
            if key not in self._seen:
                self._seen.add(key)
                return self.function(*args)
            entry = self._capture(key, args)
        if entry is _FAILED:
            return self.function(*args)
        self._graphs.move_to_end(key)
        for static, arg in zip(entry.inputs, args, strict=True):
            if static is not None:
                static.copy_(arg)
        entry.graph.replay()
        self.replays += 1
        if isinstance(entry.output, tuple):
            return tuple(t.clone() for t in entry.output)
        return entry.output.clone()

    def _capture(self, key: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        import torch

        inputs = [None if a is None else a.clone() for a in args]
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = self.function(*inputs)
        except Exception:
            logger.warning(
                "%s: a CUDA graph could not be captured for shapes %s; it runs eagerly",
                self.name,
                key,
                exc_info=True,
            )
            self._graphs[key] = _FAILED
            return _FAILED
        self.captures += 1
        entry = _Graph(graph, inputs, output)
        self._graphs[key] = entry
        while len(self._graphs) > MAX_GRAPHS:
            self._graphs.popitem(last=False)
        return entry
