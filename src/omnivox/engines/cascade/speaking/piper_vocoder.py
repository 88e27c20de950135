"""A Piper voice run in two parts, its vocoder a window at a time: bounded memory, early sound.

A Piper (VITS) voice turns phoneme ids into latent frames (the *head*: text
encoder, durations, flow), and its vocoder (HiFi-GAN, the graph's ``/dec/``
nodes) turns frames into samples, 256 per frame. Run whole, the vocoder's memory
grows with the sentence and no sample exists until the last one does.
``split_vocoder`` cuts the graph in two; ``VoiceRunner`` runs the head over the
sentence, then the vocoder over windows of frames (``FIRST_WINDOW_FRAMES``,
~0.37 s of speech, then ``WINDOW_FRAMES``, ~1.1 s), each widened by the
vocoder's receptive field (``measure_overlap``) and trimmed back: the samples of
one whole run (to float rounding), in the memory of one window.
``prepare_voice`` rewrites a voice once (``piper_noise``, the cut, the overlap)
into ``<models_dir>/piper-prepared/<digest>/`` (written, then renamed), and the
parts are loaded from there by path (kept as bytes where it can not be written).
A graph the cut does not fit runs whole, as one window. Measurements:
docs/performance.md. This module knows nothing of text or phonemes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnivox.engines.cascade.speaking.onnx_subset import ONNX_FLOAT, onnx_classes
from omnivox.engines.cascade.speaking.piper_noise import make_noise_reproducible

log = logging.getLogger("omnivox.cascade")

VOCODER_PREFIX = "/dec/"
FIRST_WINDOW_FRAMES = 32
WINDOW_FRAMES = 96
OVERLAP_MARGIN_FRAMES = 2
PROBE_FRAMES = 129  # the impulse sits in the middle of this many frames
IMPULSE_TOLERANCE = 1e-6
PREPARED_FORMAT = 1  # bumped whenever what ``prepare_voice`` writes changes
PREPARED_DIR = "piper-prepared"
MANIFEST = "voice.json"


@dataclass(frozen=True, slots=True)
class Vocoder:
    """A voice's vocoder cut from its graph: it takes ``latent``, frames of ``channels``."""

    model: bytes
    latent: str
    channels: int


def split_vocoder(model: Any) -> Vocoder | None:
    """Cut the vocoder from a voice model (an ``onnx_subset`` ModelProto), leaving the
    head in ``model``; None, and ``model`` untouched, if the cut does not fit it."""
    graph = model.graph
    first = next((n for n in graph.node if n.name.startswith(VOCODER_PREFIX)), None)
    if first is None or not graph.output or len(first.input) < 2:
        return None
    latent = first.input[0]
    weights = {t.name: t for t in graph.initializer}
    kernel = weights.get(first.input[1])
    if kernel is None or len(kernel.dims) != 3:
        return None  # not a convolution over [1, channels, frames]
    channels = int(kernel.dims[1])
    audio = graph.output[0]
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    vocoder_ids: set[int] = set()
    todo = [audio.name]
    while todo:  # the nodes the audio needs, back to the latent frames
        name = todo.pop()
        if name == latent or name in weights or not name:
            continue
        if name not in producer:
            return None  # a graph input other than the latent frames: no clean cut
        index = producer[name]
        if index not in vocoder_ids:
            vocoder_ids.add(index)
            todo.extend(graph.node[index].input)
    head_nodes = [n for i, n in enumerate(graph.node) if i not in vocoder_ids]
    vocoder_nodes = [n for i, n in enumerate(graph.node) if i in vocoder_ids]
    made_by_vocoder = {out for n in vocoder_nodes for out in n.output}
    needed_by_head = {name for n in head_nodes for name in n.input}
    if made_by_vocoder & (needed_by_head | {o.name for o in graph.output[1:]}):
        return None  # the vocoder's work is needed elsewhere: no clean cut

    classes = onnx_classes()
    vocoder = classes["ModelProto"](ir_version=model.ir_version)
    vocoder.opset_import.extend(model.opset_import)
    _fill(vocoder.graph, vocoder_nodes, weights.values(), [audio])
    vocoder.graph.input.add(name=latent).type.tensor_type.elem_type = ONNX_FLOAT
    model_bytes = bytes(vocoder.SerializeToString())
    head_value = classes["ValueInfoProto"](name=latent)
    head_value.type.tensor_type.elem_type = ONNX_FLOAT
    kept_outputs = [head_value, *graph.output[1:]]
    _fill(graph, head_nodes, list(weights.values()), kept_outputs)
    return Vocoder(model=model_bytes, latent=latent, channels=channels)


def _fill(
    graph: Any,
    nodes: list[Any],
    initializers: Iterable[Any],
    outputs: list[Any],
) -> None:
    """Give ``graph`` these nodes (only), the initializers they use and these outputs."""
    used = {name for n in nodes for name in n.input}
    kept = [t for t in initializers if t.name in used]
    del graph.node[:]
    del graph.initializer[:]
    del graph.output[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    graph.output.extend(outputs)


Vocode = Callable[[np.ndarray], np.ndarray]


def measure_overlap(vocoder: Vocode, channels: int) -> tuple[int, int]:
    """(frames of overlap, samples per frame) for a vocoder, from its receptive field."""
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((1, channels, PROBE_FRAMES)).astype(np.float32)
    middle = PROBE_FRAMES // 2
    plain = vocoder(frames).reshape(-1)
    hop = len(plain) // PROBE_FRAMES
    frames[:, :, middle] += 1.0
    changed = np.nonzero(np.abs(vocoder(frames).reshape(-1) - plain) > IMPULSE_TOLERANCE)[0]
    if len(changed) == 0:
        return OVERLAP_MARGIN_FRAMES, hop
    before = middle * hop - int(changed[0])
    after = int(changed[-1]) + 1 - (middle + 1) * hop
    reach_frames = -(-max(before, after, 0) // hop)  # rounded up
    return reach_frames + OVERLAP_MARGIN_FRAMES, hop


def windows(n_frames: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, end) of each window's own frames, and (start, end) of the frames it runs on."""
    start, size = 0, FIRST_WINDOW_FRAMES
    while start < n_frames:
        end = min(n_frames, start + size)
        if n_frames - end < size // 2:  # no window much shorter than its overlap at the end
            end = n_frames
        yield start, end, max(0, start - overlap), min(n_frames, end + overlap)
        start, size = end, WINDOW_FRAMES


class VoiceRunner:
    """A sentence's samples from its feeds, a window at a time (whole if not cut)."""

    def __init__(
        self,
        head: Any,
        vocoder: Any | None = None,
        *,
        latent: str = "",
        overlap_frames: int = 0,
        hop_samples: int = 0,
    ) -> None:
        self._head = head
        self._vocoder = vocoder
        self._latent = latent
        self.overlap_frames = overlap_frames
        self.hop_samples = hop_samples

    def vocode(self, frames: np.ndarray) -> np.ndarray:
        assert self._vocoder is not None
        out = self._vocoder.run(None, {self._latent: np.ascontiguousarray(frames)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def audio(self, feeds: Mapping[str, np.ndarray]) -> Iterator[np.ndarray]:
        """The samples of one sentence, in order, one array per window."""
        first = self._head.run(None, dict(feeds))[0]
        if self._vocoder is None:
            yield np.asarray(first, dtype=np.float32).reshape(-1)
            return
        hop = self.hop_samples
        for start, end, run_start, run_end in windows(first.shape[-1], self.overlap_frames):
            samples = self.vocode(first[..., run_start:run_end])
            skip = (start - run_start) * hop
            yield samples[skip : skip + (end - start) * hop]


@dataclass(frozen=True, slots=True)
class PreparedVoice:
    """Where a prepared voice's parts are (paths, or bytes where none could be written)."""

    head: str | bytes
    vocoder: str | bytes | None
    latent: str
    seeded: bool
    overlap_frames: int
    hop_samples: int


@dataclass(frozen=True, slots=True)
class _Manifest:
    latent: str
    seeded: bool
    overlap_frames: int
    hop_samples: int


def prepare_voice(
    model_path: Path, cache_dir: Path, session: Callable[[str | bytes], Any]
) -> PreparedVoice:
    """The voice's parts, rewritten and cut once and then read from ``cache_dir``.

    ``session`` makes an onnxruntime session from a path or bytes (to measure the
    vocoder's overlap).
    """
    model_bytes = model_path.read_bytes()
    digest = hashlib.sha256(model_bytes).hexdigest()[:24]
    folder = cache_dir / PREPARED_DIR / f"{digest}-{PREPARED_FORMAT}"
    ready = _read_prepared(folder)
    if ready is not None:
        return ready
    model = onnx_classes()["ModelProto"]()
    model.ParseFromString(model_bytes)
    del model_bytes
    seeded = make_noise_reproducible(model)
    cut = split_vocoder(model)
    files = {"head.onnx": bytes(model.SerializeToString())}  # the whole graph if not cut
    del model
    if cut is None:
        log.info("voice %s: its vocoder can not be cut; it runs whole", model_path.name)
        manifest = _Manifest("", seeded, 0, 0)
    else:
        vocoder = session(cut.model)
        overlap, hop = measure_overlap(
            lambda frames: vocoder.run(None, {cut.latent: frames})[0], cut.channels
        )
        manifest = _Manifest(cut.latent, seeded, overlap, hop)
        files["vocoder.onnx"] = cut.model
    try:
        _write_folder(folder, files, manifest)
    except OSError as exc:
        log.warning(
            "could not keep the prepared voice in %s (%s); it is held in memory instead",
            folder,
            exc,
        )
        return PreparedVoice(
            head=files["head.onnx"], vocoder=files.get("vocoder.onnx"), **asdict(manifest)
        )
    prepared = _read_prepared(folder)
    assert prepared is not None
    return prepared


def _read_prepared(folder: Path) -> PreparedVoice | None:
    try:
        manifest = _Manifest(**json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    vocoder = folder / "vocoder.onnx"
    return PreparedVoice(
        head=str(folder / "head.onnx"),
        vocoder=str(vocoder) if manifest.latent else None,
        **asdict(manifest),
    )


def _write_folder(folder: Path, files: Mapping[str, bytes], manifest: _Manifest) -> None:
    """Write ``files`` and the manifest into ``folder``, all at once or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for name, data in {**files, MANIFEST: json.dumps(asdict(manifest)).encode()}.items():
            with (staging / name).open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        try:
            os.rename(staging, folder)
        except OSError:
            if _read_prepared(folder) is None:  # not another server's finished copy
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
