"""The ``omnivox`` command line.

``omnivox serve`` loads the engine (failing with one clear message when a model
is missing) and then serves the API with uvicorn. Heavy libraries are only
imported once a command needs them, so ``omnivox --help`` is instant.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from omnivox import __version__
from omnivox.errors import ModelUnavailableError
from omnivox.settings import Settings

DESCRIPTION = """\
omnivox serves OpenAI's Chat Completions audio API (audio in, text and speech out,
streamed) from open-weight models. Point the official openai SDK at
http://HOST:PORT/v1 and use the model name omnivox-audio (or gpt-4o-audio-preview).
Every option can also be set as an environment variable: --max-body-bytes is
OMNIVOX_MAX_BODY_BYTES, and so on.
"""


def _serve_parser(commands: Any) -> None:
    defaults = Settings.model_fields
    p = commands.add_parser(
        "serve",
        help="run the API server",
        description="Run the API server. Flags override OMNIVOX_* environment variables.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", help=f"address to bind; default {defaults['host'].default}")
    p.add_argument("--port", type=int, help=f"port to bind; default {defaults['port'].default}")
    p.add_argument(
        "--engine",
        help="cascade (embedded CPU models, the default), omni (a native speech-to-speech "
        "model on a GPU) or package.module:factory",
    )
    p.add_argument(
        "--data-dir",
        help="where audio ids and prepared models are kept; "
        f"default {defaults['data_dir'].default}",
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
    p.add_argument("--model", help="omni engine: a hub id (Qwen/Qwen2.5-Omni-3B) or a local dir")
    p.add_argument("--device", help="omni engine: auto, cpu or cuda")
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
    p.add_argument("--log-level", help="debug, info, warning or error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnivox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"omnivox {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(commands)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    return Settings(**given)


async def _serve(settings: Settings) -> int:
    import uvicorn

    from omnivox.engines import create_engine
    from omnivox.server.app import create_app
    from omnivox.store.audio import SqliteAudioStore

    log = logging.getLogger("omnivox")
    try:
        engine = create_engine(settings)
        log.info("loading the %s engine", engine.name)
        await engine.start()
    except ModelUnavailableError as exc:
        print(f"omnivox: {exc.message}", file=sys.stderr)
        return 1
    store = SqliteAudioStore(settings.data_dir / "audio.sqlite3")
    app = create_app(settings, engine, store, start_engine=False)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False
    )
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
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        with asyncio.Runner(loop_factory=_fast_event_loop()) as runner:
            return runner.run(_serve(settings))
    return 2


if __name__ == "__main__":
    sys.exit(main())
