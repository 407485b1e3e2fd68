"""The package is laid out as its data flow: each part imports only the parts above it, and nothing imports in a
circle at module level. ARCHITECTURE.md draws the same list."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gcsearch"
# Top to bottom: a part may import the parts above it (and its own modules), never one below it.
LAYERS: list[tuple[str, ...]] = [
    ("gcsearch.errors", "gcsearch.units"),
    ("gcsearch.contract",),
    ("gcsearch.pareto",),
    ("gcsearch.report.noise",),  # the report's statistics, torch-free: also the race rule's (study/racing.py)
    ("gcsearch.space",),
    ("gcsearch.model", "gcsearch"),  # the package itself: ArchSpec, build_model, measure, __version__
    ("gcsearch.training",),
    ("gcsearch.storage",),
    ("gcsearch.study",),
    ("gcsearch.run",),
    ("gcsearch.report",),
    ("gcsearch.commands",),
    ("gcsearch.cli", "gcsearch.__main__"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    """The index of the part `module` belongs to (the longest matching prefix)."""
    best, index = "", -1
    for i, parts in enumerate(LAYERS):
        for part in parts:
            if (module == part or module.startswith(part + ".")) and len(part) > len(best):
                best, index = part, i
    assert index >= 0, f"{module} is in no layer: add it to LAYERS and to ARCHITECTURE.md"
    return index


def imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The gcsearch modules an import statement loads (a name imported from a package may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "gcsearch"]
    if node.level or not node.module or node.module.split(".")[0] != "gcsearch":
        return []
    subs = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES]
    return subs or [node.module]


def is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(path: Path, module_level: bool) -> list[str]:
    """Every gcsearch import in the file, or only those that run when it is imported (not in functions, not
    under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not module_level:
        return [m for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for m in imported(node)]
    found: list[str] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found += imported(node)
        elif isinstance(node, ast.If) and not is_type_checking(node):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_the_parts_above_it(module: str) -> None:
    own = layer(module)
    below = sorted({m for m in imports(MODULES[module], module_level=False) if layer(m) > own})
    assert not below, f"{module} (layer {own}) imports {below}, which come later in the data flow"


def test_no_import_cycle_at_module_level() -> None:
    graph = {m: sorted(set(imports(p, module_level=True)) & set(MODULES)) for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in graph[module]:
            visit(target, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])
    assert len(done) == len(MODULES) > 40


def test_no_module_is_longer_than_one_sitting() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"


# What only run/optuna_access.py may touch: Optuna's private attributes and the system attribute in which
# Study.enqueue_trial keeps a queued trial's values.
OPTUNA_PRIVATE = {"_trial_id", "_storage", "_study_id", "_cached_frozen_trial", "_fixed_params", "_suggest",
                  "_contains", "_get_latest_trial", "_directions"}
OPTUNA_ADAPTER = "gcsearch.run.optuna_access"


def test_only_the_adapter_touches_optuna_private_attributes() -> None:
    found = []
    for module, path in MODULES.items():
        if module == OPTUNA_ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in OPTUNA_PRIVATE:
                found.append(f"{module}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.Constant) and node.value == "fixed_params":
                found.append(f"{module}:{node.lineno} 'fixed_params'")
    assert not found, f"only {OPTUNA_ADAPTER} may reach into Optuna: {found}"


# What the commands share lives beside them, in modules that are not commands.
SHARED_COMMAND_MODULES = {"gcsearch.commands", "gcsearch.commands.options", "gcsearch.commands.view"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("gcsearch.commands.")
                                          and m not in SHARED_COMMAND_MODULES))
def test_no_command_imports_another(module: str) -> None:
    others = sorted({m for m in imports(MODULES[module], module_level=False)
                     if m.startswith("gcsearch.commands.") and m not in SHARED_COMMAND_MODULES and m != module})
    assert not others, f"{module} imports the commands {others}: move what they share to commands/view.py, " \
                       "commands/options.py or a part above"


def test_every_command_module_is_a_registered_command() -> None:
    from gcsearch.cli import app

    commands = {m.rsplit(".", 1)[1] for m in MODULES if m.startswith("gcsearch.commands.")} - {
        m.rsplit(".", 1)[1] for m in SHARED_COMMAND_MODULES if m.count(".") == 2}
    assert commands == {c.name for c in app.registered_commands}
