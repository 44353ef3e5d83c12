"""The package's folders are layers (docs/design.md §4) and import only downward.

The import graph is read from the source with ``ast`` (module-level and lazy, in-function imports alike),
so the test needs nothing imported and sees imports that only run on some code paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "emms_ext"

# Folder -> layer. A module may import its own folder and any lower layer; nothing above, and no other
# folder of its own layer (baselines and embed are siblings that do not know each other).
LAYERS = {"_C": 0, "common": 0, "ops": 1, "core": 2, "baselines": 3, "embed": 3, "selection": 4, "cli": 5}
# Third-party packages a layer must never import (the score stays free of text models).
FORBIDDEN = {
    layer: ("transformers", "sentence_transformers", "tokenizers", "onnx", "onnxruntime")
    for layer in ("common", "ops", "core", "baselines")
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports (``from X import y`` yields X.y when that is a module
    of the package, else X)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if _is_module(sub, root) else base)
    return out


def _is_module(name: str, root: Path) -> bool:
    if not name.startswith(root.name + "."):
        return False
    rel = Path(*name.split(".")[1:])
    return (
        (root / rel).with_suffix(".py").is_file()
        or (root / rel / "__init__.py").is_file()
        or any(root.glob(f"{rel}.*.so"))
        or name == f"{root.name}._C"
    )


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package modules and third-party top-level packages it imports."""
    graph = {}
    for path in sorted(root.rglob("*.py")):
        deps = set()
        for dep in imports_of(path, root):
            deps.add(dep if dep.startswith(root.name + ".") or dep == root.name else dep.split(".")[0])
        graph[module_name(path, root)] = deps
    return graph


def folder(module: str) -> str | None:
    """The layer folder of a package module (None for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violations(graph: dict[str, set[str]], package: str = "emms_ext") -> list[str]:
    """Every upward or sideways import, forbidden third-party import and import cycle in ``graph``."""
    bad = []
    for mod, deps in sorted(graph.items()):
        src = folder(mod)
        if src is None:  # the package root is the facade: it may import every layer
            continue
        for dep in sorted(deps):
            if dep == package or dep.startswith(package + "."):
                dst = folder(dep)
                if dst is None:
                    bad.append(f"{mod} imports the package root {dep} (import the module it needs)")
                elif dst != src and (LAYERS[dst] > LAYERS[src] or LAYERS[dst] == LAYERS[src]):
                    bad.append(f"{mod} (layer {src}={LAYERS[src]}) imports {dep} (layer {dst}={LAYERS[dst]})")
            elif dep in FORBIDDEN.get(src, ()):
                bad.append(f"{mod} (layer {src}) imports {dep}")
    bad += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
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
                out.append(sorted(comp) + [sorted(comp)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_imports_only_downward_and_has_no_cycles():
    graph = import_graph()
    assert set(LAYERS) - {"_C"} <= {folder(m) for m in graph}, "a layer folder is missing"
    assert {folder(m) for m in graph} - {None} <= set(LAYERS), "a folder without a layer: add it to LAYERS"
    assert violations(graph) == []


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    # Known edges of each kind: a module-level import, a lazy in-function import, a third-party import.
    assert "emms_ext.core.labels" in graph["emms_ext.core.stats"]
    assert "emms_ext.embed" in graph["emms_ext.selection.targets"]  # imported inside build_target
    assert "transformers" in graph["emms_ext.embed.models.hf"]
    assert "emms_ext._C" in graph["emms_ext.ops"]


@pytest.mark.parametrize(
    "edge, expected",
    [
        (
            ("emms_ext.core.score", "emms_ext.selection.rank"),
            "layer core=2) imports emms_ext.selection.rank (layer selection=4",
        ),
        (
            ("emms_ext.baselines.knn", "emms_ext.embed.tasks"),
            "layer baselines=3) imports emms_ext.embed.tasks (layer embed=3",
        ),
        (("emms_ext.core.labels", "transformers"), "emms_ext.core.labels (layer core) imports transformers"),
        (("emms_ext.ops.operators", "emms_ext"), "imports the package root"),
    ],
)
def test_a_bad_edge_in_a_synthetic_graph_is_reported(edge, expected):
    graph = {
        "emms_ext.core.score": {"emms_ext.core.labels", "emms_ext.ops.operators"},
        "emms_ext.core.labels": {"torch"},
        "emms_ext.ops.operators": {"torch"},
        "emms_ext.selection.rank": {"emms_ext.core.score"},
        "emms_ext.baselines.knn": {"torch"},
        "emms_ext.embed.tasks": {"emms_ext.core.labels"},
    }
    assert violations(graph) == []  # the clean graph passes
    graph[edge[0]] = graph[edge[0]] | {edge[1]}
    found = violations(graph)
    assert any(expected in v for v in found), found


def test_a_cycle_in_a_synthetic_graph_is_reported():
    graph = {
        "emms_ext.selection.metrics": {"emms_ext.selection.targets"},
        "emms_ext.selection.targets": {"emms_ext.selection.rank"},
        "emms_ext.selection.rank": {"emms_ext.selection.metrics"},
        "emms_ext.core.score": set(),
    }
    found = violations(graph)
    assert found == [
        "import cycle: emms_ext.selection.metrics -> emms_ext.selection.rank -> "
        "emms_ext.selection.targets -> emms_ext.selection.metrics"
    ]
