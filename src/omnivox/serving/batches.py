"""The Batch API: batches of Chat Completions, Responses (and audio) requests, run on
spare capacity.

A batch of ``/v1/responses`` is OpenAI's: each line's body is the route's, its answer's
body the ``response`` object, stored (unless ``store: false``) for the batch's key to
retrieve. Besides those, a batch may be of ``/v1/audio/speech`` (a line's body is
the route's JSON; its answer's body is ``{"object": "audio.speech", "model", "format",
"content_type", "data"}`` with the audio base64-encoded) or ``/v1/audio/transcriptions``
and ``/translations`` (a line's body is the form's fields as JSON with ``file`` the audio
base64-encoded and ``filename`` optional; its answer's body is the route's JSON, or
``{"text": ...}`` for the text formats). OpenAI's Batch API has no audio endpoints;
these line formats are omnivox's.

``BatchService`` creates, shows, lists and cancels batches, and ``run`` (one task per
server) takes each unfinished batch through OpenAI's statuses:

- ``validating``: the input file is read line by line; any bad line (not JSON, not a
  request line, another ``url`` than the batch's endpoint, ``stream``, a model not
  served, a ``custom_id`` twice) fails the batch with one error per line, each with
  its line number and code; else the lines are stored and the batch is ``in_progress``.
- ``in_progress``: each line is put through the same path as an API request
  (``run_line``, given by the server: validation, the key's access, the engine, the
  ledger), when the server has spare capacity (``spare``: no interactive request is
  being answered), ``concurrency`` at a time. Its result is stored with the line in one
  transaction before it counts, so a server killed at any moment neither loses a line
  nor runs a finished one again. A line is outside the key's RPM and TPM and costs
  half (a ``batch`` ledger row); a batch whose estimated prompt tokens would take the
  key's unfinished batches past its tier's batch queue limit fails validation with
  ``token_limit_exceeded``, as OpenAI's do.
- ``finalizing`` -> ``completed``: the output file (lines answered 200) and the error
  file (lines answered with an error, as their status and OpenAI's error body) are
  written with purpose ``batch_output``.
- ``cancelling`` -> ``cancelled`` and ``expired`` (24 h after creation, checked also at
  start): the lines already answered are kept; those not run go to the error file
  with ``batch_cancelled`` or ``batch_expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from omnivox.errors import InvalidRequestError, InvalidValueError, NotFoundError, OmnivoxError
from omnivox.ids import new_id
from omnivox.protocol.batches import BatchRequestInput, CreateBatchRequest
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.protocol.responses_api import CreateResponseRequest
from omnivox.protocol.validation import to_openai_error
from omnivox.serving.responses_input import chat_request, check_served, input_items
from omnivox.serving.transcription import estimate_transcription_tokens
from omnivox.serving.usage import CHARS_PER_TOKEN, estimate_prompt_tokens
from omnivox.store.batches import FINAL_STATUSES, BatchStore
from omnivox.store.files import FileStore

COMPLETION_WINDOW_S = 24 * 3600
MAX_LINES = 50_000
DEFAULT_OUTPUT_EXPIRY_S = 30 * 24 * 3600
SERVED_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
)
TRANSCRIBING_ENDPOINTS = ("/v1/audio/transcriptions", "/v1/audio/translations")
CANCELLABLE = frozenset({"validating", "in_progress"})
INTERNAL_FIELDS = frozenset({"output_expires_after", "enqueued"})
UTF8_BOM = b"\xef\xbb\xbf"
RETRY_AFTER_FAILURE_S = 30.0  # a batch that could not advance is tried again after this

log = logging.getLogger("omnivox.serving")


@dataclass(frozen=True, slots=True)
class LineAnswer:
    """What the API answered one line: its status, body and request id."""

    status_code: int
    body: dict[str, Any]
    request_id: str


RunLine = Callable[[str, str, dict[str, Any]], Awaitable[LineAnswer]]  # owner, endpoint, body


class BatchService:
    def __init__(
        self,
        store: BatchStore,
        files: FileStore,
        run_line: RunLine,
        spare: Callable[[], Awaitable[None]],
        *,
        known_model: Callable[[str, str], bool] = lambda name, endpoint: True,
        queue: Callable[[str, str], tuple[str, int | None]] = lambda owner, model: (model, None),
        concurrency: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.files = files
        self.run_line = run_line
        self.spare = spare
        self.known_model = known_model
        self.queue = queue  # (owner, model) -> (the model's class, the owner's queue limit)
        self.concurrency = max(1, concurrency)
        self.clock = clock
        self._wake = asyncio.Event()
        self._saving = asyncio.Lock()  # a cancel is never overwritten by the runner's save

    # ---- the API --------------------------------------------------------------------

    async def create(self, owner: str, req: CreateBatchRequest) -> dict[str, Any]:
        if req.endpoint not in SERVED_ENDPOINTS:
            raise InvalidValueError(
                f"Invalid value: '{req.endpoint}'. This server runs batches for: "
                + ", ".join(f"'{e}'" for e in SERVED_ENDPOINTS)
                + ".",
                param="endpoint",
            )
        stored = await asyncio.to_thread(self.files.get, owner, req.input_file_id)
        if stored is None:
            raise NotFoundError(f"No such File object: {req.input_file_id}", param="input_file_id")
        if stored.purpose != "batch":
            raise InvalidValueError(
                f"File {req.input_file_id} has purpose '{stored.purpose}'; a batch's input "
                "file must have purpose 'batch'.",
                param="input_file_id",
            )
        now = int(self.clock())
        batch: dict[str, Any] = {
            "id": new_id("batch_", 32),
            "object": "batch",
            "endpoint": req.endpoint,
            "model": None,
            "errors": None,
            "input_file_id": req.input_file_id,
            "completion_window": req.completion_window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + COMPLETION_WINDOW_S,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "usage": _usage(0, 0),
            "metadata": req.metadata,
            "output_expires_after": (
                req.output_expires_after.model_dump() if req.output_expires_after else None
            ),
        }
        await asyncio.to_thread(self.store.save, owner, batch)
        self._wake.set()
        return _shown(batch)

    async def retrieve(self, owner: str, batch_id: str) -> dict[str, Any]:
        return _shown(await self._get(owner, batch_id))

    async def page(
        self, owner: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        batches, more = await asyncio.to_thread(self.store.page, owner, after=after, limit=limit)
        return [_shown(b) for b in batches], more

    async def cancel(self, owner: str, batch_id: str) -> dict[str, Any]:
        async with self._saving:
            batch = await self._get(owner, batch_id)
            if batch["status"] in ("cancelling", "cancelled"):
                return _shown(batch)
            if batch["status"] not in CANCELLABLE:
                raise InvalidRequestError(
                    f"Cannot cancel a batch with status '{batch['status']}'.", param="batch_id"
                )
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(self.clock())
            await asyncio.to_thread(self.store.save, owner, batch)
        self._wake.set()
        return _shown(batch)

    async def _get(self, owner: str, batch_id: str) -> dict[str, Any]:
        batch = await asyncio.to_thread(self.store.get, owner, batch_id)
        if batch is None:
            raise NotFoundError(f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    # ---- the runner -----------------------------------------------------------------

    async def run(self) -> None:
        """Take every unfinished batch to its end, oldest first; then wait for more."""
        while True:
            self._wake.clear()
            work = await asyncio.to_thread(self.store.unfinished)
            stuck = False
            for owner, batch in work:
                try:
                    await self._advance(owner, batch)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug, a full disk: this batch waits; the others go on
                    log.exception("batch %s could not advance", batch["id"])
                    stuck = True
            if stuck:  # try again later, or at the next change
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_AFTER_FAILURE_S)
            elif not work or all(b["status"] in FINAL_STATUSES for _, b in work):
                await self._wake.wait()

    async def _advance(self, owner: str, batch: dict[str, Any]) -> None:
        now = int(self.clock())
        if batch["status"] in CANCELLABLE and now >= batch["expires_at"]:
            await self._finish(owner, batch, "expired")
            return
        if batch["status"] == "validating":
            await self._validate(owner, batch)
        if batch["status"] == "in_progress":
            await self._run_lines(owner, batch)
        if batch["status"] == "finalizing":
            await self._finish(owner, batch, "completed")
        elif batch["status"] == "cancelling":
            await self._finish(owner, batch, "cancelled")

    async def _save(self, owner: str, batch: dict[str, Any]) -> None:
        """Save the runner's view of a batch; a cancel made meanwhile is kept."""
        async with self._saving:
            stored = await asyncio.to_thread(self.store.get, owner, batch["id"])
            if stored is not None and stored["status"] == "cancelling":
                if batch["status"] in CANCELLABLE:
                    batch["status"] = "cancelling"
                batch["cancelling_at"] = stored["cancelling_at"]
            await asyncio.to_thread(self.store.save, owner, batch)

    async def _status_now(self, owner: str, batch: dict[str, Any]) -> str:
        stored = await asyncio.to_thread(self.store.get, owner, batch["id"])
        return str(stored["status"]) if stored else batch["status"]

    async def _validate(self, owner: str, batch: dict[str, Any]) -> None:
        data = await asyncio.to_thread(self.files.content, owner, batch["input_file_id"])
        lines, errors = await asyncio.to_thread(
            _read_lines, data, batch["endpoint"], self.known_model
        )
        now = int(self.clock())
        if await self._status_now(owner, batch) == "cancelling":
            batch["status"] = "cancelling"
            return
        if errors:
            batch.update(
                status="failed",
                failed_at=now,
                errors={"object": "list", "data": errors[:1000]},
                request_counts={"total": 0, "completed": 0, "failed": 0},
            )
            await self._save(owner, batch)
            return
        enqueued = await asyncio.to_thread(
            _enqueued_tokens, lines, batch["endpoint"], self.queue, owner
        )
        refusal = await self._over_queue_limit(owner, batch, enqueued)
        if refusal is not None:
            batch.update(
                status="failed",
                failed_at=now,
                errors={"object": "list", "data": [refusal]},
            )
            await self._save(owner, batch)
            return
        batch["enqueued"] = {cls: tokens for cls, (tokens, _) in enqueued.items()}
        await asyncio.to_thread(self.store.add_lines, batch["id"], lines)
        models = {str(request["body"].get("model")) for _, _, request in lines}
        batch.update(
            status="in_progress",
            in_progress_at=now,
            model=models.pop() if len(models) == 1 else None,
            request_counts={"total": len(lines), "completed": 0, "failed": 0},
        )
        await self._save(owner, batch)

    async def _over_queue_limit(
        self, owner: str, batch: dict[str, Any], enqueued: dict[str, tuple[int, int | None]]
    ) -> dict[str, Any] | None:
        """The error that fails a batch past the owner's batch queue limit of a class: the
        prompt tokens of its unfinished batches and of this one, estimated."""
        if all(limit is None for _, limit in enqueued.values()):
            return None
        others = await asyncio.to_thread(self.store.unfinished)
        for cls, (tokens, limit) in enqueued.items():
            if limit is None:
                continue
            queued = sum(
                int((other.get("enqueued") or {}).get(cls, 0))
                for other_owner, other in others
                if other_owner == owner and other["id"] != batch["id"]
            )
            if queued + tokens > limit:
                return _error(
                    "token_limit_exceeded",
                    f"Enqueued token limit reached for {cls}. Limit: {limit:,} enqueued tokens; "
                    f"this batch is about {tokens:,} and {queued:,} are already enqueued. "
                    "Please try submitting your batch again once you have fewer tokens "
                    "enqueued.",
                    None,
                    None,
                )
        return None

    async def _run_lines(self, owner: str, batch: dict[str, Any]) -> None:
        pending = await asyncio.to_thread(self.store.pending, batch["id"])
        await self._count(owner, batch)
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()
        for entry in pending:
            queue.put_nowait(entry)
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set() and not queue.empty():
                if int(self.clock()) >= batch["expires_at"]:
                    stop.set()
                    return
                if await self._status_now(owner, batch) != "in_progress":
                    stop.set()
                    return
                try:  # another worker may have taken the last line meanwhile
                    line, custom_id, request = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._run_line(owner, batch, line, custom_id, request)

        async with asyncio.TaskGroup() as group:
            for _ in range(self.concurrency):
                group.create_task(worker())
        await self._count(owner, batch)  # takes a cancel made meanwhile
        if batch["status"] == "cancelling":
            return
        if int(self.clock()) >= batch["expires_at"]:
            await self._finish(owner, batch, "expired")
        else:
            batch.update(status="finalizing", finalizing_at=int(self.clock()))
            await self._save(owner, batch)

    async def _run_line(
        self, owner: str, batch: dict[str, Any], line: int, custom_id: str, request: dict[str, Any]
    ) -> None:
        await self.spare()
        answer = await self.run_line(owner, batch["endpoint"], request["body"])
        result = {
            "id": _line_id(batch["id"], line),
            "custom_id": custom_id,
            "response": {
                "status_code": answer.status_code,
                "request_id": answer.request_id,
                "body": answer.body,
            },
            "error": None,
        }
        failed = answer.status_code != 200
        await asyncio.to_thread(self.store.record, batch["id"], line, result, failed)
        counts = batch["request_counts"]
        counts["failed" if failed else "completed"] += 1
        input_tokens, output_tokens = _tokens_of(result)
        usage = batch["usage"]
        batch["usage"] = _usage(
            usage["input_tokens"] + input_tokens, usage["output_tokens"] + output_tokens
        )
        await self._save(owner, batch)

    async def _count(self, owner: str, batch: dict[str, Any]) -> None:
        """The batch's counts and usage, from its recorded lines, saved with it."""
        results = await asyncio.to_thread(self.store.results, batch["id"])
        done = [r for r in results if r.result is not None]
        tokens = [_tokens_of(r.result) for r in done if r.result is not None]
        input_tokens = sum(t[0] for t in tokens)
        output_tokens = sum(t[1] for t in tokens)
        batch["request_counts"] = {
            "total": len(results),
            "completed": sum(1 for r in done if not r.failed),
            "failed": sum(1 for r in done if r.failed),
        }
        batch["usage"] = _usage(input_tokens, output_tokens)
        await self._save(owner, batch)

    async def _finish(self, owner: str, batch: dict[str, Any], status: str) -> None:
        """Write the output and error files, then the final status."""
        results = await asyncio.to_thread(self.store.results, batch["id"])
        outputs = [r.result for r in results if r.result is not None and not r.failed]
        errors = [r.result for r in results if r.result is not None and r.failed]
        if status in ("cancelled", "expired"):
            code = "batch_cancelled" if status == "cancelled" else "batch_expired"
            message = (
                "This line was not run: the batch was cancelled."
                if status == "cancelled"
                else "This line was not run: the batch expired before it ran."
            )
            errors += [
                {
                    "id": _line_id(batch["id"], r.line),
                    "custom_id": r.custom_id,
                    "response": None,
                    "error": {"code": code, "message": message},
                }
                for r in results
                if r.result is None
            ]
        now = int(self.clock())
        expiry = batch.get("output_expires_after") or {}
        expires_at = now + int(expiry.get("seconds") or DEFAULT_OUTPUT_EXPIRY_S)
        for key, lines, name in (
            ("output_file_id", outputs, "output"),
            ("error_file_id", errors, "error"),
        ):
            if lines and batch.get(key) is None:
                data = "".join(json.dumps(line) + "\n" for line in lines).encode()
                stored = await asyncio.to_thread(
                    self.files.create,
                    owner,
                    f"{batch['id']}_{name}.jsonl",
                    "batch_output",
                    data,
                    expires_at,
                )
                batch[key] = stored.file_id
        await self._count(owner, batch)
        batch["status"] = status
        batch[f"{status}_at"] = now
        await self._save(owner, batch)


def _read_lines(
    data: bytes | None, endpoint: str, known_model: Callable[[str, str], bool]
) -> tuple[list[tuple[int, str, dict[str, Any]]], list[dict[str, Any]]]:
    """The input file's request lines, or the errors that fail it (each with its line)."""
    if data is None:
        return [], [_error("file_not_found", "The input file no longer exists.", None, None)]
    lines: list[tuple[int, str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    # Lines end at "\n" only: JSON strings may hold U+2028 and other breaks that
    # str.splitlines() would cut at. A UTF-8 byte order mark before the first line is read past.
    raw_lines = data.removeprefix(UTF8_BOM).split(b"\n")
    numbered = [(n, raw) for n, raw in enumerate(raw_lines, 1) if raw.strip()]
    if not numbered:
        return [], [_error("empty_file", "The input file has no request lines.", None, None)]
    if len(numbered) > MAX_LINES:
        return [], [
            _error(
                "too_many_requests",
                f"A batch may have at most {MAX_LINES} requests; the file has {len(numbered)}.",
                None,
                None,
            )
        ]
    for n, raw in numbered:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(
                _error(
                    "invalid_json_line",
                    f"This line is not UTF-8 text (byte {exc.start + 1} of the line).",
                    None,
                    n,
                )
            )
            continue
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
            errors.append(_error("invalid_json_line", "This line is not valid JSON.", None, n))
            continue
        if not isinstance(value, dict):
            errors.append(_error("invalid_request", "A line must be a JSON object.", None, n))
            continue
        try:
            entry = BatchRequestInput.model_validate(value)
        except ValidationError as exc:
            problem = to_openai_error(exc, value)
            code = (
                problem.code
                if problem.code == "missing_required_parameter"
                else ("invalid_request")
            )
            errors.append(_error(code, problem.message, problem.param, n))
            continue
        if entry.url != endpoint:
            errors.append(
                _error(
                    "invalid_url",
                    f"The line's url '{entry.url}' is not the batch's endpoint '{endpoint}'.",
                    "url",
                    n,
                )
            )
        elif entry.body.get("stream") is True or entry.body.get("stream_format") == "sse":
            param = "body.stream" if entry.body.get("stream") is True else "body.stream_format"
            errors.append(
                _error("streaming_unsupported", "Streaming is not supported in batches.", param, n)
            )
        elif endpoint in TRANSCRIBING_ENDPOINTS and not isinstance(entry.body.get("file"), str):
            errors.append(
                _error(
                    "missing_required_parameter",
                    "Missing required parameter: 'body.file' (the audio file, base64-encoded).",
                    "body.file",
                    n,
                )
            )
        elif not isinstance(entry.body.get("model"), str):
            errors.append(
                _error(
                    "missing_required_parameter",
                    "Missing required parameter: 'body.model'.",
                    "body.model",
                    n,
                )
            )
        elif not known_model(entry.body["model"], endpoint):
            errors.append(
                _error(
                    "model_not_found",
                    f"The model '{entry.body['model']}' does not exist or you do not have "
                    "access to it.",
                    "body.model",
                    n,
                )
            )
        elif entry.custom_id in seen:
            errors.append(
                _error(
                    "duplicate_custom_id",
                    f"The custom_id '{entry.custom_id}' is used by an earlier line.",
                    "custom_id",
                    n,
                )
            )
        else:
            seen.add(entry.custom_id)
            lines.append((n, entry.custom_id, {"body": entry.body}))
    return lines, errors


def _enqueued_tokens(
    lines: list[tuple[int, str, dict[str, Any]]],
    endpoint: str,
    queue: Callable[[str, str], tuple[str, int | None]],
    owner: str,
) -> dict[str, tuple[int, int | None]]:
    """Per model class: the lines' estimated prompt tokens, and the owner's queue limit."""
    out: dict[str, tuple[int, int | None]] = {}
    for _, _, request in lines:
        body = request["body"]
        cls, limit = queue(owner, str(body["model"]))
        if endpoint == "/v1/responses":
            tokens = _response_estimate(body)
        elif "messages" in body:
            tokens = _prompt_estimate(body)
        else:
            tokens = _audio_estimate(body)
        out[cls] = (out.get(cls, (0, limit))[0] + tokens, limit)
    return out


def _prompt_estimate(body: dict[str, Any]) -> int:
    try:
        return estimate_prompt_tokens(CreateChatCompletionRequest.model_validate(body))
    except ValidationError:  # the line will be refused when it runs; count its text
        return len(json.dumps(body)) // CHARS_PER_TOKEN


def _response_estimate(body: dict[str, Any]) -> int:
    """A Responses line's prompt as the chat request that answers it (without the stored
    conversation a ``previous_response_id`` continues: that is read when the line runs)."""
    try:
        req = CreateResponseRequest.model_validate(body)
        check_served(req)
        form = chat_request(req, req.model, [], input_items(req))
        return estimate_prompt_tokens(form.request)
    except (ValidationError, OmnivoxError):  # refused when it runs; count its text
        return len(json.dumps(body)) // CHARS_PER_TOKEN


def _tokens_of(result: dict[str, Any]) -> tuple[int, int]:
    """A line's answer's input and output tokens (chat's names, or Responses' and audio's)."""
    usage = (result.get("response") or {}).get("body", {}).get("usage") or {}
    return (
        int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
        int(usage.get("completion_tokens") or usage.get("output_tokens") or 0),
    )


def _audio_estimate(body: dict[str, Any]) -> int:
    """A speech line: its text's tokens; a transcription line: its audio's, by its size."""
    if isinstance(body.get("file"), str):
        return estimate_transcription_tokens(len(body["file"]) * 3 // 4)
    return len(str(body.get("input", ""))) // CHARS_PER_TOKEN + 1


def _error(code: str, message: str, param: str | None, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _line_id(batch_id: str, line: int) -> str:
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:32]


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _shown(batch: dict[str, Any]) -> dict[str, Any]:
    """The batch as OpenAI shows it (what is kept only for running it left out)."""
    return {k: v for k, v in batch.items() if k not in INTERNAL_FIELDS}
