"""The import rules of ARCHITECTURE.md, read from the source of every module.

Nothing is imported: each module under ``src/omnivox`` is parsed with ``ast`` and
every import in it is collected with where it sits: at module level (it runs when
the module is imported), inside a function (it runs when the function is called),
or under ``if TYPE_CHECKING:`` (it never runs; only type checkers read it).

The layer rules count all three: an import for type hints is still a dependency a
reader has to follow, so it obeys the same table, except where ``TYPE_ONLY`` lets
a layer name another one's types and nothing more. The lazy-import rules count
only what runs, because they are about what importing a module costs.
"""

from __future__ import annotations

import ast
import functools
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "omnivox"

MODULE_LEVEL = "at module level"
IN_FUNCTION = "inside a function"
TYPE_CHECKING_BLOCK = "under TYPE_CHECKING"

# A module's layer is the name right below ``omnivox`` (``omnivox.serving.sse`` is in
# ``serving``); the package's own ``__init__`` (its version) is the layer ``omnivox``.
# The leaves each import nothing of omnivox.
LEAVES = frozenset({"omnivox", "errors", "ids", "heap", "metrics"})
EVERY_LAYER = LEAVES | {
    "settings",
    "audio",
    "protocol",
    "store",
    "engines",
    "access",
    "serving",
    "server",
    "cli",
    "__main__",
}
# layer -> the other layers its modules may import.
ALLOWED: Mapping[str, frozenset[str]] = {
    "omnivox": frozenset(),
    "errors": frozenset(),
    "ids": frozenset(),
    "heap": frozenset(),
    "metrics": frozenset(),
    "settings": frozenset(),
    "audio": frozenset({"errors"}),
    "protocol": frozenset({"errors"}),
    "store": frozenset({"errors"}),
    "engines": LEAVES | {"settings", "audio"},
    "access": LEAVES | {"settings", "store"},
    "serving": LEAVES | {"audio", "engines", "protocol", "store"},
    "server": EVERY_LAYER - {"cli", "__main__"},
    "cli": EVERY_LAYER - {"__main__"},
    "__main__": frozenset({"cli"}),
}
# layer -> the layers it may also import under ``if TYPE_CHECKING:``, for annotations.
TYPE_ONLY: Mapping[str, frozenset[str]] = {
    "access": frozenset({"serving"}),  # the gate annotates ``serving.runs.MeteredRun``
}

# The libraries beyond the standard library that the lowest layers may use.
THIRD_PARTY: Mapping[str, frozenset[str]] = {
    "omnivox": frozenset(),
    "errors": frozenset(),
    "ids": frozenset(),
    "heap": frozenset(),
    "metrics": frozenset(),
    "settings": frozenset({"pydantic", "pydantic_settings"}),
    "audio": frozenset({"numpy", "av", "soxr"}),
    "protocol": frozenset({"pydantic", "pydantic_core"}),
    "store": frozenset(),
}
WEB_LIBRARIES = frozenset({"fastapi", "starlette", "uvicorn", "httptools"})
WEB_LAYERS = frozenset({"server", "cli"})
# Prometheus is the server's: the other layers report through the leaf ``omnivox.metrics``.
METRICS_LIBRARIES = frozenset({"prometheus_client"})
METRICS_LAYERS = frozenset({"server"})
HEAVY_LIBRARIES = frozenset(
    {"torch", "transformers", "llama_cpp", "faster_whisper", "piper", "onnxruntime"}
)


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    shown: str  # the path in messages: ``src/omnivox/serving/sse.py``
    is_package: bool


@dataclass(frozen=True, slots=True)
class Import:
    importer: Module
    target: str  # a module of the tree when it names one, else the name as written
    line: int
    where: str

    def __str__(self) -> str:
        where = f"{self.importer.shown}:{self.line}"
        return f"{where}: {self.importer.name} imports {self.target} {self.where}"


def is_ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def layer_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def top_name(name: str) -> str:
    return name.split(".")[0]


def parents_and_self(name: str) -> list[str]:
    """What ``import a.b.c`` runs: ``a``, ``a.b``, then ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


# ---- reading the tree ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tree:
    modules: dict[str, Module]
    imports: dict[str, list[Import]]  # by importing module

    def in_layer(self, layer: str) -> Iterator[Import]:
        for name, imports in self.imports.items():
            if layer_of(name) == layer:
                yield from imports

    def engine_package(self, name: str) -> str | None:
        """``omnivox.engines.cascade`` for any module of that package; None for the
        engines' shared modules (``omnivox.engines`` itself, ``.base``, ``.events``...)."""
        parts = name.split(".")
        if len(parts) < 3 or parts[:2] != [PACKAGE, "engines"]:
            return None
        package = ".".join(parts[:3])
        found = self.modules.get(package)
        return package if found is not None and found.is_package else None

    def outside_engines(self, name: str) -> bool:
        """Imported before an engine starts: any module outside the engine packages,
        and each engine package's own ``__init__`` (the registry imports it)."""
        package = self.engine_package(name)
        return package is None or package == name


def find_modules(src: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, str(path.relative_to(src.parent)), is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _absolute(node: ast.ImportFrom, module: Module) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.name.split(".")
    if not module.is_package:
        parts.pop()
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def imports_of(module: Module, known: Mapping[str, Module]) -> Iterator[Import]:
    def visit(node: ast.AST, where: str) -> Iterator[Import]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, where)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"  # ``from omnivox.serving import sse``
                yield Import(module, submodule if submodule in known else base, node.lineno, where)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, TYPE_CHECKING_BLOCK)
            for child in node.orelse:
                yield from visit(child, where)
        else:
            if where == MODULE_LEVEL and isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ):
                where = IN_FUNCTION
            for child in ast.iter_child_nodes(node):
                yield from visit(child, where)

    tree = ast.parse(module.path.read_text(encoding="utf-8"), filename=module.shown)
    yield from visit(tree, MODULE_LEVEL)


def scan(src: Path) -> Tree:
    modules = find_modules(src)
    return Tree(modules, {name: list(imports_of(m, modules)) for name, m in modules.items()})


@functools.cache
def source_tree() -> Tree:
    return scan(SRC)


# ---- the rules, each as the list of what breaks it ---------------------------------------------


def unknown_layers(tree: Tree) -> list[str]:
    return [
        f"{m.shown}: {m.name} is in no layer ({layer_of(m.name)!r}): give it one in "
        "tests/unit/test_layers.py and ARCHITECTURE.md"
        for m in tree.modules.values()
        if layer_of(m.name) not in ALLOWED
    ]


def layer_violations(tree: Tree, layer: str) -> list[str]:
    allowed = ALLOWED[layer]
    type_only = TYPE_ONLY.get(layer, frozenset())
    may = ", ".join(sorted(allowed)) or "nothing of omnivox"
    if type_only:
        may += f" (and, under TYPE_CHECKING, {', '.join(sorted(type_only))})"
    found = []
    for imp in tree.in_layer(layer):
        if not is_ours(imp.target):
            continue
        target = layer_of(imp.target)
        if target == layer or target in allowed:
            continue
        if target in type_only and imp.where == TYPE_CHECKING_BLOCK:
            continue
        found.append(f"{imp}: {layer} may not import {target}; it may import {may}")
    return found


def engine_package_imports(tree: Tree) -> list[str]:
    """Imports into an engine package from any module outside it."""
    found = []
    for imports in tree.imports.values():
        for imp in imports:
            target = tree.engine_package(imp.target) if is_ours(imp.target) else None
            own = tree.engine_package(imp.importer.name)
            if target is None or target == own:
                continue
            if own is not None:
                why = f"engine package {own} may not import engine package {target}"
            else:
                why = (
                    f"{target} is reached only through the registry (omnivox.engines); "
                    "what others need from an engine lives in engines/*.py"
                )
            found.append(f"{imp}: {why}")
    return found


CASCADE = f"{PACKAGE}.engines.cascade"
# The cascade's subsystems and what each may import of the cascade besides itself;
# the engine, the scheduler and the asset finder compose them.
CASCADE_SUBSYSTEMS: Mapping[str, frozenset[str]] = {
    "listening": frozenset(),
    "chat": frozenset({"grammar"}),
    "grammar": frozenset(),
    "speaking": frozenset({"assets"}),
}


def cascade_subsystem_violations(tree: Tree) -> list[str]:
    """Imports between the cascade's subsystems beyond those ``CASCADE_SUBSYSTEMS`` allows."""
    found = []
    for name, imports in tree.imports.items():
        parts = name.removeprefix(CASCADE + ".").split(".")
        if not name.startswith(CASCADE + ".") or parts[0] not in CASCADE_SUBSYSTEMS:
            continue
        allowed = CASCADE_SUBSYSTEMS[parts[0]] | {parts[0]}
        for imp in imports:
            if not imp.target.startswith(CASCADE + "."):
                continue
            target = imp.target.removeprefix(CASCADE + ".").split(".")[0]
            if target not in allowed:
                found.append(f"{imp}: the cascade's {parts[0]} may not import its {target}")
    return found


def library_violations(tree: Tree, layer: str) -> list[str]:
    allowed = THIRD_PARTY[layer]
    may = ", ".join(sorted(allowed)) or "the standard library only"
    return [
        f"{imp}: {layer} may use {may}, not {top_name(imp.target)}"
        for imp in tree.in_layer(layer)
        if not is_ours(imp.target)
        and top_name(imp.target) not in sys.stdlib_module_names
        and top_name(imp.target) not in allowed
    ]


def web_violations(tree: Tree) -> list[str]:
    return [
        f"{imp}: only {' and '.join(sorted(WEB_LAYERS))} know HTTP"
        for imports in tree.imports.values()
        for imp in imports
        if layer_of(imp.importer.name) not in WEB_LAYERS and top_name(imp.target) in WEB_LIBRARIES
    ]


def metrics_library_violations(tree: Tree) -> list[str]:
    return [
        f"{imp}: only the server imports the Prometheus client; report through omnivox.metrics"
        for imports in tree.imports.values()
        for imp in imports
        if layer_of(imp.importer.name) not in METRICS_LAYERS
        and top_name(imp.target) in METRICS_LIBRARIES
    ]


def eager_heavy_imports(tree: Tree) -> list[str]:
    """Heavy libraries imported at module level where an engine has not started yet."""
    return [
        f"{imp}: outside an engine package, import {top_name(imp.target)} inside the "
        "function that needs it"
        for name, imports in tree.imports.items()
        if tree.outside_engines(name)
        for imp in imports
        if top_name(imp.target) in HEAVY_LIBRARIES and imp.where == MODULE_LEVEL
    ]


def heavy_on_import(tree: Tree, start: str) -> str | None:
    """The chain of module-level imports through which importing ``start`` loads a heavy
    library (parent packages included, as Python runs them), or None."""
    came_from: dict[str, Import | None] = {}
    queue: list[str] = []

    def reach(name: str, step: Import | None) -> None:
        for module in parents_and_self(name):
            if module in tree.modules and module not in came_from:
                came_from[module] = step
                queue.append(module)

    reach(start, None)
    while queue:
        for imp in tree.imports[queue.pop(0)]:
            if imp.where != MODULE_LEVEL:
                continue
            if top_name(imp.target) in HEAVY_LIBRARIES:
                chain = [imp]
                while (step := came_from[chain[-1].importer.name]) is not None:
                    chain.append(step)
                lines = "\n    ".join(str(s) for s in reversed(chain))
                return f"importing {start} loads {top_name(imp.target)}:\n    {lines}"
            if is_ours(imp.target):
                reach(imp.target, imp)
    return None


# ---- the tests ---------------------------------------------------------------------------------


def test_the_tree_is_read_and_every_module_is_in_a_layer() -> None:
    tree = source_tree()
    found = {layer_of(name) for name in tree.modules}
    core = {"server", "access", "protocol", "serving", "engines", "audio", "store"}
    assert core <= found, f"no modules of {sorted(core - found)} found under {SRC}"
    problems = unknown_layers(tree)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down_the_layers(layer: str) -> None:
    problems = layer_violations(source_tree(), layer)
    assert not problems, "\n".join(problems)


def test_engine_packages_are_imported_only_from_inside() -> None:
    """An engine package is imported by its own modules alone: what two engines share,
    or what the rest of omnivox needs, lives in the engines' shared modules."""
    problems = engine_package_imports(source_tree())
    assert not problems, "\n".join(problems)


def test_the_cascade_subsystems_stay_apart() -> None:
    """Listening, chat, grammar and speaking import each other only as
    ``CASCADE_SUBSYSTEMS`` allows; the engine module composes them."""
    tree = source_tree()
    assert {f"{CASCADE}.{name}" for name in CASCADE_SUBSYSTEMS} <= set(tree.modules)
    problems = cascade_subsystem_violations(tree)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("layer", sorted(THIRD_PARTY))
def test_low_layers_use_only_their_libraries(layer: str) -> None:
    problems = library_violations(source_tree(), layer)
    assert not problems, "\n".join(problems)


def test_only_the_server_and_the_cli_import_web_libraries() -> None:
    problems = web_violations(source_tree())
    assert not problems, "\n".join(problems)


def test_only_the_server_imports_the_prometheus_client() -> None:
    problems = metrics_library_violations(source_tree())
    assert not problems, "\n".join(problems)


def test_heavy_libraries_are_imported_at_module_level_only_in_engine_packages() -> None:
    problems = eager_heavy_imports(source_tree())
    assert not problems, "\n".join(problems)


def test_importing_anything_but_an_engine_loads_no_heavy_library() -> None:
    """``omnivox --help``, the key commands and the server before its engine starts
    import only modules outside the engine packages, and those packages' ``__init__``."""
    tree = source_tree()
    problems = [
        chain
        for name in tree.modules
        if tree.outside_engines(name) and (chain := heavy_on_import(tree, name)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_the_rules_catch_what_breaks_them(tmp_path: Path) -> None:
    """The checks above can fail: a small tree that breaks each kind of rule once."""
    files = {
        "__init__.py": "",
        "engines/__init__.py": "",
        "engines/base.py": "from omnivox.server.app import create_app\n",
        "engines/one/__init__.py": "",
        "engines/one/model.py": "import torch\nfrom omnivox.engines.two import run\n",
        "engines/two/__init__.py": "from omnivox.engines.two.run import go\n",
        "engines/two/run.py": "import onnxruntime\n",
        "server/__init__.py": "",
        "server/app.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import torch\n"
            "def create_app():\n    import torch\n"
        ),
        "access/__init__.py": "",
        "access/gate.py": (
            "import typing\n"
            "if typing.TYPE_CHECKING:\n    from omnivox.serving.chat import CompletionRun\n"
            "else:\n    from omnivox.serving import chat\n"
        ),
        "engines/cascade/__init__.py": "",
        "engines/cascade/speaking/__init__.py": "",
        "engines/cascade/speaking/voice.py": "from omnivox.engines.cascade.chat import tools\n",
        "serving/__init__.py": "",
        "serving/chat.py": (
            "import starlette\nimport prometheus_client\nfrom omnivox.engines.one import model\n"
        ),
        "audio/__init__.py": "from . import pcm\n",
        "audio/pcm.py": "import torch\n",
    }
    for relative, text in files.items():
        path = tmp_path / "src" / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    tree = scan(tmp_path / "src")

    (engines_up,) = layer_violations(tree, "engines")
    assert engines_up.startswith("src/omnivox/engines/base.py:1: omnivox.engines.base imports")
    assert "omnivox.server.app at module level: engines may not import server" in engines_up
    (access_up,) = layer_violations(tree, "access")  # the runtime import, not the type-only one
    assert "omnivox.access.gate imports omnivox.serving.chat at module level" in access_up
    assert layer_violations(tree, "server") == []
    across, from_serving = engine_package_imports(tree)
    assert "engine package omnivox.engines.one may not import" in across
    assert "omnivox.serving.chat imports omnivox.engines.one.model" in from_serving
    assert "reached only through the registry" in from_serving
    (audio_library,) = library_violations(tree, "audio")
    assert "omnivox.audio.pcm imports torch at module level" in audio_library
    (web,) = web_violations(tree)
    assert "omnivox.serving.chat imports starlette" in web
    (prometheus,) = metrics_library_violations(tree)
    assert "omnivox.serving.chat imports prometheus_client" in prometheus
    eager = eager_heavy_imports(tree)  # the server's import runs only when called
    assert [line.split(":")[0] for line in eager] == ["src/omnivox/audio/pcm.py"]
    chain = heavy_on_import(tree, "omnivox.audio")
    assert chain is not None
    assert "omnivox.audio imports omnivox.audio.pcm" in chain
    assert "loads torch" in chain
    assert heavy_on_import(tree, "omnivox.server.app") is None
    two = heavy_on_import(tree, "omnivox.engines.two")  # an engine package's __init__
    assert two is not None
    assert "loads onnxruntime" in two
    (subsystems,) = cascade_subsystem_violations(tree)
    assert "the cascade's speaking may not import its chat" in subsystems
