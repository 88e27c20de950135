"""API keys through the SDK: 401s in OpenAI's words, key-scoped usage, keys kept out of logs."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import openai
import pytest

from omnivox.access.keys import SqliteKeyStore
from omnivox.access.ledger import SqliteLedger
from tests.access.conftest import FULL, MINI, ask, keyed_client, make_key


def test_a_missing_key_is_refused_in_openai_words(keyed_server, tmp_path: Path) -> None:
    make_key(tmp_path, "ci")
    server = keyed_server()
    response = httpx.post(
        server.base_url + "/chat/completions",
        json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 401
    assert response.headers["x-request-id"].startswith("req_")
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert response.json()["error"]["message"].startswith(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)"
    )


def test_a_wrong_key_is_masked_in_the_401(keyed_server, tmp_path: Path) -> None:
    make_key(tmp_path, "ci")
    server = keyed_server()
    wrong = "sk-PMafPwrongwrongwrongwrongwrongwrongE873"
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(keyed_client(server.base_url, wrong))
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    message = caught.value.body["message"]
    assert message.startswith("Incorrect API key provided: sk-PMafP***")
    assert "E873." in message and "wrongwrong" not in message


def test_models_need_a_key_when_keys_exist_and_health_never(keyed_server, tmp_path: Path) -> None:
    key = make_key(tmp_path, "ci")
    server = keyed_server()
    assert httpx.get(server.root + "/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        keyed_client(server.base_url, "sk-nope").models.list()
    assert httpx.get(server.base_url + "/models/" + MINI).status_code == 401
    ids = [m.id for m in keyed_client(server.base_url, key).models.list()]
    assert MINI in ids and FULL in ids


def test_a_revoked_key_stops_working_at_once(keyed_server, tmp_path: Path) -> None:
    key = make_key(tmp_path, "leaving")
    make_key(tmp_path, "staying")
    server = keyed_server()
    client = keyed_client(server.base_url, key)
    assert ask(client).parse().choices[0].message.content == "You said: hello there"
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    store.revoke("leaving")
    store.close()
    with pytest.raises(openai.AuthenticationError):
        ask(client)


def test_revoking_the_last_key_does_not_open_a_loopback_server(
    keyed_server, tmp_path: Path
) -> None:
    key = make_key(tmp_path, "only")
    server = keyed_server()
    client = keyed_client(server.base_url, key)
    assert ask(client).http_response.status_code == 200
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    store.revoke("only")
    store.close()
    for raw in (key, None):  # the revoked key, and no key at all
        response = httpx.post(
            server.base_url + "/chat/completions",
            json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {raw}"} if raw else {},
        )
        assert response.status_code == 401, response.text


def test_the_free_tier_has_no_gpt_4o_audio_class(keyed_server, tmp_path: Path) -> None:
    key = make_key(tmp_path, "free", tier="free")
    client = keyed_client(keyed_server().base_url, key)
    assert ask(client, model=MINI).http_response.status_code == 200
    for model in (FULL, "omnivox-audio"):
        with pytest.raises(openai.NotFoundError) as caught:
            ask(client, model=model)
        assert caught.value.code == "model_not_found"
        assert (
            f"The model `{model}` does not exist or you do not have access to it."
            == (caught.value.body["message"])
        )


def test_usage_endpoint_shows_a_key_its_own_usage(keyed_server, tmp_path: Path) -> None:
    alice, bob = make_key(tmp_path, "alice"), make_key(tmp_path, "bob")
    server = keyed_server()
    for _ in range(2):
        ask(keyed_client(server.base_url, alice))
    ask(keyed_client(server.base_url, bob), model=FULL)
    mine = httpx.get(server.base_url + "/usage", headers={"Authorization": f"Bearer {alice}"})
    assert mine.status_code == 200
    body = mine.json()
    assert body["requests"] == 2 and body["statuses"] == {"completed": 2}
    assert [m["model"] for m in body["models"]] == [MINI]
    # "hello there" is 5 prompt tokens and "You said: hello there" 4 completion tokens
    # in the fake engine; priced as the mini class.
    assert (body["prompt_text_tokens"], body["completion_text_tokens"]) == (10, 8)
    assert body["cost_usd"] == pytest.approx((10 * 0.15 + 8 * 0.60) / 1e6)
    since = httpx.get(
        server.base_url + "/usage",
        params={"since": "2999-01-01"},
        headers={"Authorization": f"Bearer {alice}"},
    )
    assert since.json()["requests"] == 0
    bad = httpx.get(
        server.base_url + "/usage?since=soon", headers={"Authorization": f"Bearer {bob}"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_keys_never_reach_the_logs(keyed_server, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    key = make_key(tmp_path, "ci")
    server = keyed_server()
    ask(keyed_client(server.base_url, key))
    with pytest.raises(openai.AuthenticationError):
        ask(keyed_client(server.base_url, key + "x"))
    assert key not in caplog.text
    SqliteLedger(tmp_path / "access.sqlite3")  # the ledger opens beside the keys
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("access.sqlite3*"))
    assert key.encode() not in stored


def test_without_keys_on_loopback_every_request_is_served(keyed_server) -> None:
    server = keyed_server()
    response = ask(keyed_client(server.base_url, "sk-anything"))
    assert response.http_response.status_code == 200
    assert "x-ratelimit-limit-requests" not in response.headers
    usage = httpx.get(server.base_url + "/usage").json()
    assert usage["requests"] == 1  # still recorded, as the anonymous caller


def test_require_keys_refuses_even_on_loopback(keyed_server) -> None:
    server = keyed_server(require_keys=True)
    with pytest.raises(openai.AuthenticationError):
        ask(keyed_client(server.base_url, "sk-anything"))
