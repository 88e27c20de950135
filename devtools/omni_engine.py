"""The omni engine with what a test or a benchmark fixes in advance.

``ControlledOmniEngine`` is ``OmniEngine`` with three of its protected steps overridden
and one question answered that the product never asks:

- ``limits``: how long every answer may speak, instead of the family's limits (the tiny
  models' talkers never end by themselves, so the tests fix their speech's length);
- ``forced_lengths``: every answer has exactly this many (text tokens, speech frames),
  ends of text and speech suppressed, so that benchmark runs compare whatever the
  weights;
- ``loader``: builds the checkpoint instead of loading ``settings.model`` from disk or
  the hub (the benchmark builds a randomly initialised full-size model in memory);
- ``graphed_functions()``: the work the engine replays from CUDA graphs, whose captures
  and replays the benchmark reports.
"""

from __future__ import annotations

from collections.abc import Callable

from omnivox.engines.base import PreparedGeneration
from omnivox.engines.omni.conversation import Conversation, Sink
from omnivox.engines.omni.engine import OmniEngine
from omnivox.engines.omni.graphs import GraphedFunction
from omnivox.engines.omni.loading import Checkpoint, Family
from omnivox.engines.omni.scheduler import SpeechLimits
from omnivox.settings import Settings


class ControlledOmniEngine(OmniEngine):
    def __init__(
        self,
        settings: Settings,
        *,
        limits: SpeechLimits | None = None,
        forced_lengths: tuple[int, int] | None = None,
        loader: Callable[[Settings], Checkpoint] | None = None,
    ) -> None:
        super().__init__(settings)
        self.fixed_limits = limits
        self.forced_lengths = forced_lengths
        self.loader = loader

    def _load_checkpoint(self) -> Checkpoint:
        if self.loader is None:
            return super()._load_checkpoint()
        return self.loader(self.settings)

    def _speech_limits(self, family: Family) -> SpeechLimits:
        return self.fixed_limits or super()._speech_limits(family)

    def _conversation(self, prepared: PreparedGeneration, sink: Sink) -> Conversation:
        conversation = super()._conversation(prepared, sink)
        if self.forced_lengths is not None:
            conversation.forced_tokens, conversation.forced_codes = self.forced_lengths
        return conversation

    def graphed_functions(self) -> list[GraphedFunction]:
        """The work this engine replays from CUDA graphs (disabled ones too)."""
        graphed: list[GraphedFunction] = []
        t2w = getattr(self._vocoder, "t2w", None)
        if t2w is not None:
            graphed.extend(t2w.solvers())
        networks = self._scheduler.networks if self._scheduler is not None else None
        predictor = getattr(networks, "residual_codes", None)
        if predictor is not None:
            graphed.append(predictor)
        return graphed
