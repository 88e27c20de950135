"""The playground's page and assets as the server sends them (the fake engine; no browser).

What a browser would be told: every file the page loads is served from the package
with its media type and a strict Content-Security-Policy; nothing is fetched from
elsewhere; no key of the server's is ever in it; the API stays closed to other
origins; an unknown asset is a 404 in OpenAI's error shape. The page in a browser is
tested in ``tests/engine/test_playground.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from omnivox.access.keys import SqliteKeyStore
from omnivox.access.setup import build_access
from omnivox.access.tiers import Limits
from tests.support.live_server import LiveServer

MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# A module's imports and the worklets it loads: the files a browser fetches next.
JS_REFERENCES = re.compile(r"""(?:from\s+|import\s*\(\s*|addModule\(\s*)["']([^"']+)["']""")
EXTERNAL_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


class References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self.inline_handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(str(values[name]))
        if tag == "script" and not values.get("src"):
            self.inline_scripts += 1
        self.inline_handlers += [name for name, _ in attrs if name.startswith("on")]


def page_references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


def every_file(root: str) -> dict[str, httpx.Response]:
    """The page and every file it loads, following module imports: path -> response."""
    seen: dict[str, httpx.Response] = {}
    pending = ["/playground"]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        response = httpx.get(root + path)
        seen[path] = response
        if path == "/playground":
            pending += page_references(response.text).urls
        elif path.endswith(".js"):
            for ref in JS_REFERENCES.findall(response.text):
                pending.append(ref if ref.startswith("/") else "/playground/" + ref.lstrip("./"))
    return seen


def policy(response: httpx.Response) -> dict[str, list[str]]:
    directives = {}
    for part in response.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def test_the_page_loads_only_its_own_files_each_with_its_type(fake_server: LiveServer) -> None:
    files = every_file(fake_server.root)
    names = {path.rpartition("/")[2] for path in files}
    assert {"app.js", "style.css", "player-worklet.js", "mic-worklet.js", "icon.svg"} <= names
    for path, response in files.items():
        assert response.status_code == 200, path
        suffix = ".html" if path == "/playground" else "." + path.rpartition(".")[2]
        assert response.headers["content-type"].split(";")[0] == MEDIA_TYPES[suffix], path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert "content-security-policy" in response.headers, path


def test_nothing_is_fetched_from_another_server(fake_server: LiveServer) -> None:
    for path, response in every_file(fake_server.root).items():
        if path.endswith(".svg"):
            continue  # its xmlns is a name, not a fetch
        assert EXTERNAL_URL.search(response.text) is None, path


def test_the_policy_allows_only_this_origin_and_no_inline_code(fake_server: LiveServer) -> None:
    response = httpx.get(fake_server.root + "/playground")
    directives = policy(response)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert directives["media-src"] == ["'self'", "blob:"]
    assert directives["frame-ancestors"] == ["'none'"]
    host = fake_server.root.removeprefix("http://")
    assert directives["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    refs = page_references(response.text)
    assert refs.inline_scripts == 0
    assert refs.inline_handlers == []
    assert all(url.startswith("/playground/") for url in refs.urls), refs.urls


def test_a_host_that_is_not_a_plain_name_is_kept_out_of_the_policy(
    fake_server: LiveServer,
) -> None:
    response = httpx.get(
        fake_server.root + "/playground", headers={"host": "evil.example; script-src *"}
    )
    assert response.status_code == 200
    assert policy(response)["connect-src"] == ["'self'"]
    assert "evil" not in response.headers["content-security-policy"]


def test_the_home_page_links_to_the_playground(fake_server: LiveServer) -> None:
    response = httpx.get(fake_server.root + "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/playground" in page_references(response.text).urls
    assert "content-security-policy" in response.headers


@pytest.mark.parametrize(
    "path", ["/playground/missing.js", "/playground/..%2Fplayground.py", "/playground/index.html"]
)
def test_an_unknown_asset_is_a_404_in_openai_shape(fake_server: LiveServer, path: str) -> None:
    response = httpx.get(fake_server.root + path)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_url"
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


def test_the_playground_is_not_part_of_the_api_document(fake_server: LiveServer) -> None:
    paths = httpx.get(fake_server.root + "/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/playground")]


def test_the_page_holds_no_key_where_keys_are_required(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    try:
        key, secret = store.create("playground", "1", Limits())
    finally:
        store.close()
    server = make_server(data_dir=tmp_path, access=build_access, require_keys=True)
    files = every_file(server.root)
    assert all(response.status_code == 200 for response in files.values())
    for path, response in files.items():
        assert secret not in response.text, path
        assert secret[-8:] not in response.text, path
        assert key.key_id not in response.text, path
    # the page is open; the API behind it is not
    assert httpx.get(server.base_url + "/models").status_code == 401
    models = httpx.get(server.base_url + "/models", headers={"authorization": f"Bearer {secret}"})
    assert models.status_code == 200


def test_other_origins_get_no_cors_access_by_default(fake_server: LiveServer) -> None:
    origin = {"origin": "https://elsewhere.example"}
    preflight = httpx.options(
        fake_server.base_url + "/chat/completions",
        headers={**origin, "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    page = httpx.get(fake_server.root + "/playground", headers=origin)
    assert "access-control-allow-origin" not in page.headers
    # a page elsewhere can not use the keyless loopback server through a visitor's browser
    answer = httpx.post(
        fake_server.base_url + "/chat/completions",
        headers=origin,
        json={"model": "omnivox-audio", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "origin_not_allowed"


def test_the_page_offers_every_voice(fake_server: LiveServer) -> None:
    from omnivox.serving.inputs import OPENAI_VOICES

    html = httpx.get(fake_server.root + "/playground").text
    select = html[
        html.index('<select id="voice">') : html.index("</select>", html.index('id="voice"'))
    ]
    assert re.findall(r"<option>(\w+)</option>", select) == list(OPENAI_VOICES)


def test_prices_are_openai_list_prices(fake_server: LiveServer) -> None:
    from omnivox.access.prices import DEFAULT_PRICES

    prices = httpx.get(fake_server.root + "/playground/prices.json").json()
    assert set(prices) == set(DEFAULT_PRICES)
    for name, table in prices.items():
        assert table["audio_output_usd_per_1m"] == DEFAULT_PRICES[name].audio_output_usd_per_1m
