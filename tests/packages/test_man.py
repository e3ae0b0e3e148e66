"""Man pages: one for every command and service the packages install, naming every
subcommand and option the programs accept, rendering without a warning; engage.conf(5)
generated from etc/engage/engage.conf with every key and environment variable.

The packages' own copies are checked by test_deb.py / test_rpm.py (installed, and the
built engage.conf(5) equal to what the generator makes of the shipped file).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engage import settings
from engage.admin import cli as engage_cli
from engage.webhooks import cli as webhooks_cli
from engage_milter import main as milter_main

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "packaging/man"
DEBIAN = REPO / "packaging/debian"
PROGRAMS: dict[str, Callable] = {"engage": engage_cli.main, "engage-milter": milter_main.main,
                                 "engage-webhooks": webhooks_cli.main}


def generator():
    spec = importlib.util.spec_from_file_location("genconfman", MAN / "genconfman.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["genconfman"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def conf_page(tmp_path_factory) -> Path:
    done = subprocess.run(["/usr/bin/python3", str(MAN / "genconfman.py")], capture_output=True,
                          text=True, check=True, env={"SOURCE_DATE_EPOCH": "0", "PATH": "/usr/bin"})
    path = tmp_path_factory.mktemp("man") / "engage.conf.5"
    path.write_text(done.stdout)
    return path


def installed() -> dict[str, set[str]]:
    """package -> the commands (usr/bin) and services (units) its .install file ships."""
    found = {}
    for path in DEBIAN.glob("*.install"):
        text = path.read_text()
        found[path.stem] = set(re.findall(r"(?m)^usr/bin/([\w-]+)$", text)) | set(
            re.findall(r"(?m)^packaging/systemd/([\w-]+)\.service ", text))
    return found


def test_every_command_and_service_has_a_man_page_in_its_package():
    spec = (REPO / "packaging/rpm/engage-milter.spec").read_text()
    for package, names in installed().items():
        pages = (DEBIAN / f"{package}.manpages").read_text().split() if names else []
        for name in names:
            assert f"packaging/man/{name}.8" in pages, f"{package} installs {name}: no man page"
            assert (MAN / f"{name}.8").exists()
            assert f"packaging/man/{name}.8" in spec and f"%{{_mandir}}/man8/{name}.8*" in spec
    assert "debian/engage.conf.5" in (DEBIAN / "engage-common.manpages").read_text()
    assert "%{_mandir}/man5/engage.conf.5*" in spec


class _Parsed(Exception):
    pass


def parser_of(main: Callable) -> argparse.ArgumentParser:
    """The parser a program's main() builds (caught as it starts parsing)."""
    seen = []

    def grab(self, *args, **kwargs):
        seen.append(self)
        raise _Parsed

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]
    try:
        main([])
    except _Parsed:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    return seen[0]


def words(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, str]]:
    """(where, word) for every subcommand and long option, --help aside."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path, name
                yield from words(sub, f"{path} {name}".strip())
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                yield path, option


@pytest.mark.parametrize("program", PROGRAMS)
def test_the_man_page_names_every_subcommand_and_option(program):
    page = (MAN / f"{program}.8").read_text()
    missing = [f"{where} {word}".strip() for where, word in words(parser_of(PROGRAMS[program]))
               if word.replace("-", "\\-") not in page]
    assert missing == [], f"packaging/man/{program}.8 does not mention: {missing}"


def pages(conf_page: Path) -> list[Path]:
    return sorted(MAN.glob("*.8")) + [conf_page]


def test_man_pages_render_without_warnings(conf_page):
    """What lintian runs on every page (man --warnings), and groff's own checks."""
    if shutil.which("man") is None:
        pytest.skip("man missing (Debian package man-db)")
    for page in pages(conf_page):
        done = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
                              capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin",
                                                                               "MANWIDTH": "80"})
        assert done.returncode == 0 and done.stderr == "", f"{page.name}: {done.stderr}"
        text = page.read_text()
        assert text.startswith(".TH ") and "\n.SH NAME\n" in text and "\n.SH SEE ALSO\n" in text


def section_of(page: str, section: str) -> str:
    return page.split(f"\n.SS [{section}]\n", 1)[1].split("\n.SS ", 1)[0].split("\n.SH ", 1)[0]


def test_engage_conf_5_has_every_setting_in_its_section(conf_page):
    page = conf_page.read_text()
    for section, key, *_ in settings.SCHEMA:
        assert f"\\fB{key} =\\fR" in section_of(page, section), f"[{section}] {key}"
    for section in settings.DOMAIN_SECTIONS:
        assert f"\n.SS [{section}]\n" in page


def test_engage_conf_5_names_the_key_of_every_environment_variable(conf_page):
    page = conf_page.read_text()
    environment = page.split("\n.SH ENVIRONMENT\n", 1)[1].split("\n.SH ", 1)[0]
    listed = dict(re.findall(r"\.TP\n\.B (ENGAGE_\w+)\n(.*)", environment))
    wanted = {variable: f"[{section}] {key}"
              for (section, key), variable in settings.ENV_OVERRIDES.items()}
    assert listed == wanted


def test_the_generator_follows_the_files_layout():
    module = generator()
    intro, sections = module.parse(
        "# About the file.\n\n[one]\n# First key. [ENGAGE_A]\n#a = 1\n# Two keys,\n"
        "# one text. [ENGAGE_B] [ENGAGE_C]\n#b = x\n#c =\n[two]\n# e.g.\n#example.org = y\n"
        "# Trailing words.\n")
    assert intro == ["About the file."]
    assert [s.name for s in sections] == ["one", "two"]
    first, both = sections[0].entries
    assert (first.keys, first.text) == ([("a", "1")], ["First key. [ENGAGE_A]"])
    assert both.keys == [("b", "x"), ("c", "")]
    page = module.render(intro, sections, "9.9", "2000-01-01")
    assert "\\fBb =\\fR \\fBx\\fR, \\fBc =\\fR \\fI(empty)\\fR" in page
    assert ".B ENGAGE_C\n[one] c\n" in page and ".nf\nexample.org = y\n.fi" in page
    assert "Trailing words." in page and page.startswith('.TH ENGAGE.CONF 5 "2000-01-01"')
    assert module.roff(".starts with a dot \\ and a backslash") == \
        "\\&.starts with a dot \\e and a backslash"
