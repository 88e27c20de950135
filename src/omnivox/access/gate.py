"""The one access collaborator of the server: who calls, may they start, what did it cost.

Per chat request the server calls, in order:

1. ``authenticate(authorization)`` before reading the body: the key, or the
   anonymous caller when no keys exist and the server may run open (bound to
   loopback); otherwise 401 in OpenAI's words.
2. ``admit(caller, model, ..., prompt_estimate, ...)`` before any work: checks
   the class is in the key's tier and that the requested output alone fits the
   TPM limit, then charges, in one step (one round trip to Redis), one request
   against RPM and RPD and the prompt estimate (``serving.usage.
   estimate_prompt_tokens``: from the request's characters and audio bytes)
   plus the maximum output against TPM. A refusal charges nothing. An
   admitted request's ledger row is written now, ``in_progress``, so a crash
   from here on still leaves it.
3. ``Admission.charge(run)`` once ``ChatService.start`` has counted the prompt
   exactly (text tokens from the engine's tokenizer, audio from decoded
   durations): a request whose exact prompt and maximum output exceed the TPM
   limit is refused as too large (and its tokens handed back); otherwise it
   registers the finalizer that corrects the admission's charge to the actual
   usage and gives the row its outcome before the answer's last byte, and the
   checkpoint that brings the row's tokens up to date while the answer is
   made. A request refused after admission keeps its request charge, as
   OpenAI counts unsuccessful requests against RPM.
4. ``Admission.refuse(exc)`` for any error after admission, and for a request
   that ends otherwise before its run does (the client left: ``CancelledError``;
   a bug: any other exception): adds the rate-limit headers to an
   ``OmnivoxError``, hands back the token charge of a request that never ran,
   and gives the row its outcome.

``start()`` closes the rows that servers killed mid-answer left in progress
(``Ledger.recover``); the server calls it as it starts, and the first request
that needs the ledger awaits it in any case, so it always runs before this
server begins a row of its own.

The maximum output is ``max_completion_tokens`` (or ``max_tokens``); without
either the charge is ``default_output_tokens`` of the limits file, or as much of
it as the minute has left (never less than the prompt estimate), so only what
the client asked for can make a request "too large". The estimate is capped at
the TPM limit: only the exact count makes a request too large.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol

from omnivox.access.headers import (
    go_duration,
    rate_limit_headers,
    rate_limit_states,
    retry_headers,
)
from omnivox.access.keys import ApiKey, KeyStore, bearer_token, mask_key
from omnivox.access.ledger import IN_PROGRESS, Ledger, LedgerEntry, UsageSummary
from omnivox.access.limiter import Decision, Limiter, Meter
from omnivox.access.tiers import AccessConfig, Limits, model_class
from omnivox.errors import (
    AuthenticationError,
    ModelNotFoundError,
    OmnivoxError,
    PermissionDeniedError,
    RateLimitError,
)

if TYPE_CHECKING:
    from omnivox.access.ledger import Status
    from omnivox.serving.runs import MeteredRun, Outcome

log = logging.getLogger("omnivox.access")

RATE_LIMITS_URL = "https://platform.openai.com/account/rate-limits"
MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). The server's operator "
    "creates keys with `omnivox keys create --name NAME`."
)
METER_WORDS = {
    "rpm": "requests per min (RPM)",
    "rpd": "requests per day (RPD)",
    "tpm": "tokens per min (TPM)",
}
METER_TYPE = {"rpm": "requests", "rpd": "requests", "tpm": "tokens"}
NO_TOKENS = (0, 0, 0, 0)


BATCH_PRICE_FACTOR = 0.5  # a batch's lines cost half, as OpenAI's do


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey | None  # None: served without a key

    @property
    def key_id(self) -> str:
        return self.key.key_id if self.key else ""

    @property
    def name(self) -> str:
        return self.key.name if self.key else "anonymous"


ANONYMOUS = Caller(None)


class Admission(Protocol):
    @property
    def headers(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers for the response (empty when no limit applies)."""

    def rate_limits(self) -> list[dict[str, float | int | str]]:
        """The same limits as a Realtime ``rate_limits.updated`` lists them."""
        ...

    async def charge(self, run: MeteredRun) -> None: ...

    async def refuse(self, exc: BaseException) -> None: ...


class AccessControl(Protocol):
    async def start(self) -> None:
        """Before serving: settle what an earlier server left unfinished."""

    def authenticate(self, authorization: str | None) -> Caller: ...

    def caller_of(self, key_id: str) -> Caller | None:
        """The caller a key's id stands for (work done later for it, such as a batch's
        lines); None when the key is gone or revoked. "" is the caller without a key."""

    async def admit(
        self,
        caller: Caller,
        model: str,
        snapshot: str,
        max_output: int | None,
        prompt_estimate: int,
        request_id: str,
        batch: bool = False,
    ) -> Admission:
        """``batch``: a line of a batch, outside the key's RPM and TPM (its batch queue
        limit was checked when the batch was made), priced at ``BATCH_PRICE_FACTOR``."""
        ...

    def batch_queue_limit(self, key_id: str, model: str) -> int | None:
        """The prompt tokens the key may have enqueued in unfinished batches of ``model``'s
        class; None: no limit."""

    async def refused(
        self, caller: Caller, model: str, snapshot: str, request_id: str, exc: OmnivoxError
    ) -> None:
        """A request refused before admission (a 400, a 404): its rate-limit headers as
        they stand (nothing is charged) go on ``exc``, and its ledger row is written."""

    async def usage(self, caller: Caller, since_s: float | None) -> UsageSummary: ...

    async def close(self) -> None: ...


class _Unmetered:
    """What ``OpenAccess`` admits: no headers, no charge, no record."""

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def rate_limits(self) -> list[dict[str, float | int | str]]:
        return []

    async def charge(self, run: MeteredRun) -> None:
        return None

    async def refuse(self, exc: BaseException) -> None:
        return None


class OpenAccess:
    """No keys, no limits, no ledger: ``create_app``'s default, for tests and embedding."""

    async def start(self) -> None:
        return None

    def authenticate(self, authorization: str | None) -> Caller:
        return ANONYMOUS

    def caller_of(self, key_id: str) -> Caller | None:
        return ANONYMOUS if key_id == "" else None

    async def admit(
        self,
        caller: Caller,
        model: str,
        snapshot: str,
        max_output: int | None,
        prompt_estimate: int,
        request_id: str,
        batch: bool = False,
    ) -> Admission:
        return _Unmetered()

    def batch_queue_limit(self, key_id: str, model: str) -> int | None:
        return None

    async def refused(
        self, caller: Caller, model: str, snapshot: str, request_id: str, exc: OmnivoxError
    ) -> None:
        return None

    async def usage(self, caller: Caller, since_s: float | None) -> UsageSummary:
        return UsageSummary(None, since_s)

    async def close(self) -> None:
        return None


class KeyedAccess:
    def __init__(
        self,
        keys: KeyStore,
        limiter: Limiter,
        ledger: Ledger,
        config: AccessConfig,
        *,
        open_without_keys: bool,
    ) -> None:
        self.keys = keys
        self.limiter = limiter
        self.ledger = ledger
        self.config = config
        self.open_without_keys = open_without_keys
        self._recovery: asyncio.Future[None] | None = None
        self._recovered = False

    async def start(self) -> None:
        if self._recovered:
            return
        if self._recovery is None:  # the first caller starts it; the others wait for it
            self._recovery = asyncio.ensure_future(self._recover())
        await asyncio.shield(self._recovery)

    async def _recover(self) -> None:
        try:
            closed = await self.ledger.recover()
        except Exception:  # never a reason not to serve: the rows stay in progress, counted
            log.exception("could not close the ledger rows an earlier server left open")
        else:
            if closed:
                log.warning(
                    "closed %d ledger rows left in progress (a server killed mid-answer?) "
                    "as failed",
                    closed,
                )
        self._recovered = True

    def authenticate(self, authorization: str | None) -> Caller:
        raw_key = bearer_token(authorization)
        key = self.keys.find(raw_key) if raw_key else None
        if key is not None:
            return Caller(key)
        if self.open_without_keys and not self.keys.has_keys():
            return ANONYMOUS
        if raw_key is None:
            raise AuthenticationError(MISSING_KEY_MESSAGE)
        raise AuthenticationError(
            f"Incorrect API key provided: {mask_key(raw_key)}. Ask the server's operator for "
            "a key (`omnivox keys create`).",
            code="invalid_api_key",
        )

    def caller_of(self, key_id: str) -> Caller | None:
        if key_id == "":
            return ANONYMOUS if self.open_without_keys and not self.keys.has_keys() else None
        for key in self.keys.list():
            if key.key_id == key_id:
                return Caller(key) if key.active else None
        return None

    async def admit(
        self,
        caller: Caller,
        model: str,
        snapshot: str,
        max_output: int | None,
        prompt_estimate: int,
        request_id: str,
        batch: bool = False,
    ) -> Admission:
        await self.start()
        cls = model_class(model)
        try:
            limits = self._limits(caller, model, cls)
        except OmnivoxError as exc:  # no access to the class (404), an unknown tier (403)
            await self.refused(caller, model, snapshot, request_id, exc)
            raise
        admission = KeyedAdmission(
            self, caller, model, snapshot, cls, None if batch else limits, request_id, batch
        )
        try:
            await admission.admit(max_output, prompt_estimate)
        except OmnivoxError as exc:  # over a limit, or too large: the row says so
            await admission.refuse(exc)
            raise
        return admission

    def batch_queue_limit(self, key_id: str, model: str) -> int | None:
        caller = self.caller_of(key_id)
        if caller is None or caller.key is None:
            return None
        limits = self.config.limits_for(caller.key.tier, model_class(model), caller.key.overrides)
        return 0 if limits is None else limits.batch_queue_tokens

    def _limits(self, caller: Caller, model: str, cls: str) -> Limits | None:
        """The caller's limits for the model's class; None when served without a key."""
        if caller.key is None:
            return None
        tier = caller.key.tier
        if tier not in self.config.tiers:
            raise PermissionDeniedError(
                f"Your API key's usage tier '{tier}' is not defined on this server, so it can "
                "not be served. Ask the server's operator to add it to the limits file "
                "(--limits-file) or to give the key another tier.",
                code="unknown_tier",
            )
        limits = self.config.limits_for(tier, cls, caller.key.overrides)
        if limits is None:
            raise ModelNotFoundError(
                f"The model `{model}` does not exist or you do not have access to it."
            )
        return limits

    async def refused(
        self, caller: Caller, model: str, snapshot: str, request_id: str, exc: OmnivoxError
    ) -> None:
        cls = model_class(model)
        try:
            limits = self._limits(caller, model, cls)
        except OmnivoxError:
            limits = None
        admission = KeyedAdmission(self, caller, model, snapshot, cls, limits, request_id)
        if not exc.headers:
            await admission.read_meters()
        await admission.refuse(exc)

    async def usage(self, caller: Caller, since_s: float | None) -> UsageSummary:
        """A key sees its own usage; the anonymous loopback caller sees everyone's."""
        await self.start()
        return await self.ledger.summarize(caller.key_id if caller.key else None, since_s)

    async def close(self) -> None:
        await self.limiter.close()
        await self.ledger.close()
        self.keys.close()


class KeyedAdmission:
    def __init__(
        self,
        access: KeyedAccess,
        caller: Caller,
        model: str,
        snapshot: str,
        model_cls: str,
        limits: Limits | None,
        request_id: str,
        batch: bool = False,
    ) -> None:
        self.access = access
        self.batch = batch
        self.caller = caller
        self.model = model
        self.snapshot = snapshot
        self.model_cls = model_cls
        self.limits = limits
        self.request_id = request_id
        self.bucket = _bucket(caller, model_cls)
        self._meters: tuple[Meter, ...] = ()
        self.max_output: int | None = None
        self.charged_tokens = 0
        self.settling = False  # the finalizer will correct the charge to actual usage
        self.recorded = False  # the row has its outcome
        self.created_s = time.time()
        self._started_ns = time.perf_counter_ns()

    @property
    def headers(self) -> dict[str, str]:
        """Formatted from the latest decision, only when asked (once per request)."""
        return rate_limit_headers(self._meters)

    def rate_limits(self) -> list[dict[str, float | int | str]]:
        return rate_limit_states(self._meters)

    async def admit(self, max_output: int | None, prompt_estimate: int) -> None:
        """One charge, before any work: a request, and the prompt estimate with the
        maximum output (without one, as much of the default output as the minute has
        left, down to the prompt estimate alone)."""
        self.max_output = max_output
        if self.limits is not None:
            await self._acquire(self.limits, max_output, prompt_estimate)
        await self.access.ledger.begin(self._entry(IN_PROGRESS, None, NO_TOKENS, 0.0))

    async def _acquire(self, limits: Limits, max_output: int | None, prompt_estimate: int) -> None:
        if max_output is not None and self._too_large(max_output):
            await self.read_meters()
            self._refuse_as_too_large(max_output)
        tpm = limits.tpm
        if max_output is not None:
            tokens = prompt_estimate + max_output
            least = None
        else:
            tokens = prompt_estimate + self.access.config.default_output_tokens
            least = prompt_estimate
        if tpm is not None:  # an estimate past the limit is not "too large": the count decides
            tokens = min(tokens, tpm)
            least = None if least is None else min(least, tpm)
        decision = await self.access.limiter.acquire(
            self.bucket, limits, 1, tokens, min_tokens=least
        )
        self._take(decision)
        self.charged_tokens = decision.tokens

    async def charge(self, run: MeteredRun) -> None:
        """The prompt is counted now: a request too large for the TPM limit is refused (its
        token charge handed back); any other difference is settled with the actual usage."""
        if self.limits is not None:
            total = run.usage.prompt_text_tokens + run.usage.prompt_audio_tokens
            total += self.max_output or 0
            if self._too_large(total):
                await run.finish("cancelled")  # it never started; other finalizers still run
                await self._hand_back()
                self._refuse_as_too_large(total)
        run.finalizers.append(self._settle)
        run.checkpoints.append(self._checkpoint)
        self.settling = True

    async def refuse(self, exc: BaseException) -> None:
        if not self.settling:  # refused before it ran
            await self._hand_back()
        if isinstance(exc, OmnivoxError):
            exc.headers = {**self.headers, **exc.headers}
        if self.recorded:
            return
        await self._record(_refusal_status(exc), None, NO_TOKENS, 0.0)

    async def read_meters(self) -> None:
        """The meters as they stand, charging nothing: for the headers of a refusal."""
        if self.limits is not None:
            self._take(await self.access.limiter.acquire(self.bucket, self.limits, 0, 0))

    async def _hand_back(self) -> None:
        """Give back the token charge of a request that will not run."""
        if not self.charged_tokens:
            return
        try:
            await self._correct(-self.charged_tokens)
        except OmnivoxError as error:
            log.warning("could not hand back the tokens of %s: %s", self.request_id, error)
            return
        back = self.charged_tokens
        self.charged_tokens = 0
        self._meters = tuple(
            Meter(m.name, m.limit, max(0.0, m.used - back)) if m.name == "tpm" else m
            for m in self._meters
        )

    def _too_large(self, tokens: int) -> bool:
        tpm = self.limits.tpm if self.limits else None
        return tpm is not None and tokens > tpm

    def _refuse_as_too_large(self, tokens: int) -> NoReturn:
        tpm = self.limits.tpm if self.limits else None
        raise RateLimitError(
            f"Request too large for {self.model} for key '{self.caller.name}' on "
            f"{METER_WORDS['tpm']}: Limit {tpm}, Requested {tokens}. The input or output "
            f"tokens must be reduced in order to run successfully. Visit {RATE_LIMITS_URL} "
            "to learn more.",
            limit_type="tokens",
            headers={**self.headers, "x-should-retry": "false"},
        )

    def _take(self, decision: Decision) -> None:
        self._meters = decision.meters
        meter = decision.refused_by
        if decision.admitted or meter is None:
            return
        raise RateLimitError(
            f"Rate limit reached for {self.model} for key '{self.caller.name}' on "
            f"{METER_WORDS[meter.name]}: Limit {meter.limit}, Used {meter.used_whole}, "
            f"Requested {decision.requested}. Please try again in "
            f"{go_duration(decision.retry_after_s)}. Visit {RATE_LIMITS_URL} to learn more.",
            limit_type=METER_TYPE[meter.name],
            headers={**self.headers, **retry_headers(decision.retry_after_s)},
        )

    async def _checkpoint(self, run: MeteredRun) -> None:
        """The row's tokens so far: what a crash from now on would leave in it."""
        entry = self._entry(IN_PROGRESS, run.completion_id, _tokens(run), 0.0)
        try:
            await self.access.ledger.update(entry)
        except OmnivoxError as error:  # the row keeps its last tokens; the answer goes on
            log.warning("could not update the ledger row of %s: %s", self.request_id, error)

    async def _settle(self, run: MeteredRun, outcome: Outcome) -> None:
        """Correct the token charge and write the row, side by side: neither needs the other.

        A cancelled or failed run's usage is what was made until it ended."""
        tokens = _tokens(run)
        prices = self.access.config.prices[self.model_cls]
        cost_usd = 0.0 if outcome == "failed" else prices.cost_usd(*tokens)
        if self.batch:
            cost_usd *= BATCH_PRICE_FACTOR
        record = self._record(outcome, run.completion_id, tokens, cost_usd)
        if self.limits is None:  # nothing to correct: no task pair for the row alone
            corrected, recorded = None, await _outcome_of(record)
        else:
            corrected, recorded = await asyncio.gather(
                self._correct(sum(tokens) - self.charged_tokens), record, return_exceptions=True
            )
        if isinstance(corrected, BaseException):
            log.warning("could not correct the token charge of %s: %s", self.request_id, corrected)
        if isinstance(recorded, BaseException):
            if outcome == "completed":
                raise recorded  # no ledger row, no answer: the client sees the error instead
            log.error("could not record the %s request %s: %s", outcome, self.request_id, recorded)

    async def _correct(self, delta_tokens: int) -> None:
        if self.limits is not None:
            await self.access.limiter.adjust_tokens(self.bucket, self.limits, delta_tokens)

    async def _record(
        self,
        status: Status,
        completion_id: str | None,
        tokens: tuple[int, int, int, int],
        cost_usd: float,
    ) -> None:
        self.recorded = True
        await self.access.ledger.record(self._entry(status, completion_id, tokens, cost_usd))

    def _entry(
        self,
        status: Status,
        completion_id: str | None,
        tokens: tuple[int, int, int, int],
        cost_usd: float,
    ) -> LedgerEntry:
        return LedgerEntry(
            request_id=self.request_id,
            completion_id=completion_id,
            key_id=self.caller.key_id,
            key_name=self.caller.name,
            model=self.model,
            model_snapshot=self.snapshot,
            model_class=self.model_cls,
            created_s=self.created_s,
            duration_ms=(time.perf_counter_ns() - self._started_ns) // 1_000_000,
            status=status,
            prompt_text_tokens=tokens[0],
            prompt_audio_tokens=tokens[1],
            completion_text_tokens=tokens[2],
            completion_audio_tokens=tokens[3],
            cost_usd=cost_usd,
            batch=int(self.batch),
        )


def _tokens(run: MeteredRun) -> tuple[int, int, int, int]:
    u = run.usage
    return (
        u.prompt_text_tokens,
        u.prompt_audio_tokens,
        u.completion_text_tokens,
        u.completion_audio_tokens,
    )


def _refusal_status(exc: BaseException) -> Status:
    """The outcome of a request that ended before its run did (or never had one)."""
    if isinstance(exc, RateLimitError):
        return "rate_limited"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, OmnivoxError) and exc.status < 500:
        return "rejected"
    return "failed"  # the server's fault: a 5xx, or a bug


def _bucket(caller: Caller, model_cls: str) -> str:
    return f"{caller.key_id}:{model_cls}"


async def _outcome_of(awaitable: Awaitable[None]) -> BaseException | None:
    """The ``Exception`` ``awaitable`` raised, or None, without a task; a cancellation
    still propagates (as it should: the request itself is being cancelled)."""
    try:
        await awaitable
    except Exception as exc:
        return exc
    return None
