"""The stored responses' store: per owner, found as soon as it is put, chained for
``previous_response_id``, gone when deleted or expired, and committed before closing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omnivox.store.responses import ResponseStore


def response(response_id: str, text: str) -> dict[str, Any]:
    return {
        "id": response_id,
        "created_at": int(time.time()),
        "output": [{"type": "message", "role": "assistant", "content": [{"text": text}]}],
    }


def said(text: str) -> list[dict[str, Any]]:
    return [{"id": f"msg_{text}", "type": "message", "role": "user", "content": text}]


def test_a_response_is_found_at_once_by_its_owner_only(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    try:
        later = int(time.time()) + 3600
        for i in range(50):  # many queued at once: each found right after its put
            store.put("key-a", response(f"resp_{i}", "hi"), said(f"q{i}"), None, later)
            found = store.get("key-a", f"resp_{i}")
            assert found is not None and found.input_items == said(f"q{i}")
        assert store.get("key-b", "resp_1") is None
        assert not store.delete("key-b", "resp_1")
        assert store.delete("key-a", "resp_1") and store.get("key-a", "resp_1") is None
    finally:
        store.close()


def test_the_conversation_is_the_chain_oldest_first(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    try:
        later = int(time.time()) + 3600
        store.put("k", response("resp_1", "a1"), said("q1"), None, later)
        store.put("k", response("resp_2", "a2"), said("q2"), "resp_1", later)
        store.put("k", response("resp_3", "a3"), said("q3"), "resp_2", later)
        items = store.conversation("k", "resp_3")
        assert items is not None
        texts = [
            i.get("content") if i["role"] == "user" else i["content"][0]["text"] for i in items
        ]
        assert texts == ["q1", "a1", "q2", "a2", "q3", "a3"]
        assert store.conversation("other", "resp_3") is None
        store.delete("k", "resp_1")  # the chain now starts after it
        items = store.conversation("k", "resp_3")
        assert items is not None and len(items) == 4
    finally:
        store.close()


def test_an_expired_response_is_gone_and_queued_ones_survive_a_close(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    store.put("k", response("resp_old", "x"), said("x"), None, int(time.time()) - 1)
    store.put("k", response("resp_new", "y"), said("y"), None, int(time.time()) + 3600)
    store.close()  # commits what was queued
    reopened = ResponseStore(tmp_path)
    try:
        assert reopened.get("k", "resp_old") is None
        assert reopened.get("k", "resp_new") is not None
    finally:
        reopened.close()
