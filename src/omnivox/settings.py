"""The one Settings object of omnivox.

Built once (from command-line flags, then ``OMNIVOX_*`` environment variables,
then defaults) and passed to whatever needs it; nothing else reads the
environment for configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "omnivox"
MEBIBYTE = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMNIVOX_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    engine: str = Field(
        default="cascade",
        description="engine name (cascade, omni) or 'package.module:factory'",
    )
    data_dir: Path = DEFAULT_DATA_DIR
    cache_dir: Path | None = Field(
        default=None, description="where prepared models are kept; default <data-dir>/models"
    )
    model_id: str = "omnivox-audio"
    model_snapshot_date: str = "2026-11-22"
    openai_aliases: bool = Field(
        default=True,
        description="answer to gpt-4o-audio-preview, gpt-4o-mini-audio-preview, gpt-audio "
        "and gpt-audio-mini",
    )
    audio_ttl_s: int = Field(default=3600, ge=1)
    max_body_bytes: int = Field(default=25 * MEBIBYTE, ge=1024)
    max_input_audio_s: float = Field(default=600.0, gt=0)
    # what a keyless server trusts, and the connection limits (see docs/security.md)
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API (CORS); '*' for any; default none",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names accepted from callers without a key, besides loopback names",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="time for a connection to send a request's headers"
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="longest pause allowed while a request's body arrives"
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="how long an idle keep-alive connection stays open"
    )
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="largest request line and headers, together"
    )
    strict_parameters: bool = Field(
        default=True,
        description="reject unknown top-level request fields with 400 unknown_parameter",
    )
    # cascade parts
    asr: str = Field(default="base", description="faster-whisper size, hub repo id or local dir")
    llm: str = Field(default="smollm2", description="local .gguf path or 'repo_id/file.gguf'")
    tts: str = Field(default="joe", description="Piper voice: .onnx path or voice name")
    threads: int = Field(default=2, ge=1, description="CPU threads per model")
    # omni engine
    model: str | None = Field(
        default=None, description="hub id or local dir of a native speech model"
    )
    device: str = Field(default="auto", description="auto, cpu or cuda")
    cuda_graphs: bool = Field(
        default=True,
        description="omni engine on CUDA: replay the vocoder's solver and the code "
        "predictor from CUDA graphs",
    )
    log_level: str = "info"
    # access control: API keys, rate limits, the usage ledger
    access_db: Path | None = Field(
        default=None,
        description="SQLite file of API keys (hashes only) and the usage ledger; "
        "default <data-dir>/access.sqlite3",
    )
    require_keys: bool = Field(
        default=False,
        description="require an API key even on loopback; off-loopback keys are always required",
    )
    limits_file: Path | None = Field(
        default=None, description="TOML file of tiers, limits and prices (overrides the defaults)"
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis holding the rate-limit counters, shared by every replica",
    )
    ledger: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="where the usage ledger is written"
    )
    ledger_sync: Literal["normal", "full"] = Field(
        default="normal",
        description="SQLite synchronous mode of the ledger: normal survives a killed server, "
        "full also a power cut",
    )

    @property
    def models_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "models"

    @property
    def access_db_path(self) -> Path:
        return self.access_db if self.access_db is not None else self.data_dir / "access.sqlite3"
