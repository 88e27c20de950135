"""Find and load a Qwen2.5-Omni or Qwen3-Omni checkpoint: a local directory or a hub id.

``resolve_model_dir`` turns ``--model`` into a local directory:

- a directory is used as it is (it needs ``config.json``, the weights, the
  tokenizer and ``preprocessor_config.json``; Qwen2.5-Omni also ``spk_dict.pt``);
- anything else is a hub repo id, fetched with ``huggingface_hub`` into
  ``<models_dir>/hub`` (with its progress bars) or found already cached there or
  in the default Hugging Face cache. Offline (``HF_HUB_OFFLINE=1``, or no
  network) and not cached raises ``ModelUnavailableError`` naming the model and
  how to get it.

``load_checkpoint`` loads it with transformers, the family read from
``config.json`` (``qwen2_5_omni`` or ``qwen3_omni_moe``): bf16 on CUDA,
float32 on the CPU; Qwen2.5-Omni's token2wav always in float32
(transformers' own rule: the DiT and BigVGAN are numerically fragile in half
precision), Qwen3-Omni's Code2Wav in the model's dtype, as its ``generate``
runs it. The vision tower is dropped after loading: the Chat Completions audio
API sends no images to this engine, and it is ~0.6-0.7 B parameters of GPU
memory. ``Checkpoint.speakers`` names the voices (Qwen2.5: ``spk_dict.pt``;
Qwen3: the talker config's ``speaker_id``) with the id that starts speech in
each.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omnivox.engines.hub import hub_failure_reason
from omnivox.errors import ModelUnavailableError

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-3B"
Family = Literal["qwen2.5", "qwen3"]
FAMILIES: Mapping[str, Family] = {"qwen2_5_omni": "qwen2.5", "qwen3_omni_moe": "qwen3"}
MIN_TRANSFORMERS = "5.16"  # older 5.x releases break Qwen2.5-Omni's token2wav or layout
MIN_TRANSFORMERS_QWEN3 = "5.23"  # the batched Qwen3-Omni generate() this engine is tested against
INSTALL_HINT = "pip install 'omnivox[omni]' (on a CPU-only machine install torch==2.13.0 first)"


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
    family: Family = "qwen2.5"
    speakers: Mapping[str, int] | None = None  # display name -> the id that starts its speech

    def speaker_ids(self) -> Mapping[str, int]:
        return self.speakers if self.speakers is not None else speaker_ids(self.model, self.family)


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
    why = hub_failure_reason(first, offline)
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


def speaker_ids(model: Any, family: Family) -> dict[str, int]:
    """Display name -> the speaker's id: Qwen2.5's text bos token, Qwen3's codec token."""
    from omnivox.engines.omni.speakers import display_name

    if family == "qwen3":
        table = getattr(model.config.talker_config, "speaker_id", None) or {}
        return {display_name(str(key)): int(value) for key, value in table.items()}
    speaker_map = getattr(model, "speaker_map", None) or {}
    return {name: int(params["bos_token"]) for name, params in speaker_map.items()}


def load_checkpoint(spec: str | None, models_dir: Path, device_setting: str) -> Checkpoint:
    torch, transformers = import_libraries()
    model_dir = resolve_model_dir(spec, models_dir)
    kind = model_type(model_dir)
    family = FAMILIES.get(kind)
    if family is None:
        raise ModelUnavailableError(
            f"{model_dir} holds a {kind or 'unknown'!r} model; the omni engine runs "
            "Qwen2.5-Omni (Qwen/Qwen2.5-Omni-3B or -7B) and Qwen3-Omni "
            "(Qwen/Qwen3-Omni-30B-A3B-Instruct) checkpoints."
        )
    from packaging.version import Version

    if family == "qwen3" and Version(transformers.__version__) < Version(MIN_TRANSFORMERS_QWEN3):
        raise ModelUnavailableError(
            f"{model_dir} is a Qwen3-Omni checkpoint; transformers {transformers.__version__} "
            f"can not run it here: pip install 'transformers>={MIN_TRANSFORMERS_QWEN3}'."
        )
    device, dtype = pick_device(device_setting)
    model_class = (
        transformers.Qwen3OmniMoeForConditionalGeneration
        if family == "qwen3"
        else transformers.Qwen2_5OmniForConditionalGeneration
    )
    try:
        model = model_class.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa")
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        extractor = transformers.WhisperFeatureExtractor.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"Cannot load the omni model from {model_dir}: {exc}") from exc
    speakers = speaker_ids(model, family) if getattr(model, "has_talker", False) else {}
    if not speakers:
        where = "speaker_id in its talker config" if family == "qwen3" else "spk_dict.pt"
        raise ModelUnavailableError(
            f"{model_dir} has no talker or no speakers ({where}): it can not speak."
        )
    drop_vision_tower(model)
    model.eval()
    model.to(device)
    if family == "qwen2.5":
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
        family=family,
        speakers=speakers,
    )
