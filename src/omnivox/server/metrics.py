"""What ``GET /metrics`` shows, in Prometheus' text format, one registry per app.

Every request is counted by the headers middleware once its answer is over:
``omnivox_requests_total{route,model,status}`` and
``omnivox_request_duration_seconds{route}`` (until the answer's last byte, a
stream's included). ``route`` is the template of the route that served it
(``/v1/models/{model_id}``), or "other" for a path no route has; ``model`` the name
the request's body asked for when it is one the catalog serves, "other" when it
is not, "" when the request named none; ``status`` the answer's, or 499 when the
client left before any answer. Labels therefore take a bounded set of values, and
each (route, model, status) finds its series in a dict after the first time.

A response sent without a length (a stream of events or audio) counts in
``omnivox_active_streams`` while it is sent. A streamed chat completion reports
``omnivox_chat_time_to_first_token_seconds`` (its first words or tool call) and
``omnivox_chat_time_to_first_audio_seconds`` (its first sound), from the
request's start to the moment serving hands that event over to be sent.

Upstream servers (``omnivox.metrics.record_upstream``) are counted in
``omnivox_upstream_requests_total{part,upstream,outcome}`` and timed in
``omnivox_upstream_seconds{part}``. An engine with a ``metrics()`` method
(``Mapping[str, float]``) is read at each scrape: each name ``x`` becomes
``omnivox_engine_x``, a counter when it ends in ``_total``, else a gauge; an engine
without one reports nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import Scope

from omnivox.serving.outputs import ChoiceAudio, ChoiceText, ChoiceToolCall, OutputEvent

log = logging.getLogger("omnivox.server")

MEDIA_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
LEFT_STATUS = 499  # the client left before any answer (as nginx logs it)
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
FIRST_OUTPUT_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
_METRIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CONVERTER = re.compile(r":\w+}")  # ``{model_id:path}`` -> ``{model_id}``


class ServerMetrics:
    def __init__(self, served_models: Iterable[str], engine: object = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter(
            "omnivox_requests",
            "HTTP requests answered, by route template, model asked for and status.",
            ("route", "model", "status"),
            registry=registry,
        )
        self._request_seconds = Histogram(
            "omnivox_request_duration_seconds",
            "Seconds from a request's arrival to its answer's last byte, by route template.",
            ("route",),
            buckets=REQUEST_BUCKETS_S,
            registry=registry,
        )
        self._first_token = Histogram(
            "omnivox_chat_time_to_first_token_seconds",
            "Seconds from a streamed chat completion's arrival to its first words or tool call.",
            buckets=FIRST_OUTPUT_BUCKETS_S,
            registry=registry,
        )
        self._first_audio = Histogram(
            "omnivox_chat_time_to_first_audio_seconds",
            "Seconds from a streamed chat completion's arrival to its first sound.",
            buckets=FIRST_OUTPUT_BUCKETS_S,
            registry=registry,
        )
        self.active_streams = Gauge(
            "omnivox_active_streams",
            "Responses being streamed now (sent without a length).",
            registry=registry,
        )
        self._upstream_requests = Counter(
            "omnivox_upstream_requests",
            "Calls to upstream servers, by part of the work, upstream and outcome.",
            ("part", "upstream", "outcome"),
            registry=registry,
        )
        self._upstream_seconds = Histogram(
            "omnivox_upstream_seconds",
            "Seconds a call to an upstream server took, by part of the work.",
            ("part",),
            buckets=REQUEST_BUCKETS_S,
            registry=registry,
        )
        registry.register(EngineCollector(engine))
        self._models = {name: name for name in served_models} | {"": ""}
        self._paths: dict[str, str] = {}  # a route's exact path -> its label
        self._templates: dict[str, str] = {}  # a route's template with parameters -> its label
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._upstream_series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def add_routes(self, paths: Iterable[str]) -> None:
        """The paths of the app's routes, whose templates are the ``route`` labels."""
        for path in paths:
            if "{" in path:
                self._templates[path] = _CONVERTER.sub("}", path)
            else:
                self._paths[path] = path

    def request_done(self, scope: Scope, status: int, seconds: float) -> None:
        """Count one answered request (``status`` 0: none was sent)."""
        route = self._paths.get(scope["path"])
        if route is None:
            served_by = scope.get("route")
            route = self._templates.get(getattr(served_by, "path", ""), OTHER)
        model = self._models.get(scope["state"].get("model", ""), OTHER)
        key = (route, model, status or LEFT_STATUS)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self._requests.labels(route, model, str(key[2])),
                self._request_seconds.labels(route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def upstream(self, part: str, upstream: str, outcome: str, seconds: float) -> None:
        """An ``omnivox.metrics`` sink: one call to an upstream server."""
        key = (part, upstream, outcome)
        series = self._upstream_series.get(key)
        if series is None:
            series = self._upstream_series[key] = (
                self._upstream_requests.labels(part, upstream, outcome),
                self._upstream_seconds.labels(part),
            )
        series[0].inc()
        series[1].observe(seconds)

    async def timed_outputs(
        self, events: AsyncIterator[OutputEvent], started_ns: int
    ) -> AsyncIterator[OutputEvent]:
        """``events`` unchanged, the first words and the first sound timed from
        ``started_ns`` (``time.perf_counter_ns``); closing this closes ``events``."""
        token = audio = False
        try:
            async for event in events:
                if not token and (
                    (isinstance(event, ChoiceText) and event.text)
                    or isinstance(event, ChoiceToolCall)
                ):
                    token = True
                    self._first_token.observe((time.perf_counter_ns() - started_ns) / 1e9)
                elif not audio and isinstance(event, ChoiceAudio) and event.pcm_s16le:
                    audio = True
                    self._first_audio.observe((time.perf_counter_ns() - started_ns) / 1e9)
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def render(self) -> bytes:
        return _generate_latest(self.registry)


class EngineCollector:
    """What the engine's optional ``metrics()`` says, read at each scrape."""

    def __init__(self, engine: object) -> None:
        self._engine = engine

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the names are the engine's

    def collect(self) -> Iterator[Metric]:
        read = getattr(self._engine, "metrics", None)
        if read is None:
            return
        try:
            values: Mapping[str, float] = read()
        except Exception:  # a scrape still shows the server's own metrics
            log.exception("the engine's metrics() failed")
            return
        for name, value in values.items():
            if not _METRIC_NAME.fullmatch(name):
                continue
            documentation = f"{name}, as the engine reports it."
            if name.endswith("_total"):
                yield CounterMetricFamily(
                    f"omnivox_engine_{name.removesuffix('_total')}", documentation, value=value
                )
            else:
                yield GaugeMetricFamily(f"omnivox_engine_{name}", documentation, value=value)
