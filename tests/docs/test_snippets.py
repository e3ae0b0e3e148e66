"""The snippets of docs/ and etc/ read as the software they are for reads them, without
running it (the Postfix, nginx and Sendmail runs are in test_postfix_snippets.py,
test_nginx_snippets.py and tests/e2e/test_sendmail.py).

- No Postfix value carries a `#`: Postfix reads `# ...` after a value as part of it.
- Every milter list an operator can paste as is names engage alone; other milters
  (OpenDKIM, rspamd) only appear commented out, under a comment saying what they need.
- Blocks that look like Postfix, nginx, Sendmail or engage configuration are marked, so
  the tests find them; every file of etc/ is claimed by a test.
- engage.conf and machines.conf snippets load with engage's own readers.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from support.markdown import REPO, doc_files, fenced_blocks
from support.snippets import (
    ENGAGE_POSTFIX_SOCKET,
    ETC,
    ETC_TESTED_ELSEWHERE,
    commented_postfix_settings,
    milters_in,
    postfix_settings,
    snippets,
)

POSTFIX = snippets("postfix main.cf")
MILTER_LISTS = ("smtpd_milters", "non_smtpd_milters")


def ids(found):
    return [snippet.where for snippet in found]


def test_every_kind_of_snippet_is_found():
    counts = {kind: len(snippets(kind)) for kind in
              ("postfix main.cf", "nginx http", "nginx server", "sendmail mc",
               "ini engage.conf", "ini machines.conf")}
    assert counts["postfix main.cf"] >= 6 and counts["nginx http"] >= 2, counts
    assert all(counts.values()), counts


def test_a_value_with_a_comment_is_found():
    text = "smtpd_milters = inet:127.0.0.1:8890   # engage\n#x = 1 # y\n"
    assert [v for _, _, v in postfix_settings(text) if "#" in v] == ["inet:127.0.0.1:8890   # engage"]
    assert [v for _, _, v in commented_postfix_settings(text)] == ["1 # y"]


@pytest.mark.parametrize("snippet", POSTFIX, ids=ids(POSTFIX))
def test_no_postfix_value_carries_a_comment(snippet):
    """Active lines, and commented-out settings an operator may uncomment."""
    found = [(line, name, value) for line, name, value in
             postfix_settings(snippet.text) + commented_postfix_settings(snippet.text)
             if "#" in value]
    assert not found, f"{snippet.where}: Postfix would read the '#' as part of the value: {found}"


@pytest.mark.parametrize("snippet", POSTFIX, ids=ids(POSTFIX))
def test_pasteable_milter_lists_name_engage_alone(snippet):
    for line, name, value in postfix_settings(snippet.text):
        if name in MILTER_LISTS:
            others = [m for m in milters_in(value) if m not in (ENGAGE_POSTFIX_SOCKET, "$smtpd_milters")]
            assert not others, (f"{snippet.where}, line {line}: {name} needs {others} besides engage; "
                                "put it in a commented-out optional line")


@pytest.mark.parametrize("snippet", POSTFIX, ids=ids(POSTFIX))
def test_optional_milters_say_what_they_need(snippet):
    lines = snippet.text.splitlines()
    for line, name, value in commented_postfix_settings(snippet.text):
        if name not in MILTER_LISTS or all(m == ENGAGE_POSTFIX_SOCKET for m in milters_in(value)):
            continue
        above = []
        for previous in reversed(lines[:line - 1]):
            stripped = previous.strip()
            if not stripped.startswith("#") or commented_postfix_settings(stripped):
                break
            above.insert(0, stripped)
        assert "only with" in " ".join(above), (
            f"{snippet.where}, line {line}: the optional {name} needs a comment above it "
            f"saying what it needs ('Optional, only with ...'), got {above}")


UNMARKED = {
    "postfix main.cf": re.compile(r"^\s*#?\s*(smtpd?|non_smtpd|milter)_[a-z_]+\s*=", re.M),
    "sendmail mc": re.compile(r"INPUT_MAIL_FILTER\("),
    "nginx": re.compile(r"^\s*(location|proxy_pass|server_name|listen|log_format|access_log|"
                        r"upstream|limit_req_zone)\b[^\n]*[;{]\s*$", re.M),
    "ini engage.conf": re.compile(r"^\[(redis|tracking|tracking_domains|open_tracking|api|web|"
                                  r"milter|dashboard|privacy|verdicts|metrics|events|webhooks)\]",
                                  re.M),
}


@pytest.mark.parametrize("path", doc_files(), ids=[str(p.relative_to(REPO)) for p in doc_files()])
def test_configuration_blocks_are_marked(path):
    """A block that looks like configuration but is not marked would escape the tests."""
    for block in fenced_blocks(path):
        marked = " ".join(block.words[:2])
        for kind, pattern in UNMARKED.items():
            if kind == "postfix main.cf" and block.words[:1] == ("sh",):
                continue  # postconf -e commands are read from sh blocks
            if marked.startswith(kind):
                continue
            assert not pattern.search(block.text), (
                f"{block.where}: this block looks like {kind} configuration; mark it "
                f"(```{kind if kind != 'nginx' else 'nginx http|server'}) so the tests run it")


def test_every_configuration_file_in_etc_is_claimed():
    files = {str(p.relative_to(REPO)) for p in (REPO / "etc").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}  # gunicorn compiles its .py config
    assert files == set(ETC) | set(ETC_TESTED_ELSEWHERE)


def _module(*names: str):
    """The first of ``names`` that imports (the engage package is being re-cut)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(names)


ENGAGE_CONF = snippets("ini engage.conf")
MACHINES = snippets("ini machines.conf")


@pytest.mark.parametrize("snippet", ENGAGE_CONF, ids=ids(ENGAGE_CONF))
def test_engage_conf_snippets_load(snippet, tmp_path: Path):
    settings = _module("engage.settings")
    path = tmp_path / "engage.conf"
    path.write_text(snippet.text)
    settings.load(str(path), environ={})


@pytest.mark.parametrize("snippet", MACHINES, ids=ids(MACHINES))
def test_machines_conf_snippets_parse(snippet):
    machines = _module("engage.verdicts.machines", "engage.machines")
    shipped = machines.parse((REPO / "etc" / "engage" / "machines.conf").read_text(), "shipped")
    # A local file extends the shipped one (same section names), as the redirector reads them.
    parsed = machines.parse(snippet.text, snippet.where, shipped)
    assert parsed


def test_a_comment_after_a_value_stops_engage_conf(tmp_path: Path):
    settings = _module("engage.settings")
    path = tmp_path / "engage.conf"
    path.write_text("[tracking]\nurl = https://click.example.com ; ours\n")
    with pytest.raises(settings.SettingsError):
        settings.load(str(path), environ={})
