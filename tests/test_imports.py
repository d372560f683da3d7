"""The package's import graph: no cycles, and every module imports on its own in any order.

A cycle held apart by an import inside a function works until someone moves that import;
the static test reads every `import` statement (function-level ones included) so that such a
cycle fails here, and the dynamic test proves each module needs nothing imported before it.
"""

import ast
import random
from pathlib import Path

from training_util import run_python

PACKAGE = Path(__file__).resolve().parent.parent / "llm_tf"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set:
    """The llm_tf modules that `path` imports anywhere (top level or inside functions)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name`: name is a submodule or an attribute of pkg.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                     for alias in node.names]
        else:
            continue
        for name in names:
            # Importing a.b.c runs a/__init__, a/b/__init__ too; the graph keeps the leaf, and
            # the package edges come from the __init__ files themselves.
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != here:
                found.add(name)
    return found


def import_graph() -> dict:
    return {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict):
    """One cycle as a list of modules, or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = visit(child)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "llm_tf.layers.masks" in graph["llm_tf.layers.attention"]  # a top-level import
    assert "llm_tf.training.run" in graph["llm_tf.commands.train"]  # imported inside main()
    assert "llm_tf.export" in graph["llm_tf.commands.train"]  # `from llm_tf import export`


def test_no_import_cycle_among_llm_tf_modules():
    # A submodule that imports its own package back (`from llm_tf.layers import x` inside
    # llm_tf/layers/) closes a cycle through that package's __init__: kept, so it is seen.
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_alone_in_a_fresh_interpreter_in_any_order():
    """One child process: for each order, forget llm_tf and import each module first."""
    orders = [MODULES, MODULES[::-1]] + [random.Random(seed).sample(MODULES, len(MODULES))
                                          for seed in range(2)]
    code = f"""
import importlib, sys
for order in {orders!r}:
    for name in order:
        for loaded in [m for m in sys.modules if m == "llm_tf" or m.startswith("llm_tf.")]:
            del sys.modules[loaded]
        importlib.import_module(name)
print("ok")
"""
    assert run_python(code).stdout.strip().endswith("ok")
