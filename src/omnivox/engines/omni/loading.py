"""Find and load a Qwen2.5-Omni checkpoint: a local directory or a Hugging Face Hub id.

``resolve_model_dir`` turns ``--model`` into a local directory:

- a directory is used as it is (it needs ``config.json``, the weights,
  ``spk_dict.pt``, the tokenizer and ``preprocessor_config.json``);
- anything else is a hub repo id, fetched with ``huggingface_hub`` into
  ``<models_dir>/hub`` (with its progress bars) or found already cached there or
  in the default Hugging Face cache. Offline (``HF_HUB_OFFLINE=1``, or no
  network) and not cached raises ``ModelUnavailableError`` naming the model and
  how to get it.

``load_checkpoint`` loads it with transformers: bf16 on CUDA, float32 on the
CPU; token2wav always in float32 (transformers' own rule: the DiT and BigVGAN
are numerically fragile in half precision). The vision tower is dropped after
loading: the Chat Completions audio API sends no images to this engine, and
it is ~0.7 B parameters of GPU memory. Qwen3-Omni checkpoints are recognised
and refused with a clear message: their talker (multi-codebook, with a code
predictor) and code2wav need a different streaming path.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnivox.errors import ModelUnavailableError

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-3B"
SUPPORTED_TYPES = ("qwen2_5_omni",)
QWEN3_TYPES = ("qwen3_omni_moe",)
MIN_TRANSFORMERS = "5.16"  # older 5.x releases break Qwen2.5-Omni's token2wav or layout
INSTALL_HINT = "pip install 'omnivox[omni]' (on a CPU-only machine install torch==2.13.0 first)"
MAX_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A loaded model with its tokenizer and feature extractor, on ``device``."""

    model: Any  # transformers.Qwen2_5OmniForConditionalGeneration
    tokenizer: Any
    feature_extractor: Any
    device: Any  # torch.device
    dtype: Any  # torch.dtype of the thinker and talker
    model_dir: Path
    name: str


def resolve_model_dir(spec: str | None, models_dir: Path) -> Path:
    """The local directory of the checkpoint ``spec`` names (fetched once if need be)."""
    spec = spec or DEFAULT_MODEL
    local = Path(spec).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelUnavailableError(f"{local} has no config.json: it is not a model directory.")
        return local
    if local.is_absolute() or spec.startswith((".", "~")) or spec.count("/") != 1:
        raise ModelUnavailableError(
            f"Omni model {spec!r} is neither a directory nor a Hugging Face Hub id like "
            f"{DEFAULT_MODEL!r}."
        )
    return _from_hub(spec, models_dir / "hub")


def _from_hub(repo_id: str, cache_dir: Path) -> Path:
    import huggingface_hub
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "") in (
        "1",
        "true",
        "yes",
    )
    # Cached copies first (ours, then the default cache), so that a model that is
    # already on disk never waits on the network; then a download into ours.
    attempts: list[tuple[Path | None, bool]] = [(cache_dir, True), (None, True)]
    if not offline:
        attempts.append((cache_dir, False))
    errors: list[BaseException] = []
    for where, only_local in attempts:
        try:
            folder = huggingface_hub.snapshot_download(
                repo_id, cache_dir=where, local_files_only=only_local
            )
            return Path(folder)
        except Exception as exc:  # not cached here, no network, no such repo ...
            errors.append(exc)
    first = errors[-1]
    if offline:
        why = "HF_HUB_OFFLINE is set"
    else:
        line = (str(first).strip().splitlines() or [""])[0][:MAX_REASON_CHARS]
        why = f"{type(first).__name__}: {line}"
    raise ModelUnavailableError(
        f"Cannot load the omni model {repo_id!r}: it is not in the local cache ({cache_dir} or "
        f"the default Hugging Face cache) and the Hugging Face Hub could not provide it ({why}). "
        f"To fix: on a machine with network run `huggingface-cli download {repo_id} "
        f"--local-dir DIR`, copy DIR here and pass --model DIR (or unset HF_HUB_OFFLINE)."
    ) from first


def model_type(model_dir: Path) -> str:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"{model_dir}/config.json can not be read: {exc}") from exc
    return str(config.get("model_type", ""))


def drop_vision_tower(model: Any) -> None:
    """Free the vision tower (wherever this transformers version keeps it): never used here."""
    for owner in (model.thinker.model, model.thinker):
        if getattr(owner, "visual", None) is not None:
            del owner.visual


def pick_device(setting: str) -> tuple[Any, Any]:
    """(torch.device, dtype) for ``--device`` auto, cpu, cuda or cuda:N."""
    import torch

    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailableError(
            f"--device {setting} was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}); use --device cpu or a CUDA build of torch."
        )
    device = torch.device(setting)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return device, dtype


def import_libraries() -> tuple[Any, Any]:
    """(torch, transformers), or a clear error naming the extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelUnavailableError(
            f"The omni engine needs torch and transformers ({exc.name} is missing): {INSTALL_HINT}."
        ) from exc
    from packaging.version import Version

    if Version(transformers.__version__) < Version(MIN_TRANSFORMERS):
        raise ModelUnavailableError(
            f"transformers {transformers.__version__} is too old for the omni engine "
            f"(its Qwen2.5-Omni is tested from {MIN_TRANSFORMERS} on): "
            f"pip install 'transformers>={MIN_TRANSFORMERS}'."
        )
    return torch, transformers


def load_checkpoint(spec: str | None, models_dir: Path, device_setting: str) -> Checkpoint:
    torch, transformers = import_libraries()
    model_dir = resolve_model_dir(spec, models_dir)
    kind = model_type(model_dir)
    if kind in QWEN3_TYPES:
        raise ModelUnavailableError(
            f"{model_dir} is a Qwen3-Omni checkpoint ({kind}); transformers "
            f"{transformers.__version__} can run it, but this engine streams Qwen2.5-Omni "
            "only (Qwen/Qwen2.5-Omni-3B or -7B)."
        )
    if kind not in SUPPORTED_TYPES:
        raise ModelUnavailableError(
            f"{model_dir} holds a {kind or 'unknown'!r} model; the omni engine runs "
            "Qwen2.5-Omni checkpoints (Qwen/Qwen2.5-Omni-3B or -7B)."
        )
    device, dtype = pick_device(device_setting)
    try:
        model = transformers.Qwen2_5OmniForConditionalGeneration.from_pretrained(
            model_dir, dtype=dtype, attn_implementation="sdpa"
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        extractor = transformers.WhisperFeatureExtractor.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"Cannot load the omni model from {model_dir}: {exc}") from exc
    if not getattr(model, "has_talker", False) or not model.speaker_map:
        raise ModelUnavailableError(
            f"{model_dir} has no talker or no speakers (spk_dict.pt): it can not speak."
        )
    drop_vision_tower(model)
    model.eval()
    model.to(device)
    model.token2wav.float()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Checkpoint(
        model=model,
        tokenizer=tokenizer,
        feature_extractor=extractor,
        device=device,
        dtype=dtype,
        model_dir=model_dir,
        name=spec or DEFAULT_MODEL,
    )
