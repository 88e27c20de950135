"""What ``omnivox keys create|list|revoke`` and ``omnivox usage`` do.

Keys: the new key alone goes to stdout (``KEY=$(omnivox keys create --name ci)``),
everything else to stderr; ``list`` never shows more of a key than its last
four characters. Usage: ``--key`` takes an id, or a name (the newest key of
that name); the numbers are those of ``GET /v1/usage``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from omnivox.access.keys import SqliteKeyStore
from omnivox.access.ledger import parse_since_s
from omnivox.access.report import keys_report, usage_report
from omnivox.access.setup import build_ledger
from omnivox.access.tiers import Limits, load_access_config
from omnivox.settings import Settings


def keys_command(settings: Settings, args: argparse.Namespace) -> int:
    store = SqliteKeyStore(settings.access_db_path)
    try:
        if args.keys_command == "create":
            tiers = load_access_config(settings.limits_file).tiers
            if args.tier not in tiers:
                raise ValueError(f"unknown tier {args.tier!r}; use one of {', '.join(tiers)}")
            overrides = Limits(args.rpm, args.rpd, args.tpm)
            key, raw_key = store.create(args.name, args.tier, overrides)
            print(raw_key)
            print(
                f"created {key.key_id} ({key.name}, tier {key.tier}); the key above is shown "
                "only now",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            keys = store.list()
            if args.json:
                print(json.dumps([asdict(k) for k in keys], indent=2))
            else:
                print(keys_report(keys))
        else:
            key = store.revoke(args.key_ref)
            print(f"revoked {key.key_id} ({key.name})", file=sys.stderr)
    finally:
        store.close()
    return 0


async def usage_command(settings: Settings, args: argparse.Namespace) -> int:
    since_s = parse_since_s(args.since) if args.since else None
    key_id, who = None, "every key"
    if args.key:
        store = SqliteKeyStore(settings.access_db_path)
        try:
            matches = [k for k in store.list() if args.key in (k.key_id, k.name)]
        finally:
            store.close()
        if not matches:
            raise ValueError(f"no key has the id or name {args.key!r}")
        key = next((k for k in matches if k.key_id == args.key), matches[-1])
        key_id, who = key.key_id, f"{key.key_id} ({key.name})"
    ledger = build_ledger(settings)
    try:
        summary = await ledger.summarize(key_id, since_s)
    finally:
        await ledger.close()
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(usage_report(summary, who))
    return 0
