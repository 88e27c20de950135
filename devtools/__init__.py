"""Helpers that the test suite and the benchmarks share; no part of the omnivox product.

``fake_engine`` is a small deterministic engine, ``serve`` runs ``omnivox serve`` on a
free loopback port, ``tiny_qwen2_5_omni`` / ``tiny_qwen3_omni`` build toy checkpoints
of the omni models' architectures on disk, and ``omni_engine`` is the omni engine with
its speech limits, answer lengths or checkpoint fixed in advance. The package lives at
the repository root, next to ``tests/`` and ``bench/``, and is importable from there
(``python -m bench.NAME``, and pytest's ``pythonpath``); it is not installed with
omnivox, and nothing under ``src/`` imports it.
"""
