"""``omnivox keys``, ``omnivox usage`` and the loopback-only rule, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from omnivox.access.setup import is_loopback
from omnivox.cli import main
from tests.access.conftest import FAKE_ENGINE, ask, keyed_client, serve_process
from tests.support.live_server import free_port
from tests.support.subprocess_server import OMNIVOX


def test_keys_create_list_revoke(tmp_path: Path, capsys) -> None:
    dirs = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--name", "ci", "--tier", "2", "--rpm", "9", *dirs]) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("sk-") and "\n" not in key
    assert "shown only now" in out.err
    assert main(["keys", "create", "--name", "ci", *dirs]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "x", "--tier", "6", *dirs]) == 1
    assert "unknown tier '6'" in capsys.readouterr().err
    assert main(["keys", "list", "--json", *dirs]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["tier"], listed["overrides"]["rpm"]) == ("ci", "2", 9)
    assert listed["hint"] == "sk-..." + key[-4:]
    assert main(["keys", "list", *dirs]) == 0
    table = capsys.readouterr().out
    assert "ci" in table and "rpm=9" in table and key not in table
    assert main(["keys", "revoke", "ci", *dirs]) == 0
    assert main(["keys", "list", *dirs]) == 0
    assert "revoked" in capsys.readouterr().out


def test_no_keys_on_loopback_serves_openly_and_says_so(tmp_path: Path) -> None:
    with serve_process(FAKE_ENGINE, tmp_path) as served:
        response = ask(keyed_client(served.base_url, "sk-whatever"))
        assert response.http_response.status_code == 200
        # A key created while it runs counts at once.
        assert main(["keys", "create", "--name", "late", "--data-dir", str(tmp_path)]) == 0
        refused = httpx.get(served.base_url + "/models", headers={"Authorization": "Bearer sk-x"})
        assert refused.status_code == 401
        log = served.log()
    assert "no API keys exist: serving without keys because 127.0.0.1 is a loopback address" in log
    assert main(["usage", "--data-dir", str(tmp_path), "--since", "1h"]) == 0


def test_no_keys_off_loopback_refuses_to_start(tmp_path: Path) -> None:
    for extra in (["--host", "0.0.0.0"], ["--require-keys"]):
        started = time.monotonic()
        result = subprocess.run(
            [str(OMNIVOX), "serve", *FAKE_ENGINE, "--data-dir", str(tmp_path), *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert "omnivox: no API keys exist and" in result.stderr
        assert "omnivox keys create --name NAME" in result.stderr
        assert "Traceback" not in result.stderr
        assert time.monotonic() - started < 10  # refused before any model is loaded


def test_usage_prints_totals_and_cost(tmp_path: Path, capsys) -> None:
    from omnivox.access.ledger import LedgerEntry, SqliteLedger

    dirs = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--name", "ci", *dirs]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--json", *dirs]) == 0
    key_id = json.loads(capsys.readouterr().out)[0]["key_id"]
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    snapshot, now_s = "omnivox-audio-2026-11-22", time.time()
    for model, cls in (
        ("gpt-4o-audio-preview", "gpt-4o-audio"),
        ("gpt-audio-mini", "gpt-4o-mini-audio"),
    ):
        ledger.record_now(
            LedgerEntry(
                "req_1",
                "chatcmpl-1",
                key_id,
                "ci",
                model,
                snapshot,
                cls,
                now_s,
                5,
                "completed",
                100,
                50,
                20,
                400,
                0.04,
            )
        )
    ledger.record_now(
        LedgerEntry(
            "req_2",
            None,
            "",
            "anonymous",
            "omnivox-audio",
            snapshot,
            "gpt-4o-audio",
            now_s,
            5,
            "cancelled",
            1,
            0,
            1,
            0,
            0.5,
        )
    )
    ledger.close_now()
    assert main(["usage", "--key", "ci", *dirs]) == 0
    report = capsys.readouterr().out
    assert f"usage of {key_id} (ci)" in report
    total = next(line for line in report.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "2", "200", "100", "40", "800", "0.080000"]
    assert "requests by status: completed 2" in report
    assert main(["usage", "--json", "--since", "1h", *dirs]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["requests"] == 3 and body["cost_usd"] == 0.58
    assert body["statuses"] == {"completed": 2, "cancelled": 1}
    assert main(["usage", "--since", "2999-01-01", "--json", *dirs]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 0
    assert main(["usage", "--key", "nobody", *dirs]) == 1
    assert "no key has the id or name 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.org", False),
    ],
)
def test_which_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_an_unreachable_redis_stops_the_start_with_one_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(OMNIVOX),
            "serve",
            *FAKE_ENGINE,
            "--data-dir",
            str(tmp_path),
            "--redis-url",
            f"redis://127.0.0.1:{free_port()}/0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        "omnivox: access control can not start: The server could not reach its rate-limit store"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_usage_with_a_redis_url_reads_the_redis_ledger(tmp_path: Path, capsys) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: the SQLite file is not read
    assert main(["usage", "--data-dir", str(tmp_path), "--redis-url", closed]) == 1
    assert "The usage ledger in Redis could not be read" in capsys.readouterr().err


def test_a_server_whose_keys_are_all_revoked_stays_closed_and_says_so(tmp_path: Path) -> None:
    dirs = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--name", "gone", *dirs]) == 0
    assert main(["keys", "revoke", "gone", *dirs]) == 0
    with serve_process(FAKE_ENGINE, tmp_path) as served:
        response = httpx.post(
            served.base_url + "/chat/completions",
            json={
                "model": "gpt-4o-mini-audio-preview",
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert response.status_code == 401
        assert "every key is revoked" in served.log()
