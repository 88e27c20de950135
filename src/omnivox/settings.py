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

    # Each description is the option's one explanation: ``omnivox serve --help`` and
    # README.md's Configuration table are generated from it (omnivox.cli.options_table).
    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="port to bind")
    engine: str = Field(
        default="cascade",
        description="cascade (a recogniser, chat model and synthesizer, embedded, on the CPU), "
        "omni (a native speech-to-speech model on a GPU) or package.module:factory",
    )
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="where audio ids, API keys, the ledger and prepared models are kept",
    )
    cache_dir: Path | None = Field(default=None, description="where prepared models are kept")
    model_id: str = Field(default="omnivox-audio", description="the served model's name")
    model_snapshot_date: str = "2026-11-22"
    openai_aliases: bool = Field(
        default=True,
        description="also answer to OpenAI's model names gpt-4o-audio-preview, "
        "gpt-4o-mini-audio-preview, gpt-audio and gpt-audio-mini",
    )
    audio_ttl_s: int = Field(
        default=3600, ge=1, description="how long audio ids stay usable, in seconds"
    )
    max_body_bytes: int = Field(
        default=25 * MEBIBYTE, ge=1024, description="largest request body, in bytes"
    )
    max_input_audio_s: float = Field(
        default=600.0, gt=0, description="longest input audio, in seconds"
    )
    response_ttl_s: int = Field(
        default=30 * 24 * 3600,
        ge=1,
        description="how long stored responses (/v1/responses with store) are kept, in "
        "seconds (OpenAI keeps them 30 days)",
    )
    batch_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="how many lines of batches (/v1/batches) run at once, only while no "
        "interactive request is being answered",
    )
    # what a keyless server trusts, and the connection limits (see docs/security.md)
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API (CORS), such as "
        "https://app.example.com and http://localhost:3000, or '*' for any",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names answered without an API key, besides the loopback names "
        "(localhost, 127.0.0.1, [::1]); others are refused, against DNS rebinding",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="time for a request's line and headers to arrive, in seconds (408 after)",
    )
    body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="longest pause while a request's body arrives, in seconds (408 after)",
    )
    keep_alive_s: float = Field(
        default=5.0,
        gt=0,
        description="idle keep-alive connections close after this many seconds",
    )
    tls_certfile: Path | None = Field(
        default=None,
        description="serve HTTPS and WSS with this PEM certificate (chain), with "
        "--tls-keyfile; clients that only speak wss:// to /v1/realtime (the OpenAI Node "
        "SDK) need it or a TLS proxy in front",
    )
    tls_keyfile: Path | None = Field(
        default=None, description="the PEM private key of --tls-certfile"
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="largest request line and headers, together, in bytes (431 beyond)",
    )
    strict_parameters: bool = Field(
        default=True,
        description="answer unknown top-level request fields with 400 unknown_parameter, "
        "rather than dropping them",
    )
    # cascade parts
    asr: str = Field(
        default="base",
        description="cascade recogniser: base (embedded Whisper base), another faster-whisper "
        "size, a hub repo id, a local CTranslate2 dir, or the http(s)://HOST/v1 URL of a "
        "/v1/audio/transcriptions server",
    )
    llm: str = Field(
        default="smollm2",
        description="cascade chat model: smollm2 (embedded SmolLM2-135M-Instruct), "
        "a local .gguf path, repo_id/file.gguf, or the http(s)://HOST/v1 URL of an "
        "OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, Ollama)",
    )
    tts: str = Field(
        default="joe",
        description="cascade synthesizer: joe (an embedded Piper voice), a Piper voice .onnx "
        "path, a Piper voice name (en_US-lessac-medium), or the http(s)://HOST/v1 URL of a "
        "/v1/audio/speech server",
    )
    llm_model: str | None = Field(
        default=None,
        description="with --llm URL: the upstream's model to ask for (default: the first "
        "its /v1/models lists)",
    )
    llm_api_key: str | None = Field(
        default=None,
        description="with --llm URL: the API key sent to the upstream (better set as "
        "OMNIVOX_LLM_API_KEY)",
    )
    llm_dialect: Literal["auto", "vllm", "sglang", "llamacpp", "ollama", "openai"] = Field(
        default="auto",
        description="with --llm URL: how the upstream takes constrained decoding and its "
        "other extensions; auto asks the upstream",
    )
    llm_context: int | None = Field(
        default=None,
        ge=256,
        description="with --llm URL: the upstream model's context window in tokens (default: "
        "what the upstream reports, else 4096)",
    )
    asr_model: str = Field(
        default="whisper-1", description="with --asr URL: the upstream's model to ask for"
    )
    tts_model: str = Field(
        default="tts-1", description="with --tts URL: the upstream's model to ask for"
    )
    audio_api_key: str | None = Field(
        default=None,
        description="with --asr URL or --tts URL: the API key sent to those upstreams "
        "(better set as OMNIVOX_AUDIO_API_KEY)",
    )
    upstream_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="how long an upstream may take to connect and to begin its answer, in seconds",
    )
    threads: int = Field(default=2, ge=1, description="CPU threads per model")
    # omni engine
    model: str | None = Field(
        default=None,
        description="omni engine: a Qwen2.5-Omni or Qwen3-Omni hub id (Qwen/Qwen2.5-Omni-7B, "
        "Qwen/Qwen3-Omni-30B-A3B-Instruct) or a local dir",
    )
    device: str = Field(
        default="auto", description="omni engine: auto (CUDA when present), cpu, cuda or cuda:N"
    )
    cuda_graphs: bool = Field(
        default=True,
        description="replay the omni engine's vocoder solver and code predictor from CUDA "
        "graphs (on CUDA), rather than launching every kernel from Python",
    )
    # vllm-omni engine
    upstream: str | None = Field(
        default=None,
        description="with --engine vllm-omni: the http(s)://HOST/v1 URL(s) of vLLM-Omni "
        "servers (comma-separated) that serve Qwen2.5-Omni or Qwen3-Omni",
    )
    upstream_model: str | None = Field(
        default=None,
        description="with --engine vllm-omni: the upstream's model to ask for (default: the "
        "first its /v1/models lists)",
    )
    upstream_api_key: str | None = Field(
        default=None,
        description="with --engine vllm-omni: the API key sent to the upstream (better set as "
        "OMNIVOX_UPSTREAM_API_KEY)",
    )
    log_level: str = Field(default="info", description="debug, info, warning or error")
    # access control: API keys, rate limits, the usage ledger
    access_db: Path | None = Field(
        default=None,
        description="SQLite file of API keys (their hashes only) and the usage ledger",
    )
    require_keys: bool = Field(
        default=False,
        description="require an API key even on loopback (keys are always required on "
        "other addresses)",
    )
    limits_file: Path | None = Field(
        default=None, description="TOML file of tiers, limits and prices laid over the defaults"
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis (redis://HOST:PORT/DB) holding the rate-limit counters that every "
        "replica shares",
    )
    ledger: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="where the usage ledger is written: sqlite or redis"
    )
    ledger_sync: Literal["normal", "full"] = Field(
        default="normal",
        description="SQLite durability of the ledger: normal survives a killed server, "
        "full also a power cut",
    )

    @property
    def models_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "models"

    @property
    def access_db_path(self) -> Path:
        return self.access_db if self.access_db is not None else self.data_dir / "access.sqlite3"
