"""The Redis schema table of docs/redis-schema.md, generated from the registry so it
cannot drift: ``python -m engage.store.schemadoc`` prints it; a test compares."""
from __future__ import annotations

from engage.store.keys import FAMILIES

BEGIN = "<!-- BEGIN GENERATED: the key registry (engage.store.keys); python -m engage.store.schemadoc -->"
END = "<!-- END GENERATED -->"


def table() -> str:
    rows = ["| family | key (after the prefix) | type | written by | lives | erasure | migration |",
            "|---|---|---|---|---|---|---|"]
    for family in FAMILIES:
        cells = (family.name, f"`{family.pattern}`", family.type, family.owner, family.expiry,
                 family.erasure.value, family.migration)
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def splice(document: str) -> str:
    """``document`` with the text between the markers replaced by the current table."""
    head, found, rest = document.partition(BEGIN)
    _, ended, tail = rest.partition(END)
    if not found or not ended:
        raise ValueError("the schema markers are missing")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    print(f"{BEGIN}\n{table()}\n{END}")
