"""`make deb` and `make rpm` install what building needs and nothing of the test world.

Measured on Debian 12 (apt-get -s against the required/important base system): `make
deb` installs 233 packages (450 MB, most of it build-essential and lintian), `make rpm`
51 (136 MB); before, both ran scripts/install-deps: 441 packages (1225 MB, Chromium,
Postfix, Redis and nginx among them) and a 124 MB venv.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_WORLD = {"postfix", "redis-server", "nginx", "chromium", "chromium-driver", "swaks",
              "libmilter-dev", "python3-venv", "autopkgtest", "libpython3.11-testsuite"}
# Build-Depends that are virtual packages, and who provides them.
PROVIDED = {"debhelper-compat": "debhelper", "dh-sequence-installsysusers": "debhelper",
            "dh-sequence-python3": "dh-python"}


def listed(kind: str) -> set[str]:
    done = subprocess.run([str(REPO / "scripts/install-build-deps"), "--list", kind],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("target", ["deb", "rpm"])
def test_the_package_targets_install_build_dependencies_only(target):
    done = subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True,
                          text=True, check=True)
    assert f"scripts/install-build-deps {target}" in done.stdout
    assert "install-deps" not in done.stdout.replace("install-build-deps", "")
    assert "pip" not in done.stdout and ".venv" not in done.stdout
    assert listed(target) and not listed(target) & TEST_WORLD


def test_the_deb_list_covers_the_build_depends():
    control = (REPO / "packaging/debian/control").read_text()
    field = re.search(r"(?ms)^Build-Depends:(.*?)^\S", control).group(1)
    names = {re.match(r"[\w.+-]+", item.strip()).group(0) for item in field.split(",")
             if item.strip()}
    needed = {PROVIDED.get(name, name) for name in names} | {"build-essential", "lintian"}
    assert needed <= listed("deb")


def test_the_rpm_list_covers_the_specs_fallbacks():
    spec = (REPO / "packaging/rpm/engage-milter.spec").read_text()
    assert "-m build --wheel --no-isolation" in spec and "from installer import" in spec
    assert {"rpm", "python3-build", "python3-installer", "python3-setuptools",
            "python3-wheel"} <= listed("rpm")


def test_install_deps_still_installs_both_for_make_test():
    text = (REPO / "scripts/install-deps").read_text()
    assert "scripts/install-build-deps --list all" in text
    assert listed("all") == listed("deb") | listed("rpm")
