"""CUDA graph replay of fixed-shape work, and residual codes drawn by Gumbel-max."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from omnivox.engines.omni.graphs import GraphedFunction  # noqa: E402
from omnivox.engines.omni.sampling import (  # noqa: E402
    CodeSampling,
    choose_residuals,
    gumbel_noise,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_residual_codes_are_drawn_from_the_filtered_softmax() -> None:
    """Gumbel-max over top-k/top-p filtered logits: the nucleus's own probabilities."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -8.0, -9.0]])
    sampling = CodeSampling(top_k=4, top_p=0.9, temperature=1.0)
    generator = torch.Generator().manual_seed(7)
    n = 20_000
    noise = gumbel_noise([generator], n, logits.shape[-1], torch.device("cpu"))[0]
    codes = choose_residuals(logits.expand(n, -1), noise, sampling)
    counts = torch.bincount(codes, minlength=6).double() / n
    # top_k 4 keeps codes 0-3; top_p 0.9 then keeps 0-2 (0.64 + 0.24 < 0.9 <= + 0.09)
    kept = torch.softmax(logits[0, :3], dim=-1).double()
    assert counts[3:].sum() == 0
    assert torch.allclose(counts[:3], kept, atol=0.015), (counts, kept)


def test_the_same_generator_seed_draws_the_same_residual_codes() -> None:
    logits = torch.randn(3, 50)
    sampling = CodeSampling(top_k=50, top_p=0.8, temperature=1.0)

    def draw(seeds: list[int]) -> list[int]:
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        noise = gumbel_noise(generators, 1, 50, torch.device("cpu"))[:, 0]
        return [int(c) for c in choose_residuals(logits, noise, sampling)]

    assert draw([1, 2, 3]) == draw([1, 2, 3])
    # each row's draw depends on its own generator only
    assert draw([1, 2, 3])[0] == draw([1, 9, 9])[0]


def test_a_disabled_graph_runs_the_function_every_time() -> None:
    calls: list[int] = []

    def double(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return 2 * x

    graphed = GraphedFunction(double, "double", enabled=False)
    for value in range(3):
        assert graphed(torch.full((2,), float(value))).tolist() == [2.0 * value] * 2
    assert len(calls) == 3 and graphed.captures == graphed.replays == 0


@cuda
def test_a_shape_seen_twice_is_captured_and_replayed_with_new_values() -> None:
    def mix(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = x
        for _ in range(20):
            out = torch.tanh(out @ x.T @ x) + (0 if y is None else y)
        return out

    graphed = GraphedFunction(mix, "mix", enabled=True)
    for i in range(4):
        x = torch.randn(8, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(i))
        y = torch.full((8, 16), float(i), device="cuda")
        assert torch.equal(graphed(x, y), mix(x, y))
        assert torch.equal(graphed(x, None), mix(x, None))
    assert graphed.captures == 2  # one per (shapes, None-ness)
    assert graphed.replays == 6
    other = torch.randn(4, 16, device="cuda")  # a new shape runs eagerly first
    assert torch.equal(graphed(other, None), mix(other, None))
    assert graphed.captures == 2


@cuda
def test_work_that_reads_values_on_the_host_falls_back_to_running_eagerly() -> None:
    def reads(x: torch.Tensor) -> torch.Tensor:
        return x * float(x.sum().item())  # a host read: not capturable

    graphed = GraphedFunction(reads, "reads", enabled=True)
    x = torch.ones(4, device="cuda")
    for _ in range(3):
        assert graphed(x).tolist() == [4.0] * 4
    assert graphed.captures == 0 and graphed.replays == 0
    # CUDA still works afterwards
    assert (torch.ones(3, device="cuda") * 2).sum().item() == 6.0


def test_serve_turns_cuda_graphs_off_with_a_flag() -> None:
    from omnivox.cli import build_parser, settings_from_args

    parser = build_parser()
    assert settings_from_args(parser.parse_args(["serve", "--engine", "omni"])).cuda_graphs
    off = parser.parse_args(["serve", "--engine", "omni", "--no-cuda-graphs"])
    assert settings_from_args(off).cuda_graphs is False
