"""The README is the front door: short, with the diagram, the two commands CI and
newcomers run (`make run`, `make test`) and links into docs/, where every page can be
reached from docs/index.md."""
from __future__ import annotations

from support.markdown import REPO, doc_files, fenced_blocks, links

README = REPO / "README.md"


def test_readme_is_under_15_kb():
    assert README.stat().st_size < 15_000, README.stat().st_size


def test_readme_gives_the_set_up_and_test_commands():
    commands = [b.text.strip() for b in fenced_blocks(README) if b.words[:1] == ("sh",)]
    assert "make run" in commands and "make test" in commands, commands
    makefile = (REPO / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile


def test_readme_has_the_data_flow_diagram():
    diagram = fenced_blocks(README)[0]
    assert not diagram.info and "engage-milter" in diagram.text and "redirector" in diagram.text


def test_every_docs_page_is_linked_from_the_index():
    index = REPO / "docs" / "index.md"
    linked = {(index.parent / target.split("#")[0]).resolve() for _, target in links(index)
              if not target.startswith(("http", "#"))}
    pages = {p.resolve() for p in doc_files() if p.parent.name == "docs" and p.name != "index.md"}
    assert not pages - linked, sorted(str(p.relative_to(REPO)) for p in pages - linked)
    assert any(t == "docs/index.md" for _, t in links(README))
