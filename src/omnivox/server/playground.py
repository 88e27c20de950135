"""The browser playground: ``GET /playground``, its static assets, and ``GET /`` linking to it.

The page is plain HTML, CSS and JavaScript modules kept in ``playground_assets``
inside the package (no build step, nothing fetched from elsewhere), read once with
``importlib.resources``. It talks to the server's own public API (``/v1/models``,
``/v1/chat/completions`` streamed, ``/v1/realtime``) exactly as any other client
does: it holds no key of the server's, and a key the person types stays in the
browser's local storage and goes out only as a bearer token.

Every answer here carries a strict Content-Security-Policy (scripts, styles and
workers from this origin only, no inline code; connections to this origin and its
WebSocket; media from this origin and ``blob:`` URLs the page makes),
``X-Content-Type-Options: nosniff`` and no framing. These routes are not part of
the API: they are left out of the OpenAPI document, need no key, and open no
cross-origin access (``cors`` decides that for the API, from the operator's list).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from omnivox.access.prices import DEFAULT_PRICES

PLAYGROUND_PATH = "/playground"
ASSETS_PACKAGE = "omnivox.server"
ASSETS_FOLDER = "playground_assets"
PAGE = "index.html"
PRICES_ASSET = "prices.json"
MEDIA_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# A Host header worth naming in the policy: a name or address and a port, nothing else.
PLAIN_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")
BASE_POLICY = (
    "default-src 'none'",
    "script-src 'self'",
    "worker-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self' blob:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)
HOME_PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>omnivox</title>
<link rel="icon" href="/playground/icon.svg"></head>
<body>
<h1>omnivox</h1>
<p>An OpenAI-compatible audio server. The API is under <code>/v1</code>.</p>
<p><a href="/playground">Open the playground</a>: talk to it in this browser.</p>
</body>
</html>
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str


def load_assets() -> dict[str, Asset]:
    """Every file of the assets folder by name (one level, no folders)."""
    folder = resources.files(ASSETS_PACKAGE).joinpath(ASSETS_FOLDER)
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            assets[entry.name] = Asset(entry.read_bytes(), MEDIA_TYPES[suffix])
    return assets


def prices_json() -> bytes:
    """OpenAI's list prices per model class, for the page's cost of each turn."""
    table = {name: dataclasses.asdict(prices) for name, prices in DEFAULT_PRICES.items()}
    return json.dumps(table, sort_keys=True).encode()


def content_security_policy(host_header: str | None) -> str:
    """The policy, with the realtime WebSocket of the host the page was loaded from
    (``'self'`` covers ``ws:`` only in browsers that follow CSP level 3 there)."""
    connect = ["'self'"]
    if host_header is not None and PLAIN_HOST.match(host_header):
        connect += [f"ws://{host_header}", f"wss://{host_header}"]
    return "; ".join((*BASE_POLICY, "connect-src " + " ".join(connect)))


def page_response(request: Request, body: bytes, media_type: str) -> Response:
    headers = {
        "content-security-policy": content_security_policy(request.headers.get("host")),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "microphone=(self)",
        "cache-control": "no-cache",
    }
    return Response(body, media_type=media_type, headers=headers)


def add_playground_routes(app: FastAPI) -> None:
    assets = load_assets()
    assets[PRICES_ASSET] = Asset(prices_json(), MEDIA_TYPES[".json"])

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        return page_response(request, HOME_PAGE, MEDIA_TYPES[".html"])

    @app.get(PLAYGROUND_PATH, include_in_schema=False)
    async def playground(request: Request) -> Response:
        page = assets[PAGE]
        return page_response(request, page.body, page.media_type)

    @app.get(PLAYGROUND_PATH + "/{name}", include_in_schema=False)
    async def playground_asset(request: Request, name: str) -> Response:
        asset = assets.get(name)
        if asset is None or name == PAGE:
            raise StarletteHTTPException(404)  # answered as an unknown URL, in OpenAI's shape
        return page_response(request, asset.body, asset.media_type)
