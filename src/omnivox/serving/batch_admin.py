"""``omnivox batches``: the operator's view of every key's batches, from the data directory.

``list`` prints the newest batches (id, owner key, status, lines done of all, created);
``show`` one batch's object, or with ``--watch`` a progress bar of its lines until it
ends; ``cancel`` asks a batch to stop (the server running it stops before its next
line, keeps what was answered and writes its files). The store is shared with the
server through SQLite, so these work while it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from omnivox.serving.batches import CANCELLABLE
from omnivox.store.batches import FINAL_STATUSES, STORE_FILE, BatchStore

WATCH_POLL_S = 0.5


def store_path(data_dir: Path) -> Path:
    return data_dir / STORE_FILE


def add_parser(commands: Any) -> None:
    batches = commands.add_parser(
        "batches",
        help="list, show and cancel batches (every key's)",
        description="The batches of every key, read from the data directory; works while "
        "the server runs.",
    )
    batches.add_argument("--data-dir", help="the server's data directory")
    actions = batches.add_subparsers(dest="batches_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the newest batches")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = actions.add_parser("show", help="one batch; --watch follows its progress")
    show.add_argument("batch_id", metavar="BATCH")
    show.add_argument("--watch", action="store_true", help="a progress bar until it ends")
    cancel = actions.add_parser("cancel", help="cancel a batch")
    cancel.add_argument("batch_id", metavar="BATCH")


def batches_command(data_dir: Path, args: argparse.Namespace) -> int:
    path = store_path(data_dir)
    if not path.exists():
        print(f"omnivox: no batches in {data_dir}", file=sys.stderr)
        return 1 if args.batches_command != "list" else 0
    store = BatchStore(path)
    try:
        if args.batches_command == "list":
            return _list(store, args.limit, args.json)
        found = _find(store, args.batch_id)
        if found is None:
            print(f"omnivox: no batch {args.batch_id}", file=sys.stderr)
            return 1
        owner, batch = found
        if args.batches_command == "cancel":
            return _cancel(store, owner, batch)
        if args.watch:
            return _watch(store, owner, batch)
        print(json.dumps(batch, indent=2))
        return 0
    finally:
        store.close()


def _find(store: BatchStore, batch_id: str) -> tuple[str, dict[str, Any]] | None:
    owner = store.owner_of(batch_id)
    if owner is None:
        return None
    batch = store.get(owner, batch_id)
    return (owner, batch) if batch is not None else None


def _list(store: BatchStore, limit: int, as_json: bool) -> int:
    rows = store.every(limit)
    if as_json:
        print(json.dumps([{"owner": owner, **batch} for owner, batch in rows], indent=2))
        return 0
    print(f"{'batch':<40} {'key':<14} {'status':<11} {'done':>13}  created (UTC)")
    for owner, batch in rows:
        counts = batch["request_counts"]
        done = f"{counts['completed'] + counts['failed']}/{counts['total']}"
        created = dt.datetime.fromtimestamp(batch["created_at"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        key = owner or "(no key)"
        print(f"{batch['id']:<40} {key:<14} {batch['status']:<11} {done:>13}  {created}")
    return 0


def _cancel(store: BatchStore, owner: str, batch: dict[str, Any]) -> int:
    if batch["status"] in ("cancelling", "cancelled"):
        print(f"{batch['id']}: {batch['status']}")
        return 0
    if batch["status"] not in CANCELLABLE:
        print(
            f"omnivox: {batch['id']} is {batch['status']}: it can not be cancelled", file=sys.stderr
        )
        return 1
    batch["status"] = "cancelling"
    batch["cancelling_at"] = int(time.time())
    store.save(owner, batch)
    print(f"{batch['id']}: cancelling")
    return 0


def _watch(store: BatchStore, owner: str, batch: dict[str, Any]) -> int:
    from tqdm import tqdm

    with tqdm(total=batch["request_counts"]["total"] or None, unit="line", desc=batch["id"]) as bar:
        while True:
            counts = batch["request_counts"]
            bar.total = counts["total"] or bar.total
            bar.n = counts["completed"] + counts["failed"]
            bar.set_postfix_str(f"{batch['status']}, {counts['failed']} failed")
            bar.refresh()
            if batch["status"] in FINAL_STATUSES:
                break
            time.sleep(WATCH_POLL_S)
            batch = store.get(owner, batch["id"]) or batch
    print(json.dumps({k: batch[k] for k in ("id", "status", "output_file_id", "error_file_id")}))
    return 0
