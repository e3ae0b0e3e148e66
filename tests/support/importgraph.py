"""The import graph between engage's sub-packages (and the milter), read from the source
with ast: for the layering test and the picture in docs/architecture.md."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"engage": REPO / "redirector" / "engage", "engage_milter": REPO / "milter" / "engage_milter"}


def unit_of(module: str) -> str | None:
    """``engage.store.links`` -> ``store``; ``engage.settings`` -> ``settings``;
    anything in the milter -> ``milter``; None outside the project."""
    parts = module.split(".")
    if parts[0] == "engage_milter":
        return "milter"
    if parts[0] != "engage" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add(package)
    return found


def edges() -> set[tuple[str, str]]:
    """(importer, imported) pairs of units, self-imports left out."""
    pairs: set[tuple[str, str]] = set()
    for top, root in ROOTS.items():
        for path in root.rglob("*.py"):
            relative = path.relative_to(root).with_suffix("").parts
            module = ".".join((top, *relative)).removesuffix(".__init__")
            source = unit_of(module)
            for imported in _imports(path, module):
                target = unit_of(imported)
                if source and target and target != source:
                    pairs.add((source, target))
    return pairs


def mermaid() -> str:
    lines = ["```mermaid", "graph TD"]
    lines += [f"    {a} --> {b}" for a, b in sorted(edges())]
    lines.append("```")
    return "\n".join(lines)
