"""The options tables (README.md's common options, docs/configuration.md's every one) are
generated from the Settings fields, so they can not drift."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from omnivox.cli import COMMON_OPTIONS, UNSET_MEANS, build_parser, options_table

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = (
    '.venv/bin/python -c "from omnivox.cli import {0}, options_table; print(options_table({1}))"'
)


def table_in(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_the_readme_table_is_the_generated_one_of_the_common_options() -> None:
    assert table_in(ROOT / "README.md", "## Configuration") == options_table(COMMON_OPTIONS), (
        "README.md's Configuration table differs from the Settings fields' descriptions; "
        "replace it with the output of: " + REGENERATE.format("COMMON_OPTIONS", "COMMON_OPTIONS")
    )


def test_docs_configuration_is_the_generated_table_of_every_option() -> None:
    assert table_in(ROOT / "docs" / "configuration.md", "## Options") == options_table(), (
        "docs/configuration.md's table differs from the Settings fields' descriptions; "
        "replace it with the output of: " + REGENERATE.format("UNSET_MEANS", "")
    )


def test_every_serve_option_is_in_the_table() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    flags = set(re.findall(r"\[(--[a-z-]+)", out.getvalue())) - {"--help"}
    assert len(flags) > 20
    table = options_table()
    assert [flag for flag in sorted(flags) if f"| `{flag}` |" not in table] == []


def test_the_shown_omni_model_is_the_engines_default() -> None:
    from omnivox.engines.omni.loading import DEFAULT_MODEL

    assert UNSET_MEANS["model"] == DEFAULT_MODEL
