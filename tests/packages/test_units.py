"""The systemd units as systemd itself reads them, and stopping them without systemd.

- ``systemd-analyze verify`` on the three units (in a throw-away root holding a copy of
  the host's units and stand-ins for the programs, since the packages are not
  installed here): no warning at all.
- ``systemd-analyze security --offline=true``: each unit rates "OK" or better.
- packaging/stop-services, which the prerm/%preun scripts run where systemd is not PID 1:
  it stops the processes running a unit's ExecStart= (SIGTERM, then SIGKILL after
  TimeoutStopSec) and leaves every other process alone.

Skipped only when systemd-analyze is missing (scripts/install-deps installs systemd).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ("engage-milter", "engage-redirector", "engage-webhooks")
GOOD_ENOUGH = ("OK", "SAFE", "PERFECT")  # systemd-analyze's levels below MEDIUM
STOP_SERVICES = REPO / "packaging" / "stop-services"


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze missing: run scripts/install-deps (Debian package systemd)")
    return path


def programs(unit: Path) -> list[str]:
    """Every absolute program path an Exec*= line of the unit runs."""
    found = []
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec") and value:
            found.append(value.lstrip("-@:+!").split()[0])
    return found


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A root for systemd-analyze: the host's units (targets the ours refer to), our units,
    and an executable stand-in at every path their Exec*= lines run."""
    top = tmp_path_factory.mktemp("root")
    (top / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", top / "usr/lib/systemd/system", symlinks=True)
    for name in ("bin", "lib", "sbin"):
        (top / name).symlink_to(f"usr/{name}")
    for unit in UNITS:
        source = REPO / "packaging/systemd" / f"{unit}.service"
        shutil.copy(source, top / "usr/lib/systemd/system")
        for program in programs(source):
            stand_in = top / program.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
    return top


def test_units_pass_systemd_analyze_verify(root):
    units = [str(root / "usr/lib/systemd/system" / f"{u}.service") for u in UNITS]
    done = subprocess.run([analyze(), "verify", f"--root={root}", "--man=no", *units],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_verify_would_catch_a_mistake(root, tmp_path):
    """The check above can fail: a misspelt value is only a warning to systemd."""
    broken = root / "usr/lib/systemd/system/engage-broken.service"
    text = (REPO / "packaging/systemd/engage-webhooks.service").read_text()
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strct"))
    try:
        done = subprocess.run([analyze(), "verify", f"--root={root}", "--man=no", str(broken)],
                              capture_output=True, text=True, timeout=120)
    finally:
        broken.unlink()
    assert "strct" in done.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_units_rate_ok_or_better_in_systemd_analyze_security(unit):
    path = REPO / "packaging/systemd" / f"{unit}.service"
    done = subprocess.run([analyze(), "security", "--offline=true", "--no-pager", str(path)],
                          capture_output=True, text=True, timeout=120)
    print(done.stdout)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    print(f"{unit}: exposure {found.group(1)} {found.group(2)}")
    assert found.group(2) in GOOD_ENOUGH, f"{unit} rates {found.group(1)} {found.group(2)}"


# ------------------------------------------------------------------ stop-services

FAKE = """\
import os, signal, sys, time
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--child" in sys.argv and os.fork() == 0:
    parent = os.getppid()
    while os.getppid() == parent:  # a worker: ends with its parent
        time.sleep(0.05)
    sys.exit(0)
time.sleep(120)
"""


def fake_service(tmp_path: Path, name: str, exec_start: str, timeout: int = 10) -> Path:
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    (units / f"{name}.service").write_text(
        f"[Service]\nExecStart={exec_start}\nTimeoutStopSec={timeout}\n")
    return units


def program(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fake-worker"
    path.write_text(f"#!{sys.executable}\n{FAKE}")
    path.chmod(0o755)
    return path


def start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            start_new_session=True)


def stop_services(units: Path, *names: str, systemd_dir: str = "/nonexistent") -> str:
    done = subprocess.run([sys.executable, str(STOP_SERVICES), "--unit-dir", str(units),
                           "--systemd-dir", systemd_dir, *names],
                          capture_output=True, text=True, timeout=60)
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    return done.stdout


def settle(*procs: subprocess.Popen) -> None:
    time.sleep(0.5)  # the programs are running python, not just forked
    for proc in procs:
        assert proc.poll() is None


def cleanup(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_stop_services_stops_the_units_command_and_nothing_else(tmp_path):
    fake = program(tmp_path / "usr-bin")
    other = program(tmp_path / "elsewhere")
    units = fake_service(tmp_path, "fake-worker", f"{fake} run")
    service = start(fake, "--config", "/x", "run", "--child")   # extra options are fine
    admin = start(fake, "list")                                 # the same program, not the service
    lookalike = start(other, "run")                             # another file of that name
    try:
        settle(service, admin, lookalike)
        out = stop_services(units, "fake-worker")
        assert service.wait(10) == -signal.SIGTERM
        assert admin.poll() is None and lookalike.poll() is None
        assert f"SIGTERM to pid {service.pid} " in out and "stopped" in out
        assert stop_services(units, "fake-worker").startswith("fake-worker: not running")
    finally:
        cleanup(service, admin, lookalike)


def test_stop_services_kills_what_ignores_sigterm_after_timeoutstopsec(tmp_path):
    fake = program(tmp_path / "bin")
    units = fake_service(tmp_path, "fake-worker", f"{fake} run", timeout=1)
    stubborn = start(sys.executable, "-I", fake, "run", "--ignore-term")
    try:
        settle(stubborn)
        started = time.monotonic()
        out = stop_services(units, "fake-worker")
        assert stubborn.wait(10) == -signal.SIGKILL
        assert 1 <= time.monotonic() - started < 10
        assert "still running after 1 s: SIGKILL" in out
    finally:
        cleanup(stubborn)


def test_stop_services_leaves_the_units_to_systemd_when_it_runs(tmp_path):
    fake = program(tmp_path / "bin")
    units = fake_service(tmp_path, "fake-worker", f"{fake} run")
    service = start(fake, "run")
    try:
        settle(service)
        assert stop_services(units, "fake-worker", systemd_dir=str(tmp_path)) == ""
        assert service.poll() is None
    finally:
        cleanup(service)


def test_stop_services_says_when_it_cannot(tmp_path):
    out = stop_services(tmp_path, "no-such-unit")
    assert "unit file not found" in out and "stop the service yourself" in out


def test_maintainer_scripts_stop_every_unit_on_remove_without_systemd():
    """Each package's removal script names every unit the package installs."""
    debian = REPO / "packaging/debian"
    spec = (REPO / "packaging/rpm/engage-milter.spec").read_text()
    for package, units in (("engage-milter", ["engage-milter"]),
                           ("engage-redirector", ["engage-redirector", "engage-webhooks"])):
        installed = re.findall(r"packaging/systemd/([\w-]+)\.service",
                               (debian / f"{package}.install").read_text())
        assert installed == units
        line = f"/usr/libexec/engage/stop-services {' '.join(units)}"
        assert line in (debian / f"{package}.prerm").read_text()
        assert f"%{{_libexecdir}}/engage/stop-services {' '.join(units)}" in spec
    assert "packaging/stop-services usr/libexec/engage/" in (
        debian / "engage-common.install").read_text()
