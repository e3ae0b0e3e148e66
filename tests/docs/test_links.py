"""Every link in README.md and docs/*.md leads somewhere: a relative link names a file
or directory of the repository, its #anchor a heading of that Markdown file as GitHub
slugs it; an http(s) link is well-formed (no network here)."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from support.markdown import REPO, anchors, doc_files, links

LINKS = [(path, line, target) for path in doc_files() for line, target in links(path)]


def problem(path: Path, target: str) -> str | None:
    """What is wrong with one link target, or None."""
    if not target:
        return "empty link"
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host or " " in target or ("." not in host and host != "localhost"):
            return "malformed URL"
        return None
    if parts.scheme == "mailto":
        return None if "@" in parts.path else "malformed mailto"
    if parts.scheme or parts.netloc:
        return f"scheme {parts.scheme or '//'} is neither http(s) nor relative"
    file = (path.parent / unquote(parts.path)).resolve() if parts.path else path
    if REPO not in file.parents and file != REPO:
        return "leaves the repository"
    if not file.exists():
        return f"{file.relative_to(REPO)} does not exist"
    if parts.fragment:
        if file.suffix != ".md":
            return "an #anchor on a file that is not Markdown"
        if parts.fragment not in anchors(file):
            return f"no heading gives #{parts.fragment} in {file.relative_to(REPO)}"
    return None


def test_the_docs_have_links_to_check():
    assert len(LINKS) > 50 and len(doc_files()) > 10


@pytest.mark.parametrize("path, line, target", LINKS,
                         ids=[f"{p.relative_to(REPO)}:{n}:{t}" for p, n, t in LINKS])
def test_link_resolves(path, line, target):
    assert problem(path, target) is None, f"{path.relative_to(REPO)}:{line}: {target}: {problem(path, target)}"


@pytest.mark.parametrize("target, expected", [
    ("#nowhere", "no heading"), ("missing.md", "does not exist"),
    ("../../etc/passwd", "leaves the repository"), ("https://", "malformed"),
    ("ftp://example.com/x", "scheme"), ("install.md#the-services", None),
    ("../etc/engage/engage.conf", None), ("https://developers.sparkpost.com/api/metrics/", None),
])
def test_the_checker_can_fail(target, expected):
    found = problem(REPO / "docs" / "index.md", target)
    assert (found is None) if expected is None else (expected in (found or "")), found
