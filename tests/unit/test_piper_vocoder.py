"""The windowed vocoder's arithmetic, and the cut on graphs it must leave whole: windows
cover every frame once, the overlap is found from the receptive field, and a graph
without a vocoder is prepared and run whole."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from omnivox.engines.cascade.speaking.onnx_subset import ONNX_FLOAT, onnx_classes
from omnivox.engines.cascade.speaking.piper_vocoder import (
    FIRST_WINDOW_FRAMES,
    OVERLAP_MARGIN_FRAMES,
    WINDOW_FRAMES,
    VoiceRunner,
    measure_overlap,
    prepare_voice,
    split_vocoder,
    windows,
)

HOP = 4


@pytest.mark.parametrize("n_frames", [1, 20, 32, 40, 60, 128, 129, 200, 1000])
def test_windows_cover_every_frame_once_and_run_on_their_overlap(n_frames: int) -> None:
    overlap = 12
    spans = list(windows(n_frames, overlap))
    assert spans[0][0] == 0 and spans[-1][1] == n_frames
    for (_, end, _, _), (start, _, _, _) in itertools.pairwise(spans):
        assert start == end  # no gap, no frame twice
    for start, end, run_start, run_end in spans:
        assert run_start == max(0, start - overlap) and run_end == min(n_frames, end + overlap)
    if n_frames > FIRST_WINDOW_FRAMES * 3 // 2:
        assert spans[0][1] == FIRST_WINDOW_FRAMES  # the first sound leaves soon
    assert all(end - start <= WINDOW_FRAMES * 3 // 2 for start, end, _, _ in spans)
    assert all(end - start >= FIRST_WINDOW_FRAMES // 2 for start, end, _, _ in spans[1:])


def _convolution_vocoder(reach_frames: int):  # type: ignore[no-untyped-def]
    """A stand-in vocoder: HOP samples a frame, each a sum over ``reach_frames`` around."""
    kernel = np.linspace(1.0, 2.0, 2 * reach_frames + 1)

    def vocode(frames: np.ndarray) -> np.ndarray:
        summed = frames.sum(axis=1)[0]
        spread = np.convolve(summed, kernel, mode="same")
        return np.repeat(spread, HOP)[None, None, None, :].astype(np.float32)

    return vocode


@pytest.mark.parametrize("reach_frames", [0, 3, 10])
def test_the_overlap_is_the_vocoders_reach_and_a_margin(reach_frames: int) -> None:
    overlap, hop = measure_overlap(_convolution_vocoder(reach_frames), channels=8)
    assert hop == HOP
    assert overlap == reach_frames + OVERLAP_MARGIN_FRAMES


def test_windows_give_the_samples_of_one_run() -> None:
    vocode = _convolution_vocoder(5)
    overlap, hop = measure_overlap(vocode, channels=8)

    class Session:
        def __init__(self, run) -> None:  # type: ignore[no-untyped-def]
            self._run = run

        def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            return [self._run(next(iter(feeds.values())))]

    frames = np.random.default_rng(1).standard_normal((1, 8, 300)).astype(np.float32)
    runner = VoiceRunner(
        Session(lambda _feeds: frames),
        Session(vocode),
        latent="z",
        overlap_frames=overlap,
        hop_samples=hop,
    )
    pieces = list(runner.audio({"input": np.zeros(1)}))
    assert len(pieces) > 2
    assert len(pieces[0]) == FIRST_WINDOW_FRAMES * hop
    np.testing.assert_allclose(np.concatenate(pieces), vocode(frames).reshape(-1), rtol=1e-5)


def _tiny_model() -> bytes:
    """An ONNX model with no vocoder: y = x * 2."""
    classes = onnx_classes()
    model = classes["ModelProto"](ir_version=8)
    model.opset_import.add(domain="", version=17)
    graph = model.graph
    graph.initializer.add(name="two", data_type=ONNX_FLOAT, dims=[1], float_data=[2.0])
    graph.node.add(op_type="Mul", name="/mul", input=["x", "two"], output=["y"])
    for field, name in ((graph.input, "x"), (graph.output, "y")):
        field.add(name=name).type.tensor_type.elem_type = ONNX_FLOAT
    return bytes(model.SerializeToString())


def test_a_graph_without_a_vocoder_is_left_whole_and_runs_whole(tmp_path: Path) -> None:
    import onnxruntime

    model = onnx_classes()["ModelProto"]()
    model.ParseFromString(_tiny_model())
    assert split_vocoder(model) is None
    assert len(model.graph.node) == 1  # untouched

    voice = tmp_path / "voice.onnx"
    voice.write_bytes(_tiny_model())
    made: list[object] = []

    def session(source: str | bytes) -> object:
        made.append(source)
        return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])

    prepared = prepare_voice(voice, tmp_path / "cache", session)
    assert prepared.vocoder is None and not prepared.seeded
    assert not made  # no vocoder to measure
    runner = VoiceRunner(session(prepared.head))
    x = np.arange(5, dtype=np.float32)
    (only,) = runner.audio({"x": x})
    np.testing.assert_array_equal(only, 2 * x)


def test_a_prepared_voice_is_read_back_and_an_unwritable_cache_keeps_it_in_memory(
    tmp_path: Path,
) -> None:
    import onnxruntime

    voice = tmp_path / "voice.onnx"
    voice.write_bytes(_tiny_model())

    def session(source: str | bytes) -> object:
        return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])

    first = prepare_voice(voice, tmp_path / "cache", session)
    assert isinstance(first.head, str) and Path(first.head).is_file()
    written_ns = Path(first.head).stat().st_mtime_ns
    again = prepare_voice(voice, tmp_path / "cache", session)
    assert again == first and Path(again.head).stat().st_mtime_ns == written_ns

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache's folder would go")
    in_memory = prepare_voice(voice, blocked, session)
    assert isinstance(in_memory.head, bytes)
    (only,) = VoiceRunner(session(in_memory.head)).audio({"x": np.ones(3, np.float32)})
    np.testing.assert_array_equal(only, np.full(3, 2.0, np.float32))
