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
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

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


# ``omnivox serve``'s options, in the order --help and README.md list them: the Settings
# field each sets and, where the flag is not the field's name, the flag. The help text
# and default come from the field (its description and default), never from here.
_SERVE_OPTIONS: tuple[tuple[str, str | None], ...] = (
    ("host", None),
    ("port", None),
    ("engine", None),
    ("data_dir", None),
    ("cache_dir", None),
    ("asr", None),
    ("llm", None),
    ("tts", None),
    ("llm_model", None),
    ("llm_api_key", None),
    ("llm_dialect", None),
    ("llm_context", None),
    ("asr_model", None),
    ("tts_model", None),
    ("audio_api_key", None),
    ("upstream_timeout_s", None),
    ("model", None),
    ("device", None),
    ("cuda_graphs", "--no-cuda-graphs"),
    ("upstream", None),
    ("upstream_model", None),
    ("upstream_api_key", None),
    ("threads", None),
    ("model_id", None),
    ("openai_aliases", "--no-openai-aliases"),
    ("audio_ttl_s", None),
    ("max_body_bytes", None),
    ("max_input_audio_s", None),
    ("response_ttl_s", None),
    ("batch_concurrency", None),
    ("strict_parameters", "--lenient"),
    ("require_keys", None),
    ("access_db", None),
    ("redis_url", None),
    ("ledger", None),
    ("ledger_sync", None),
    ("limits_file", None),
    ("cors_origins", None),
    ("allowed_hosts", None),
    ("header_timeout_s", None),
    ("body_timeout_s", None),
    ("keep_alive_s", None),
    ("max_header_bytes", None),
    ("tls_certfile", None),
    ("tls_keyfile", None),
    ("log_level", None),
)
# Fields whose unset default (None) is resolved by a Settings property from --data-dir.
_DERIVED_FROM_DATA_DIR = {"cache_dir": "models_dir", "access_db": "access_db_path"}
# What an engine uses when a field is unset (the omni engine's DEFAULT_MODEL; cli may not
# import engine packages, so tests/unit/test_options_doc.py checks that the two agree).
UNSET_MEANS = {"model": "Qwen/Qwen2.5-Omni-3B"}


def _shown_default(name: str) -> str:
    """A field's default as a person reads it ("" for a flag's)."""
    field = Settings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if isinstance(value, bool):
        return ""
    if value is None and name in _DERIVED_FROM_DATA_DIR:
        probe = Settings.model_construct(data_dir=Path("DATA_DIR"))
        return str(getattr(probe, _DERIVED_FROM_DATA_DIR[name]))
    if value is None and name in UNSET_MEANS:
        return UNSET_MEANS[name]
    if value is None or value == []:
        return "none"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return "~" + text[len(home) :] if text.startswith(home + "/") else text
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and name.endswith("_bytes"):
        for size, unit in ((1024 * 1024, "MiB"), (1024, "KiB")):
            if value % size == 0:
                return f"{value} ({value // size} {unit})"
    return str(value)


def _option_doc(name: str, flag: str | None) -> tuple[str, str, str]:
    """(flag, shown default, meaning) of one serve option, from its Settings field."""
    field = Settings.model_fields[name]
    meaning = field.description or ""
    if field.annotation is bool:
        switch = "turn off (on by default)" if field.default else "turn on (off by default)"
        meaning = f"{switch}: {meaning}"
    elif field.annotation == list[str]:
        meaning += "; comma-separated"
    return flag or "--" + name.replace("_", "-"), _shown_default(name), meaning


def _add_option(p: argparse.ArgumentParser, name: str, flag: str | None = None) -> None:
    """Add the option that sets Settings field ``name``, typed and described by the field."""
    option, default, meaning = _option_doc(name, flag)
    help_text = f"{meaning}; default {default}" if default else meaning
    annotation = Settings.model_fields[name].annotation
    kwargs: dict[str, Any] = {"dest": name, "help": help_text}
    if annotation is bool:
        kwargs.update(action="store_const", const=not Settings.model_fields[name].default)
    elif annotation is int or annotation is float:
        kwargs["type"] = annotation
    elif annotation == list[str]:
        kwargs["type"] = _comma_list
    elif get_origin(annotation) is Literal:
        kwargs["choices"] = list(get_args(annotation))
    p.add_argument(option, **kwargs)


# The options README.md's Configuration table shows; docs/configuration.md shows them all.
COMMON_OPTIONS = frozenset(
    {
        "host",
        "port",
        "engine",
        "data_dir",
        "asr",
        "llm",
        "tts",
        "model",
        "threads",
        "max_input_audio_s",
        "require_keys",
        "redis_url",
        "ledger",
        "cors_origins",
    }
)


def options_table(names: frozenset[str] | None = None) -> str:
    """The options (``names``; None: every one) as a Markdown table: README.md's and
    docs/configuration.md's (tests/unit/test_options_doc.py keeps them generated)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for name, flag in _SERVE_OPTIONS:
        if names is not None and name not in names:
            continue
        option, default, meaning = _option_doc(name, flag)
        shown = f"`{default}`" if default not in ("", "none") else default
        rows.append(f"| `{option}` | {shown} | {meaning} |")
    return "\n".join(rows)


def _serve_parser(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="run the API server",
        description="Run the API server. Flags override OMNIVOX_* environment variables.",
    )
    for name, flag in _SERVE_OPTIONS:
        _add_option(p, name, flag)


def _access_arguments(p: argparse.ArgumentParser, *, ledger_only: bool = False) -> None:
    _add_option(p, "data_dir")
    _add_option(p, "access_db")
    if ledger_only:
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
    _access_arguments(create)
    listing = actions.add_parser(
        "list",
        help="list keys (never the keys themselves)",
        description="List every key, revoked ones too: id, name, tier, limit overrides, "
        "created and revoked times, and the key's last four characters.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    _access_arguments(listing)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a key at once, in every server",
        description="Revoke a key: every server sharing this access file refuses it from its "
        "next request.",
    )
    revoke.add_argument("key_ref", metavar="KEY", help="the key's id or name")
    _access_arguments(revoke)


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
    from omnivox.serving import batch_admin

    batch_admin.add_parser(commands)
    return parser


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def settings_from_args(args: argparse.Namespace) -> Settings:
    fields = Settings.model_fields
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    return Settings(**given)


def tls_problem(settings: Settings) -> str | None:
    """Why the TLS options can not serve (None when they can, or are not given)."""
    certfile, keyfile = settings.tls_certfile, settings.tls_keyfile
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        return "--tls-certfile and --tls-keyfile go together: give both, or neither"
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        return f"the TLS certificate and key can not be used: {exc}"
    return None


async def _serve(settings: Settings) -> int:
    import uvicorn

    from omnivox.access.setup import build_access, require_keys_error
    from omnivox.engines import create_engine
    from omnivox.server.app import create_app
    from omnivox.server.connections import raise_open_files_limit, uvicorn_config
    from omnivox.store.audio import SqliteAudioStore

    log = logging.getLogger("omnivox")
    if problem := tls_problem(settings):
        print(f"omnivox: {problem}", file=sys.stderr)
        return 1
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
    scheme = "https" if settings.tls_certfile else "http"
    log.info("serving on %s://%s:%d/v1", scheme, settings.host, settings.port)
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
    if args.command == "batches":
        from omnivox.serving import batch_admin

        return batch_admin.batches_command(settings.data_dir, args)
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
