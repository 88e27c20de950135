"""README.md's Configuration table is generated from the Settings fields, so it can not drift."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from omnivox.cli import UNSET_MEANS, build_parser, options_table

README = Path(__file__).resolve().parents[2] / "README.md"
REGENERATE = '.venv/bin/python -c "from omnivox.cli import options_table; print(options_table())"'


def readme_options_table() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def test_the_readme_configuration_table_is_the_generated_one() -> None:
    assert readme_options_table() == options_table(), (
        "README.md's Configuration table differs from the Settings fields' descriptions; "
        f"replace it with the output of: {REGENERATE}"
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
