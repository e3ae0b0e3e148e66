"""The configuration snippets the docs and etc/ give operators, read from the files
themselves so that what is tested is what is written.

In Markdown a snippet is a fenced block whose info string names its kind
(```` ```postfix main.cf ````, ```` ```nginx http ````, ```` ```nginx server ````,
```` ```sendmail mc ````, ```` ```ini engage.conf ````, ```` ```ini machines.conf ````);
``postconf -e`` commands in ``sh`` blocks count as ``postfix main.cf`` snippets. In etc/
whole files are snippets (``ETC``). ``snippets(kind)`` lists them; the parsers below read
them as Postfix, Sendmail and nginx would.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from support.markdown import REPO, doc_files, fenced_blocks

KINDS = ("postfix main.cf", "nginx http", "nginx server", "sendmail mc",
         "ini engage.conf", "ini machines.conf")

# Whole files of etc/ and their kind. sandbox-nginx.conf.in is a complete nginx.conf
# template: every test with nginx (tests/support/procs.py NginxProxy) runs it.
ETC = {
    "etc/postfix/main.cf.engage": "postfix main.cf",
    "etc/nginx/engage-redirector.conf": "nginx http",
    "etc/sendmail/engage-milter.mc": "sendmail mc",
    "etc/engage/engage.conf": "ini engage.conf",
    "etc/engage/machines.conf": "ini machines.conf",
}
ETC_TESTED_ELSEWHERE = {"etc/nginx/sandbox-nginx.conf.in": "every nginx test (NginxProxy)",
                        "etc/engage/gunicorn.conf.py": "every redirector test (Redirector)"}

# engage's default [milter] socket, as the snippets write it.
ENGAGE_POSTFIX_SOCKET = "inet:127.0.0.1:8890"
ENGAGE_SENDMAIL_SOCKET = "inet:8890@127.0.0.1"

_SETTING = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\s*=\s*(?P<value>.*)$")


@dataclass(frozen=True)
class Snippet:
    kind: str
    where: str  # docs/install.md:120 or etc/postfix/main.cf.engage
    text: str


def _postconf_snippets() -> list[Snippet]:
    """Each ``postconf -e 'name = value' ...`` command of an sh block, as main.cf lines."""
    found = []
    for path in doc_files():
        for block in fenced_blocks(path):
            if block.words[:1] not in (("sh",), ("bash",), ("console",)):
                continue
            script = re.sub(r"\\\n", " ", block.text)
            for line in script.splitlines():
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                lexer.commenters = "#"
                words = list(lexer)
                for start, word in enumerate(words):
                    if word != "postconf" or "-e" not in words[start:]:
                        continue
                    settings = []
                    for arg in words[start + 1:]:
                        if arg in ("&&", "||", ";", "|"):
                            break
                        if "=" in arg:
                            settings.append(arg)
                    found.append(Snippet("postfix main.cf", block.where, "\n".join(settings) + "\n"))
    return found


def snippets(kind: str) -> list[Snippet]:
    """Every snippet of ``kind`` in docs/, README.md and etc/."""
    assert kind in KINDS, kind
    found = [Snippet(kind, block.where, block.text)
             for path in doc_files() for block in fenced_blocks(path)
             if " ".join(block.words[:2]) == kind]
    found += [Snippet(kind, name, (REPO / name).read_text())
              for name, etc_kind in ETC.items() if etc_kind == kind]
    if kind == "postfix main.cf":
        found += _postconf_snippets()
    return found


# --------------------------------------------------------------------------- Postfix

def postfix_settings(text: str) -> list[tuple[int, str, str]]:
    """(line, name, value) of the active settings, read as Postfix reads main.cf: a line
    starting with whitespace continues the previous one, a line whose first non-blank
    character is ``#`` is a comment, and a value is everything after ``=`` (trailing
    ``# ...`` included)."""
    settings: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if settings:
                n, name, value = settings[-1]
                settings[-1] = (n, name, f"{value} {line.strip()}")
            continue
        match = _SETTING.match(line.rstrip())
        assert match, f"line {number} is not 'name = value': {line!r}"
        settings.append((number, match["name"], match["value"].strip()))
    return settings


def commented_postfix_settings(text: str) -> list[tuple[int, str, str]]:
    """(line, name, value) of settings commented out (``#name = value``), which an
    operator may uncomment."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            match = _SETTING.match(stripped.lstrip("#").strip())
            if match:
                found.append((number, match["name"], match["value"].strip()))
    return found


def milters_in(value: str) -> list[str]:
    """The milter sockets of a smtpd_milters value (comma or space separated)."""
    return [item for item in re.split(r"[\s,]+", value) if item]


# --------------------------------------------------------------------------- Sendmail

def sendmail_filter_lines(text: str) -> list[str]:
    """The active m4 lines of a sendmail.mc snippet (``dnl`` comment lines left out)."""
    return [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("dnl")]
