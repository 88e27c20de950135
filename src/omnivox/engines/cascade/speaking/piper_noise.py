"""Make Piper's speech a function of its input: the same sentence gives the same samples.

A Piper (VITS) voice draws random noise twice per sentence, with ONNX
``RandomNormalLike`` nodes. onnxruntime seeds their generator once per session
and advances it on every run, so the same sentence in the same voice never
gives the same bytes twice, and a request's ``seed`` could not reproduce its
audio. ``make_noise_reproducible`` rewrites the graph once, at load: each such node
becomes standard normal noise computed from the element's index and a new
graph input, ``SEED_INPUT`` (a float), by a sine hash and the Box-Muller
transform (mean 0, variance 1, no correlation between neighbours: the voice
sounds the same). ``SeededSession`` feeds that input a seed made from the
sentence's phoneme ids, so the noise, and with it the audio, depends only on
what is said, in which voice, with which settings.

The graph is edited through ``onnx_subset`` (the ``onnx`` package is not
needed). A voice without ``RandomNormalLike`` nodes is left as it is. This
module knows nothing of text or phonemes.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from omnivox.engines.cascade.speaking.onnx_subset import ONNX_FLOAT, ONNX_INT64, onnx_classes

SEED_INPUT = "omnivox_noise_seed"
RANDOM_OP = "RandomNormalLike"
SEED_MODULUS = 100_003  # seeds are kept small: float32 sine hashes lose precision on large ones
# The sine hash of "random" shaders: fract(sin(x * k) * 43758.5453).
HASH_CONSTANTS = {"k1": 12.9898, "k2": 78.233, "big": 43758.5453}
ATTRIBUTE_INT, ATTRIBUTE_TENSOR = 2, 4


def make_noise_reproducible(model: Any) -> bool:
    """Give the voice model (an ``onnx_subset`` ModelProto) seeded noise, in place (see the
    module docstring); False if it draws none."""
    graph = model.graph
    if not any(node.op_type == RANDOM_OP for node in graph.node):
        return False
    builder = _NoiseBuilder(graph)
    nodes = []
    for node in graph.node:
        if node.op_type == RANDOM_OP:
            nodes += builder.normal_like(node.input[0], node.output[0], node.name)
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    seed = graph.input.add(name=SEED_INPUT)
    seed.type.tensor_type.elem_type = ONNX_FLOAT
    seed.type.tensor_type.shape.dim.add(dim_value=1)
    return True


class _NoiseBuilder:
    """Nodes computing normal noise shaped like a tensor, from ``SEED_INPUT``."""

    def __init__(self, graph: Any) -> None:
        self._graph = graph
        self._nodes: list[Any] = []
        self._prefix = ""
        self._constant("minus_one", [-1], ONNX_INT64)
        self._constant("axis0", [0], ONNX_INT64)
        for name, value in {**HASH_CONSTANTS, "minus_two": -2.0, "tau": 2 * np.pi}.items():
            self._constant(name, [value], ONNX_FLOAT)
        self._constant("tiny", [1e-7], ONNX_FLOAT)

    def _constant(self, name: str, values: Sequence[float], data_type: int) -> None:
        tensor = self._graph.initializer.add(name=f"omnivox/{name}", data_type=data_type)
        tensor.dims.append(len(values))
        if data_type == ONNX_FLOAT:
            tensor.float_data.extend(values)
        else:
            tensor.int64_data.extend(int(v) for v in values)

    def normal_like(self, like: str, output: str, name: str) -> list[Any]:
        self._nodes, self._prefix = [], f"{name}/omnivox"
        shape = self._add("Shape", like)
        one = onnx_classes()["TensorProto"](dims=[1], data_type=ONNX_FLOAT, float_data=[1.0])
        ones = self._add("ConstantOfShape", shape, value=one)
        flat = self._add("Reshape", ones, "omnivox/minus_one")
        index = self._add("Reshape", self._add("CumSum", flat, "omnivox/axis0"), shape)
        u1, u2 = self._uniform(index, "omnivox/k1"), self._uniform(index, "omnivox/k2")
        radius = self._add("Sqrt", self._add("Mul", self._add("Log", u1), "omnivox/minus_two"))
        angle = self._add("Cos", self._add("Mul", u2, "omnivox/tau"))
        self._add("Mul", radius, angle, output=output)
        return self._nodes

    def _uniform(self, index: str, factor: str) -> str:
        """fract(sin(index * factor + seed) * big), kept above 0 for the logarithm."""
        phase = self._add("Add", self._add("Mul", index, factor), SEED_INPUT)
        scaled = self._add("Mul", self._add("Sin", phase), "omnivox/big")
        fraction = self._add("Sub", scaled, self._add("Floor", scaled))
        return self._add("Max", fraction, "omnivox/tiny")

    def _add(self, op: str, *inputs: str, output: str | None = None, value: Any = None) -> str:
        name = f"{self._prefix}/{op}_{len(self._nodes)}"
        outputs = [output or name]
        node = onnx_classes()["NodeProto"](op_type=op, name=name, input=inputs, output=outputs)
        if value is not None:
            node.attribute.add(name="value", t=value, type=ATTRIBUTE_TENSOR)
        self._nodes.append(node)
        return str(node.output[0])


class SeededSession:
    """An onnxruntime session of a ``reproducible_noise`` model, run as Piper runs it."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def run(self, output_names: Any, feeds: Mapping[str, Any], *args: Any) -> Any:
        phonemes = np.ascontiguousarray(feeds["input"]).tobytes()
        seed = np.array([zlib.crc32(phonemes) % SEED_MODULUS / 100.0], dtype=np.float32)
        return self._session.run(output_names, {**feeds, SEED_INPUT: seed}, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
