"""The layout shows the architecture (docs/architecture.md), read from the code's own imports:

- no import cycle anywhere, lazy imports inside functions included (a task module imports its
  service; a service queues its jobs by name, koogallery/outbound/jobs.py);
- `koogallery/`, the boundary, imports no domain app (domain apps register with it);
- no folder holds more than 20 modules side by side, and no top-level app more than 30 % of the
  code, so that each room can be read at a glance.

Each check names what breaks it, so a failure says which import or folder to look at.
"""

import ast
from pathlib import Path

from tests.support import ROOT

DOMAIN_APPS = ("instances", "tenants", "orgsync", "licensing", "metering", "sso")
APPS = ("config", "koogallery", *DOMAIN_APPS, "ops")
MAX_MODULES_PER_FOLDER = 20
MAX_SHARE_OF_CODE = 0.30


def _modules() -> dict[str, Path]:
    modules = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.Module, module: str, is_package: bool):
    """Every dotted name an import statement of the module may load, at any depth."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for imported in _imported_names(tree, name, path.name == "__init__.py"):
            # `from a.b import c` loads a.b.c when c is a module, else a.b.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_boundary_imports_no_domain_app():
    offending = {
        module: sorted(t for t in targets if t.split(".")[0] in DOMAIN_APPS)
        for module, targets in import_graph().items()
        if module.split(".")[0] == "koogallery"
    }

    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_no_folder_holds_more_than_20_modules():
    crowded = {}
    for app in APPS:
        for folder in [ROOT / app, *(p for p in (ROOT / app).rglob("*") if p.is_dir())]:
            if "migrations" in folder.parts or folder.name == "__pycache__":
                continue
            count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
            if count > MAX_MODULES_PER_FOLDER:
                crowded[str(folder.relative_to(ROOT))] = count

    assert crowded == {}


def code_lines() -> dict[str, int]:
    """Non-blank lines of Python per top-level app, migrations left out."""
    lines = {}
    for app in APPS:
        lines[app] = sum(
            sum(1 for line in path.read_text().splitlines() if line.strip())
            for path in (ROOT / app).rglob("*.py")
            if "migrations" not in path.parts
        )
    return lines


def test_no_app_holds_more_than_30_percent_of_the_code():
    lines = code_lines()
    total = sum(lines.values())

    shares = {app: round(n / total, 3) for app, n in lines.items()}

    assert {app: share for app, share in shares.items() if share > MAX_SHARE_OF_CODE} == {}
