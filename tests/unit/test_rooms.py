"""The protocol's rooms: event, pending queue, lock and holder each in one module, data flowing
one way (handler -> event -> batch -> pending -> lock -> holder -> warehouse).

Read from the source (every import, lazy ones inside functions included), so a shortcut that
makes two rooms import each other fails here before anyone has to untangle it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import oddsbatch

PACKAGE = Path(oddsbatch.__file__).parent
# The rooms, in the order data flows through them.
FLOW = ("handler", "event", "batch", "pending", "lock", "holder", "fence", "warehouse")
# What each room may import of the other rooms: the rooms it hands work to, and the records it
# reads (the holder reads markers and fences on the lock; nothing upstream reads the holder; the
# MERGE fence is a lock's kind of record, and the warehouse reads its placeholder behind a 409).
MAY_IMPORT = {
    "handler": {"event", "batch"},
    "event": set(),
    "batch": {"event", "pending", "lock", "holder"},
    "pending": set(),
    "lock": set(),
    "holder": {"pending", "lock", "fence", "warehouse"},
    "fence": {"lock"},
    "warehouse": {"fence"},
}


def package_imports(module: str) -> set[str]:
    """The oddsbatch modules `module` imports, anywhere in its source."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("oddsbatch."):
            found.add(node.module.split(".")[1])
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {m: package_imports(m) & modules for m in modules}


def test_each_room_imports_only_the_rooms_it_hands_work_to_or_reads():
    graph = import_graph()
    for room in FLOW:
        assert graph[room] & set(FLOW) <= MAY_IMPORT[room], (room, sorted(graph[room] & set(FLOW)))


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + (module,))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_the_graph_reader_sees_lazy_imports():
    # negative control: handler imports batch only inside a function, and the reader finds it
    assert "batch" in package_imports("handler")
    assert {"holder", "pending", "lock"} <= package_imports("batch")
