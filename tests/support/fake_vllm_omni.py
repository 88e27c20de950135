"""A stand-in for a vLLM-Omni server that replays one version's recorded answers.

``FakeVllmOmni(version)`` listens on its own loopback port and answers as the version
in ``tests/fixtures/vllm_omni/<version>/`` does (its ``source.json`` says which):
``GET /v1/models`` from ``models.json``; ``POST /v1/chat/completions`` with the whole
answer (``answer.json``, or ``answer_text.json`` when the request's ``modalities``
hold no ``"audio"``) or the streamed one (``stream.sse`` / ``stream_text.sse``, one
event at a time), or the refusal of a version that can not stream
(``stream_refused.json``). Every request body is kept in ``bodies``.

``hold_speech`` makes a streamed answer wait before its first speech chunk until
``release`` is set; ``gone`` is set when a client leaves such an answer before it ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from devtools.serve import serve_chat_routes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm_omni"
VERSIONS = ("v0.12.0rc1", "2561d0d6", "main-2026")


class FakeVllmOmni:
    def __init__(self, version: str) -> None:
        self.folder = FIXTURES / version
        if not self.folder.is_dir():
            raise ValueError(f"no recorded answers of vLLM-Omni {version!r}")
        self.source = json.loads((self.folder / "source.json").read_text(encoding="utf-8"))
        self.bodies: list[dict[str, Any]] = []
        self.hold_speech = False
        self.release = threading.Event()
        self.gone = threading.Event()
        self._served = serve_chat_routes(self._models, self._chat, "fake vLLM-Omni server")
        self.base_url = self._served.base_url

    @property
    def model(self) -> str:
        listing = json.loads((self.folder / "models.json").read_text(encoding="utf-8"))
        return str(listing["data"][0]["id"])

    def recorded(self, name: str) -> bytes:
        return (self.folder / name).read_bytes()

    async def _models(self, request: Request) -> Response:
        return Response(self.recorded("models.json"), media_type="application/json")

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        speech = "audio" in (body.get("modalities") or ["text", "audio"])
        if not body.get("stream"):
            name = "answer.json" if speech else "answer_text.json"
            return Response(self.recorded(name), media_type="application/json")
        refused = self.folder / "stream_refused.json"
        if refused.exists():
            answer = json.loads(refused.read_text(encoding="utf-8"))
            return JSONResponse(answer["body"], status_code=answer["status"])
        name = "stream.sse" if speech else "stream_text.sse"
        events = [e for e in self.recorded(name).decode().split("\n\n") if e]
        return StreamingResponse(self._events(events), media_type="text/event-stream")

    async def _events(self, events: list[str]) -> AsyncIterator[bytes]:
        held = False
        try:
            for event in events:
                if self.hold_speech and not held and '"modality":"audio"' in event:
                    held = True
                    while not self.release.is_set():
                        await asyncio.sleep(0.02)
                yield (event + "\n\n").encode()
                await asyncio.sleep(0)
        except (asyncio.CancelledError, GeneratorExit):
            self.gone.set()
            raise

    def stop(self) -> None:
        self.release.set()
        self._served.stop()
