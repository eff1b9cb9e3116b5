"""The layout's rules, checked statically: no import cycles, the raw-kernel layer never imports the
torch backend or the application, and nothing imports the source folders by their top-level names."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"sslfast": "sslfast", "kernels": "sslfast.kernels", "data_pipelines": "sslfast.data_pipelines"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def module_level_imports(name: str, path: Path, known: dict) -> tuple[set[str], list[str]]:
    """(sslfast modules imported at module level, raw top-level names imported anywhere)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges, raw = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            subs = [f"{full}.{a.name}" for a in node.names if f"{full}.{a.name}" in known]
            targets = subs or [full]
        else:
            continue
        raw += [t for t in targets if t.split(".")[0] in ("kernels", "data_pipelines")]
        if node in tree.body:  # imports inside functions are lazy: they cannot form an import-time cycle
            edges |= {t for t in targets if t in known and t != name}
    return edges, raw


def test_no_import_cycles_and_no_top_level_source_names():
    known = modules()
    graph, raw = {}, {}
    for name, path in known.items():
        graph[name], raw[name] = module_level_imports(name, path, known)
    assert {k: v for k, v in raw.items() if v} == {}, (
        "import sslfast.kernels / sslfast.data_pipelines, never the folders"
    )
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(trail[trail.index(nxt) :] + [nxt])
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_kernels_import_only_leaf_modules():
    """kernels/ may use sslfast._numerics and sslfast.backend, never the losses, the torch twins or the app."""
    known = modules()
    allowed = {"sslfast._numerics", "sslfast.backend"}
    for name, path in known.items():
        if not name.startswith("sslfast.kernels"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("sslfast"):
                assert node.module in allowed or node.module.startswith("sslfast.kernels"), (name, node.module)
