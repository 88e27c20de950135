"""The ``omnivox`` command line.

``omnivox serve`` checks that it may serve (API keys, or a loopback address),
loads the engine (failing with one clear message when a model is missing) and
then serves the API with uvicorn. ``omnivox keys`` manages API keys and
``omnivox usage`` reads the usage ledger. Heavy libraries are only imported
once a command needs them, so ``omnivox --help`` is instant.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omnivox import __version__
from omnivox.errors import ModelUnavailableError, OmnivoxError
from omnivox.heap import tune_malloc
from omnivox.settings import Settings

DESCRIPTION = """\
omnivox serves OpenAI's Chat Completions audio API (audio in, text and speech out,
streamed) from open-weight models. Point the official openai SDK at
http://HOST:PORT/v1 and use the model name omnivox-audio (or gpt-4o-audio-preview).
Every option can also be set as an environment variable: --max-body-bytes is
OMNIVOX_MAX_BODY_BYTES, and so on.
"""


def _tiers_help() -> str:
    """The default tier table, as ``keys create --help`` shows it."""
    from omnivox.access.tiers import DEFAULT_TIERS, MODEL_CLASSES

    def cell(limits: Any) -> str:
        if limits is None:
            return "no access"
        return " / ".join(
            f"{v:,}" if v is not None else "-" for v in (limits.rpm, limits.rpd, limits.tpm)
        )

    lines = ["default tiers (RPM / RPD / TPM per key and model class; - is no limit):"]
    for tier, classes in DEFAULT_TIERS.items():
        cells = ", ".join(f"{cls} {cell(classes.get(cls))}" for cls in MODEL_CLASSES)
        lines.append(f"  {tier:>4}: {cells}")
    lines.append(
        "Model names with 'mini' are the gpt-4o-mini-audio class; every other name "
        "(omnivox-audio included) is the gpt-4o-audio class."
    )
    return "\n".join(lines)


def _serve_parser(commands: Any) -> None:
    defaults = Settings.model_fields
    p = commands.add_parser(
        "serve",
        help="run the API server",
        description="Run the API server. Flags override OMNIVOX_* environment variables.",
    )
    p.add_argument("--host", help=f"address to bind; default {defaults['host'].default}")
    p.add_argument("--port", type=int, help=f"port to bind; default {defaults['port'].default}")
    p.add_argument(
        "--engine",
        help="cascade (embedded CPU models, the default), omni (a native speech-to-speech "
        "model on a GPU) or package.module:factory",
    )
    p.add_argument("--cache-dir", help="where prepared models are kept; default DATA_DIR/models")
    p.add_argument(
        "--asr",
        help="cascade recogniser: a faster-whisper size (base is embedded), "
        "a hub repo id or a local CTranslate2 dir",
    )
    p.add_argument(
        "--llm",
        help="cascade chat model: smollm2 (embedded), a local .gguf path or repo_id/file.gguf",
    )
    p.add_argument("--tts", help="cascade synthesizer: joe (embedded) or a Piper voice .onnx path")
    p.add_argument(
        "--model",
        help="omni engine: a Qwen2.5-Omni or Qwen3-Omni hub id (Qwen/Qwen2.5-Omni-3B, "
        "Qwen/Qwen3-Omni-30B-A3B-Instruct) or a local dir",
    )
    p.add_argument("--device", help="omni engine: auto, cpu or cuda")
    p.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_const",
        const=False,
        help="omni engine on CUDA: launch every kernel from Python instead of replaying "
        "the vocoder's solver and the code predictor from CUDA graphs",
    )
    p.add_argument("--threads", type=int, help="CPU threads per model")
    p.add_argument("--model-id", help="the served model's name; default omnivox-audio")
    p.add_argument(
        "--no-openai-aliases",
        dest="openai_aliases",
        action="store_const",
        const=False,
        help="do not answer to gpt-4o-audio-preview and the other OpenAI names",
    )
    p.add_argument(
        "--audio-ttl-s", type=int, help="how long audio ids stay usable, in seconds; default 3600"
    )
    p.add_argument("--max-body-bytes", type=int, help="largest request body; default 25 MiB")
    p.add_argument(
        "--max-input-audio-s", type=float, help="longest input audio, in seconds; default 600"
    )
    p.add_argument(
        "--lenient",
        dest="strict_parameters",
        action="store_const",
        const=False,
        help="drop unknown top-level request fields instead of answering 400 unknown_parameter",
    )
    p.add_argument(
        "--cors-origins",
        type=_comma_list,
        help="comma-separated browser origins allowed to call the API "
        "(https://app.example.com,http://localhost:3000), or '*'; default none (no CORS)",
    )
    p.add_argument(
        "--allowed-hosts",
        type=_comma_list,
        help="without keys only loopback Host names (localhost, 127.0.0.1, [::1]) are "
        "answered, against DNS rebinding; add other names, comma-separated",
    )
    p.add_argument(
        "--header-timeout-s",
        type=float,
        help="time for a request's line and headers to arrive, else 408; "
        f"default {defaults['header_timeout_s'].default:g}",
    )
    p.add_argument(
        "--body-timeout-s",
        type=float,
        help="longest pause while a request body arrives, else 408; "
        f"default {defaults['body_timeout_s'].default:g}",
    )
    p.add_argument(
        "--keep-alive-s",
        type=float,
        help="idle keep-alive connections close after this; "
        f"default {defaults['keep_alive_s'].default:g}",
    )
    p.add_argument(
        "--max-header-bytes",
        type=int,
        help="largest request line and headers, else 431; "
        f"default {defaults['max_header_bytes'].default}",
    )
    p.add_argument("--log-level", help="debug, info, warning or error")
    _access_arguments(p)
    p.add_argument(
        "--require-keys",
        action="store_const",
        const=True,
        help="require an API key even when bound to loopback (off loopback keys are always "
        "required)",
    )
    p.add_argument(
        "--limits-file", help="TOML file of tiers, limits and prices laid over the defaults"
    )
    p.add_argument(
        "--ledger-sync",
        choices=["normal", "full"],
        help="SQLite ledger durability: normal survives a killed server, full also a power "
        "cut; default normal",
    )


def _access_arguments(
    p: argparse.ArgumentParser, redis: bool = True, *, ledger_only: bool = False
) -> None:
    p.add_argument(
        "--data-dir",
        help="where audio ids, API keys, the ledger and prepared models are kept; "
        f"default {Settings.model_fields['data_dir'].default}",
    )
    p.add_argument(
        "--access-db",
        help="SQLite file of API keys and the ledger; default DATA_DIR/access.sqlite3",
    )
    if redis and ledger_only:
        p.add_argument(
            "--redis-url",
            help="Redis (redis://HOST:PORT/DB) holding the ledger (servers run with "
            "--ledger redis); the ledger is read there when this is given",
        )
        p.add_argument(
            "--ledger",
            choices=["sqlite", "redis"],
            help="where the usage ledger is; default redis with --redis-url, else sqlite",
        )
    elif redis:
        p.add_argument(
            "--redis-url",
            help="Redis (redis://HOST:PORT/DB) holding the rate-limit counters that every "
            "replica shares",
        )
        p.add_argument(
            "--ledger",
            choices=["sqlite", "redis"],
            help="where the usage ledger is; default sqlite",
        )


def _keys_parser(commands: Any) -> None:
    keys = commands.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage API keys. Once a key exists (revoked ones too), every request "
        "needs one, even on loopback.",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create a key and print it once",
        description="Create an API key. It is printed once, on stdout; only its hash is kept.",
        epilog=_tiers_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--name", required=True, help="a unique name for the key")
    create.add_argument(
        "--tier",
        default="1",
        help="usage tier: free, 1, 2, 3, 4, 5 (or one from --limits-file); default 1",
    )
    create.add_argument("--rpm", type=_positive, help="override the tier's requests per minute")
    create.add_argument("--rpd", type=_positive, help="override the tier's requests per day")
    create.add_argument("--tpm", type=_positive, help="override the tier's tokens per minute")
    create.add_argument("--limits-file", help="TOML file of tiers (to check --tier against)")
    _access_arguments(create, redis=False)
    listing = actions.add_parser(
        "list",
        help="list keys (never the keys themselves)",
        description="List every key, revoked ones too: id, name, tier, limit overrides, "
        "created and revoked times, and the key's last four characters.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    _access_arguments(listing, redis=False)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a key at once, in every server",
        description="Revoke a key: every server sharing this access file refuses it from its "
        "next request.",
    )
    revoke.add_argument("key_ref", metavar="KEY", help="the key's id or name")
    _access_arguments(revoke, redis=False)


def _usage_parser(commands: Any) -> None:
    p = commands.add_parser(
        "usage",
        help="print usage totals and cost from the ledger",
        description="Totals and cost per model from the usage ledger.",
    )
    p.add_argument("--key", help="one key's usage, by id or name (default: every key)")
    p.add_argument(
        "--since", help="unix seconds, an ISO 8601 date or time (UTC), or an age: 24h, 7d"
    )
    p.add_argument("--json", action="store_true", help="print the JSON of GET /v1/usage")
    _access_arguments(p, ledger_only=True)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnivox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"omnivox {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(commands)
    _keys_parser(commands)
    _usage_parser(commands)
    return parser


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def settings_from_args(args: argparse.Namespace) -> Settings:
    fields = Settings.model_fields
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return Settings(**given)


async def _serve(settings: Settings) -> int:
    import uvicorn

    from omnivox.access.setup import build_access, require_keys_error
    from omnivox.engines import create_engine
    from omnivox.server.app import create_app
    from omnivox.server.connections import raise_open_files_limit, uvicorn_config
    from omnivox.store.audio import SqliteAudioStore

    log = logging.getLogger("omnivox")
    try:
        access = build_access(settings)
        await access.limiter.ping()
        await access.ledger.ping()
    except (OSError, ValueError, OmnivoxError) as exc:
        print(f"omnivox: access control can not start: {exc}", file=sys.stderr)
        return 1
    keys = access.keys.list()
    n_active = sum(k.active for k in keys)
    problem = require_keys_error(settings, bool(keys))
    if problem:
        print(f"omnivox: {problem}", file=sys.stderr)
        return 1
    for key in keys:
        if key.active and key.tier not in access.config.tiers:
            log.warning(
                "key %s (%s) has tier %r, which this server's limits do not define: its "
                "requests will be refused (403) until the tier is in --limits-file",
                key.key_id,
                key.name,
                key.tier,
            )
    if n_active:
        log.info("API keys required (%d active)", n_active)
    elif keys:
        log.warning(
            "API keys required, but every key is revoked: every request will be refused "
            "until `omnivox keys create --name NAME` makes one"
        )
    else:
        log.warning(
            "no API keys exist: serving without keys because %s is a loopback address; "
            "create one with `omnivox keys create --name NAME` to require them",
            settings.host,
        )
        if "*" in settings.cors_origins:
            log.warning(
                "--cors-origins '*' without API keys: any web page opened on this machine "
                "can use this server and read its answers"
            )
    try:
        engine = create_engine(settings)
        log.info("loading the %s engine", engine.name)
        await engine.start()
    except ModelUnavailableError as exc:
        print(f"omnivox: {exc.message}", file=sys.stderr)
        return 1
    store = SqliteAudioStore(settings.data_dir / "audio.sqlite3")
    app = create_app(settings, engine, store, access=access, start_engine=False)
    config = uvicorn_config(app, settings)
    raise_open_files_limit()
    log.info("serving on http://%s:%d/v1", settings.host, settings.port)
    await uvicorn.Server(config).serve()
    return 0


def _fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "usage" and args.redis_url and args.ledger is None:
        args.ledger = "redis"  # the only ledger a Redis URL can mean here
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        tune_malloc()
        with asyncio.Runner(loop_factory=_fast_event_loop()) as runner:
            return runner.run(_serve(settings))
    from omnivox.access import admin

    try:
        if args.command == "keys":
            return admin.keys_command(settings, args)
        return asyncio.run(admin.usage_command(settings, args))
    except (ValueError, OSError, OmnivoxError) as exc:
        print(f"omnivox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
