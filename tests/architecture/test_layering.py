"""Dependencies run one way: the milter needs only the store and settings; the store
imports no other engage package; nothing imports the web layer or the admin tools."""
from __future__ import annotations

from support.importgraph import edges


def test_the_milter_imports_only_the_store_settings_and_logging():
    """Besides the store and settings, two leaf modules of a few lines: the logging setup
    and the one-line message naming a missing pip extra."""
    assert {b for a, b in edges() if a == "milter"} <= {"store", "settings", "logsetup", "extras"}


def test_the_store_imports_no_other_engage_package():
    assert {b for a, b in edges() if a == "store"} == set()


def test_nothing_imports_the_web_layer_or_the_admin_tools():
    assert {a for a, b in edges() if b == "web"} == set()
    assert {a for a, b in edges() if b == "admin"} == set()


def test_there_is_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for a, b in edges():
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in graph.get(start, ()))
    assert [a for a in graph if reaches(a, a, set())] == []


def test_the_architecture_picture_is_current():
    from support.importgraph import REPO, mermaid
    text = (REPO / "docs" / "architecture.md").read_text()
    assert mermaid() in text, "docs/architecture.md: regenerate the import graph (tests/support/importgraph.py)"
