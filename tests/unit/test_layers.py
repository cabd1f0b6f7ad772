"""The layers import one way: no module of crosswire imports, even for type annotations only
(``if TYPE_CHECKING:``) or inside a function, a module that imports it back.

``docs/architecture.md`` has the layers; a cycle means one of them reaches into another's
internals instead of the small interface it offers (``Peer``'s, the Hub's ``PeerHub``, the
dispatcher's ``Serving``, ...).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import crosswire

SRC = Path(crosswire.__file__).parent

#: The one pair left: the Router builds its Dispatcher (registration -> serving), and the
#: dispatcher's annotations name the Router whose routes it reads.
KNOWN = {frozenset({"crosswire.router.router", "crosswire.router.dispatch"})}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[str]:
    """Every crosswire module ``path`` imports, wherever the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("crosswire"):
                continue
            yield target
            for alias in node.names:  # ``from . import hub`` imports a module
                sub = f"{target}.{alias.name}"
                if (SRC.parent / sub.replace(".", "/")).with_suffix(".py").exists():
                    yield sub
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("crosswire"))


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        graph[module_name(path)] = set(imports_of(path)) - {module_name(path)}
    return {name: deps & graph.keys() for name, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    unexpected = [c for c in cycles(import_graph()) if frozenset(c) not in KNOWN]
    assert unexpected == []


def test_the_graph_sees_imports_under_type_checking() -> None:
    """The test above would pass vacuously if it missed annotation-only imports."""
    graph = import_graph()
    assert "crosswire.router.router" in graph["crosswire.router.dispatch"]  # TYPE_CHECKING
    assert "crosswire.peer" in graph["crosswire.hooks"]  # TYPE_CHECKING
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


def test_the_hub_and_the_router_use_the_peer_through_its_interface() -> None:
    """No layer above the peer reads or writes its private attributes (the server adapters,
    below it, call its ``_receive_data``/``_closed``/... side: :class:`crosswire.Transport`)."""
    offenders = []
    for path in [*SRC.glob("pubsub/*.py"), *SRC.glob("router/*.py"), *SRC.glob("rooms/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name | ast.Attribute)
                and (node.value.id if isinstance(node.value, ast.Name) else node.value.attr)
                == "peer"
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} peer.{node.attr}")
    assert offenders == []
