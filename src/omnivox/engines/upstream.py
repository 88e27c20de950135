"""Servers that do a part of the model work elsewhere: chosen, retried, watched.

An ``UpstreamPool`` holds the base URLs (``http(s)://HOST/v1``) given for one part
(the chat model, the recogniser, the voice). Each request goes to the healthy
upstream with the fewest requests in flight (ties: the one least recently
chosen). An upstream that can not be reached, or says it can not serve now (502,
503, 504), is taken out of rotation and the request is tried on the next; a
watcher thread asks each one out of rotation for ``GET /models`` every
``RECHECK_S`` and puts it back once it answers. When none is left the request
fails with 503 ``upstream_unavailable`` (the reasons, with the URLs, go to the
log, not to the client). An upstream that is slow to answer, or fails this one
request (500), stays in rotation: the request fails with 502 ``upstream_error``.
An upstream's refusal of the client's request (400, 413, 422) is the client's
400; one of the server's own configuration (401, 403, 404: a wrong key, model or
URL) is a 502. A failure after the answer has begun is the caller's to report (the
bytes already sent can not be taken back).

The pool is synchronous (``httpx.Client``): the engines call it from their
worker threads. Nothing here knows what the upstream computes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from omnivox.errors import InvalidRequestError, UpstreamError, UpstreamUnavailableError
from omnivox.metrics import record_upstream

log = logging.getLogger("omnivox.upstream")
# httpx logs every request at info: the upstreams' calls are counted in /metrics instead.
logging.getLogger("httpx").setLevel(logging.WARNING)

RECHECK_S = 2.0  # how often an upstream out of rotation is asked whether it is back
CHECK_TIMEOUT_S = 2.0
RETRYABLE_STATUSES = frozenset({502, 503, 504})  # the upstream can not serve now: try another
OPERATOR_STATUSES = frozenset({401, 403, 404, 405})  # a wrong key, model or URL in the settings


def is_url(spec: str) -> bool:
    """Whether a model setting names upstream servers rather than a model."""
    return spec.startswith(("http://", "https://"))


def split_urls(spec: str) -> list[str]:
    """``http://a/v1,http://b/v1`` -> the base URLs, without trailing slashes."""
    return [url.strip().rstrip("/") for url in spec.split(",") if url.strip()]


@dataclass
class Upstream:
    url: str
    host: str = ""  # host:port, the label it is reported under (never the whole URL)
    healthy: bool = True
    in_flight: int = 0
    chosen_at: int = 0  # a tick of the pool's counter: the least recent goes first on a tie
    last_error: str = ""


class UpstreamPool:
    """``part`` names the work in messages ("chat model", "recogniser", "voice")."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        part: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        import httpx

        if not urls:
            raise ValueError("an upstream pool needs at least one URL")
        self.part = part
        self.upstreams = [Upstream(url, _host(url)) for url in urls]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Connecting and waiting for the answer to begin are bounded; reading a long
        # streamed answer is not (a reading may last minutes), only each pause in it.
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, read=timeout_s),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._lock = threading.Lock()
        self._ticks = itertools.count(1)
        self._closed = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, name=f"omnivox-upstream-{part}", daemon=True
        )
        self._watcher.start()

    # -- choosing ---------------------------------------------------------------------

    def _pick(self, tried: set[str]) -> Upstream:
        with self._lock:
            candidates = [u for u in self.upstreams if u.healthy and u.url not in tried]
            if not candidates:
                raise self._unavailable()
            chosen = min(candidates, key=lambda u: (u.in_flight, u.chosen_at))
            chosen.in_flight += 1
            chosen.chosen_at = next(self._ticks)
            return chosen

    def _release(self, upstream: Upstream) -> None:
        with self._lock:
            upstream.in_flight -= 1

    def _fail(self, upstream: Upstream, why: str) -> None:
        with self._lock:
            was_healthy, upstream.healthy = upstream.healthy, False
            upstream.last_error = why
        if was_healthy:
            log.warning("%s upstream %s is out of rotation: %s", self.part, upstream.url, why)

    def _unavailable(self) -> UpstreamUnavailableError:
        reasons = "; ".join(f"{u.url}: {u.last_error or 'unhealthy'}" for u in self.upstreams)
        log.warning("no %s upstream can serve: %s", self.part, reasons)
        return UpstreamUnavailableError(
            f"The {self.part} is unavailable: none of its upstream servers is answering. "
            "Try again later."
        )

    # -- requests ---------------------------------------------------------------------

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[Any]:
        """An ``httpx.Response`` whose body has not been read yet, from the first upstream
        that answers without a server error; it counts as in flight until the block ends.
        A 4xx answer raises ``InvalidRequestError`` with the upstream's message."""
        import httpx

        tried: set[str] = set()
        while True:
            upstream = self._pick(tried)
            tried.add(upstream.url)
            started_s = time.perf_counter()
            try:
                request = self._client.build_request(method, upstream.url + path, **kwargs)
                response = self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                self._release(upstream)
                self._fail(upstream, f"{type(exc).__name__}: {exc}")
                self._record(upstream, "unreachable", started_s)
                continue
            except httpx.HTTPError as exc:  # reached, but slow or broken for this request
                self._release(upstream)
                self._record(upstream, "timeout", started_s)
                log.warning(
                    "%s upstream %s: %s: %s", self.part, upstream.url, type(exc).__name__, exc
                )
                raise UpstreamError(
                    f"The {self.part}'s upstream server did not answer in time "
                    f"({type(exc).__name__})."
                ) from exc
            if response.status_code in RETRYABLE_STATUSES:
                response.read()
                response.close()
                self._release(upstream)
                self._fail(upstream, f"answered {response.status_code}")
                self._record(upstream, "unavailable", started_s)
                continue
            outcome = "error"
            try:
                if response.status_code >= 400:
                    response.read()
                    outcome = "refused"
                    raise _refusal(self.part, upstream.url, response)
                log.debug(
                    "%s upstream %s answered in %.3f s",
                    self.part,
                    upstream.url,
                    time.perf_counter() - started_s,
                )
                yield response
                outcome = "ok"
            except httpx.HTTPError as exc:  # the answer broke off after it began
                log.warning("%s upstream %s broke off: %s", self.part, upstream.url, exc)
                raise UpstreamError(
                    f"The {self.part}'s upstream server failed while answering "
                    f"({type(exc).__name__})."
                ) from exc
            finally:
                response.close()
                self._release(upstream)
                self._record(upstream, outcome, started_s)
            return

    def _record(self, upstream: Upstream, outcome: str, started_s: float) -> None:
        record_upstream(self.part, upstream.host, outcome, time.perf_counter() - started_s)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A whole ``httpx.Response`` (read), chosen and retried as ``stream`` does."""
        with self.stream(method, path, **kwargs) as response:
            response.read()
            return response

    # -- health -----------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """Each upstream's URL, whether it is in rotation, and its requests in flight."""
        with self._lock:
            return [
                {"url": u.url, "healthy": u.healthy, "in_flight": u.in_flight}
                for u in self.upstreams
            ]

    def available(self) -> bool:
        with self._lock:
            return any(u.healthy for u in self.upstreams)

    def check_all(self) -> None:
        """Ask every upstream now (at start): each that does not answer leaves rotation."""
        for upstream in self.upstreams:
            if not self._answers(upstream):
                self._fail(upstream, upstream.last_error or "no answer to GET /models")

    def _answers(self, upstream: Upstream) -> bool:
        import httpx

        try:
            response = self._client.get(upstream.url + "/models", timeout=CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 500:
                return True
            why = f"answered {response.status_code}"
        with self._lock:
            upstream.last_error = why
        return False

    def _watch(self) -> None:
        while not self._closed.wait(RECHECK_S):
            for upstream in self.upstreams:
                if upstream.healthy or self._closed.is_set():
                    continue
                if self._answers(upstream):
                    with self._lock:
                        upstream.healthy = True
                        upstream.last_error = ""
                    log.warning("%s upstream %s is back in rotation", self.part, upstream.url)

    def close(self) -> None:
        self._closed.set()
        self._watcher.join(timeout=CHECK_TIMEOUT_S + 1)
        self._client.close()


def _host(url: str) -> str:
    """``http://gpu1:8001/v1`` -> ``gpu1:8001``."""
    return url.split("://", 1)[-1].split("/", 1)[0]


def _refusal(part: str, url: str, response: Any) -> InvalidRequestError | UpstreamError:
    """An upstream's 4xx or 500: the client's mistake (400, in the upstream's words) or
    the server's (502: its configuration, or the upstream's own failure)."""
    message = ""
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else {}
        raw = error.get("message") if isinstance(error, dict) else None
        message = raw if isinstance(raw, str) else str(body.get("detail", ""))
    except ValueError:
        message = response.text[:500]
    status = response.status_code
    if status in OPERATOR_STATUSES or status >= 500:
        log.error("%s upstream %s answered %s: %s", part, url, status, message)
        return UpstreamError(
            f"The {part}'s upstream server could not serve the request ({status}); "
            "the server's operator can see why in its log."
        )
    return InvalidRequestError(
        f"The {part}'s upstream server refused the request ({status}): "
        f"{message or 'no reason given'}"
    )
