"""The package's layers: each module imports only from its own layer or those below, counting the imports made inside
functions (a lazy import is still a dependency), and no module imports itself back through others."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "dsilab"

#: Lowest first. A module's unit is its first name below dsilab (dsilab.ann.soft_tree -> "ann").
LAYERS = [
    {"core"},
    {"data", "embed", "metrics", "trec", "results", "published", "plots", "course"},
    {"docids", "decode", "baselines", "querygen"},
    {"tasks"},
    {"models"},
    {"train", "adapters", "pruning", "saved", "distill"},
    {"recipes"},
    {"ann", "augment", "dgi", "incremental", "widgets"},   # the library ends here
    {"experiments"},                                        # every benchmark and study
    {"exercises"},                                          # the course's checkers (they read committed studies)
    {"cli", "__main__"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module -> the dsilab modules it imports anywhere in its file (top level and inside functions)."""
    mods = {_module(p): p for p in PKG.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in mods and c != name}
        out[name] = found
    return out


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package's own __init__ (its public surface)


def test_every_module_has_a_layer():
    units = {_unit(m) for m in imports()} - {None}
    assert units <= set(LEVEL), f"modules without a layer: {sorted(units - set(LEVEL))}"


def test_no_module_imports_a_layer_above_its_own():
    wrong = [f"{m} -> {t}" for m, targets in imports().items() if _unit(m) for t in targets
             if _unit(t) and LEVEL[_unit(t)] > LEVEL[_unit(m)]]
    assert not wrong, "imports that go up a layer:\n" + "\n".join(sorted(wrong))


def test_the_library_never_imports_the_experiments():
    library = {u for layer in LAYERS[: LEVEL["experiments"]] for u in layer}
    wrong = [f"{m} -> {t}" for m, targets in imports().items() if _unit(m) in library for t in targets
             if _unit(t) == "experiments"]
    assert not wrong, wrong


def test_no_import_cycles():
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in imports().items()}  # a package's own re-exports
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("module", ["dsilab.models", "dsilab.recipes"])
def test_the_layer_check_sees_imports_inside_functions(module):
    # models resolves adapters by name, recipes imports pruning inside train_dsi: the walk must see the latter
    found = imports()[module]
    assert ("dsilab.pruning" in found) == (module == "dsilab.recipes")


def test_every_import_names_something_that_exists():
    """An import inside a function runs only when the function does: check them all statically, by importing."""
    import importlib

    bad = []
    for path in PKG.rglob("*.py"):
        name = _module(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("dsilab"))):
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            target = importlib.import_module(module)
            for alias in node.names:
                if not hasattr(target, alias.name):
                    try:
                        importlib.import_module(f"{module}.{alias.name}")
                    except ImportError:
                        bad.append(f"{path.name}:{node.lineno}: {module} has no {alias.name}")
    assert not bad, bad
