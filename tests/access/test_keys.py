"""API keys: made once, stored as hashes, found in constant time, revoked at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from omnivox.access.keys import SqliteKeyStore, bearer_token, mask_key
from omnivox.access.tiers import Limits


def test_a_key_is_stored_only_as_its_hash(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    key, raw = store.create("ci", "2", Limits(rpm=7))
    assert raw.startswith("sk-") and len(raw) >= 40
    assert store.find(raw) == key
    assert key.overrides == Limits(rpm=7) and key.tier == "2" and key.hint == "sk-..." + raw[-4:]
    store.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert raw.encode() not in stored
    assert raw[3:-4].encode() not in stored
    assert hashlib.sha256(raw.encode()).hexdigest().encode() in stored


def test_wrong_and_revoked_keys_are_not_found(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    key, raw = store.create("ci", "1", Limits())
    assert store.find(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert store.has_keys()
    revoked = store.revoke("ci")
    assert revoked.key_id == key.key_id and not revoked.active
    assert store.find(raw) is None
    assert store.has_keys()  # a revoked key still keeps the server keyed
    with pytest.raises(ValueError, match="no active key"):
        store.revoke(key.key_id)


def test_names_are_unique_among_active_keys(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "access.sqlite3")
    store.create("ci", "1", Limits())
    with pytest.raises(ValueError, match="already exists"):
        store.create("ci", "1", Limits())
    store.revoke("ci")
    store.create("ci", "1", Limits())  # the name is free again once revoked
    assert [k.active for k in store.list()] == [False, True]


def test_keys_are_masked_as_openai_masks_them() -> None:
    raw = "sk-PMafPabcdefghijklmnopqrstuvwxyzE873"
    masked = mask_key(raw)
    assert masked.startswith("sk-PMafP***") and masked.endswith("E873")
    assert len(masked) == len(raw)
    assert "abcdefghij" not in masked
    assert mask_key("short") == "s***t"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer sk-abc", "sk-abc"),
        ("bearer   sk-abc ", "sk-abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_the_key_is_read_from_bearer_auth_only(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
