"""The rpm packages, built as `make rpm` builds them, inspected with rpm -qp.

packaging/build-rpm runs rpmbuild on packaging/rpm/engage-milter.spec (on Debian with
--nodeps: the EL9/EPEL build requirements are not installable here). The packages are
not installed; their file lists, config flags, owners and dependencies (EPEL names:
python3-pymilter, python3-flask, python3-gunicorn, python3-redis) are checked.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def rpms(tmp_path_factory) -> dict[str, Path]:
    if shutil.which("rpmbuild") is None:
        if os.environ.get("CI"):
            pytest.fail("rpmbuild missing (CI is set): run scripts/install-build-deps rpm")
        pytest.skip("rpmbuild missing: run scripts/install-build-deps rpm (Debian package rpm)")
    out = tmp_path_factory.mktemp("rpm")
    done = subprocess.run(["bash", str(REPO / "packaging/build-rpm"), str(out)],
                          capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    return {re.sub(r"-\d[\w.]*-\d+\.noarch\.rpm$", "", p.name): p for p in out.glob("*.noarch.rpm")}


def query(rpm: Path, *args: str) -> list[str]:
    done = subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True,
                          env=ENV, check=True)
    return [line for line in done.stdout.splitlines() if "__pycache__" not in line]


def files(rpm: Path) -> dict[str, str]:
    """path -> 'flags mode owner:group' (flags: c config, n noreplace, g ghost, d doc).
    Man pages without .gz: EL's rpmbuild compresses them, Debian's does not."""
    rows = query(rpm, "--qf", "[%{FILENAMES}\t%{FILEFLAGS:fflags} %{FILEMODES:perms} "
                             "%{FILEUSERNAME}:%{FILEGROUPNAME}\n]")
    pairs = (row.split("\t", 1) for row in rows)
    return {re.sub(r"(/man/man\d/.*)\.gz$", r"\1", path): rest for path, rest in pairs}


def test_four_packages_are_built(rpms):
    assert sorted(rpms) == ["engage-common", "engage-milter", "engage-redirector",
                            "python3-engage"]


def test_rpm_qlp_lists_what_each_package_installs(rpms):
    for rpm in rpms.values():
        print(f"== rpm -qlp {rpm.name}\n" + "\n".join(query(rpm, "-l")))
    common, milter, web, lib = (files(rpms[n]) for n in (
        "engage-common", "engage-milter", "engage-redirector", "python3-engage"))
    assert common["/etc/engage/engage.conf"] == "cn -rw-r----- root:engage"  # %config(noreplace)
    assert common["/run/engage"] == "g drwxr-x--- engage:engage"
    assert {"/usr/bin/engage", "/usr/lib/sysusers.d/engage.conf",
            "/usr/lib/tmpfiles.d/engage.conf", "/usr/share/man/man8/engage.8",
            "/usr/share/man/man5/engage.conf.5"} <= set(common)
    assert common["/usr/libexec/engage/stop-services"].endswith(" -rwxr-xr-x root:root")
    assert {"/usr/bin/engage-milter", "/usr/lib/systemd/system/engage-milter.service",
            "/usr/share/man/man8/engage-milter.8"} <= set(milter)
    assert any(p.endswith("/engage_milter/filter.py") for p in milter)
    assert web["/etc/engage/gunicorn.conf.py"].startswith("cn ")
    assert {"/usr/bin/engage-webhooks", "/usr/lib/systemd/system/engage-redirector.service",
            "/usr/lib/systemd/system/engage-webhooks.service",
            "/usr/share/man/man8/engage-redirector.8",
            "/usr/share/man/man8/engage-webhooks.8"} <= set(web)
    assert any(p.endswith("/engage/web/app.py") for p in lib)
    for name in ("index.html", "dashboard.js", "dashboard.css"):  # package data
        assert any(p.endswith(f"/engage/dashboard/static/{name}") for p in lib), name
    # The verdict rules: package data of engage, kept in /usr/share/engage, linked back.
    assert lib["/usr/share/engage/machines.conf"].startswith(" -rw-r--r--")
    data = next(p for p in lib if p.endswith("-packages/engage/machines.conf"))
    assert lib[data].split()[0].startswith("l")
    assert not any("-packages/engage/" in p for p in {**milter, **web, **common})


def test_removal_stops_the_services_where_systemd_does_not(rpms):
    for name, units in (("engage-milter", "engage-milter"),
                        ("engage-redirector", "engage-redirector engage-webhooks")):
        scripts = "\n".join(query(rpms[name], "--scripts"))
        assert f"/usr/libexec/engage/stop-services {units} || :" in scripts, scripts


def test_dependencies_use_epel_names_and_keep_the_hosts_apart(rpms):
    requires = {name: " ".join(query(rpm, "--requires")) for name, rpm in rpms.items()}
    assert "python3-pymilter" in requires["engage-milter"]
    assert not re.search(r"flask|gunicorn", requires["engage-milter"])
    assert "python3-flask" in requires["engage-redirector"]
    assert "python3-gunicorn" in requires["engage-redirector"]
    assert "pymilter" not in requires["engage-redirector"]
    assert "python3-redis >= 4.3" in requires["python3-engage"]
    assert "shadow-utils" in requires["engage-common"]  # %pre creates the engage user
    scripts = "\n".join(query(rpms["engage-common"], "--scripts"))
    assert "useradd -r -g engage" in scripts


def test_optional_accelerators_are_not_requirements(rpms):
    """hiredis is an extra: RHEL 9 ships none new enough, a requirement would block installs."""
    assert "hiredis" not in " ".join(query(rpms["python3-engage"], "--requires"))
