"""engage installed with pip from its wheel, with no source tree and no packaged files.

The wheel is built from a copy of the tree (git's list, as the packages are) with
Debian's python3 and setuptools, then installed into a fresh venv:

1. the wheel holds every file of the two Python packages (the verdict rules
   machines.conf as a real file, the dashboard's page), so nothing is read from the tree;
2. installed without extras (``--no-deps`` plus redis), engage-milter and the
   redirector each say in one line which extra to install, and exit 78;
3. with the ``web`` extra (pip resolves Flask and gunicorn), gunicorn started outside
   the tree with only the README's three settings (ENGAGE_REDIS_URL,
   ENGAGE_TRACKING_URL, ENGAGE_API_KEYS) answers /healthz, a click and the events API.

Needs Debian's python3-setuptools, python3-wheel and python3-venv, and pip able to
fetch Flask and gunicorn (its cache or the registry): skipped otherwise.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from support.procs import free_port, http_get, stop_process

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, as the packages build; not a venv's or pyenv's
PACKAGE_DIRS = {"redirector/engage/": "engage/", "milter/engage_milter/": "engage_milter/"}
THREE = {"ENGAGE_REDIS_URL": "", "ENGAGE_TRACKING_URL": "https://click.example.com",
         "ENGAGE_API_KEYS": "wheel-test-key-0123456789abcdef"}  # 128+ bits
LOCK = "/run/lock/engage-package-tests.lock"  # test_deb installs /etc/engage meanwhile


def run(argv: list, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    print(f"$ {' '.join(map(str, argv))}  ({time.monotonic() - started:.1f} s, exit "
          f"{done.returncode})\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


def source_files() -> list[str]:
    listing = run(["bash", REPO / "packaging/list-source"]).stdout
    return [name for name in listing.split("\0") if name]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    probe = run([SYSTEM_PYTHON, "-c", "import setuptools, wheel, venv"])
    if probe.returncode != 0:
        pytest.skip("Debian's python3-setuptools/python3-wheel/python3-venv missing: "
                    "scripts/install-build-deps deb")
    top = tmp_path_factory.mktemp("wheel")
    src, out = top / "src", top / "out"
    names = "\0".join(source_files())
    subprocess.run(["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", str(top / "src.tar")],
                   input=names, text=True, check=True)
    src.mkdir()
    subprocess.run(["tar", "-C", str(src), "-xf", str(top / "src.tar")], check=True)
    done = run([SYSTEM_PYTHON, "-c", "import sys; from setuptools import build_meta as b; "
                "print(b.build_wheel(sys.argv[1]))", out], cwd=src,
               env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr
    return out / done.stdout.split()[-1]


def test_the_wheel_holds_every_file_of_the_packages(wheel):
    with zipfile.ZipFile(wheel) as archive:
        inside = {name: archive.getinfo(name) for name in archive.namelist()}
        wanted = {}
        for name in source_files():
            for folder, target in PACKAGE_DIRS.items():
                if name.startswith(folder):
                    wanted[target + name[len(folder):]] = REPO / name
        missing = sorted(set(wanted) - set(inside))
        assert missing == [], f"not in the wheel (setup.cfg packages/package_data): {missing}"
        for name, path in wanted.items():  # links (machines.conf) are followed
            assert archive.read(name) == path.read_bytes(), name
        rules = archive.read("engage/machines.conf")
    assert rules == (REPO / "etc/engage/machines.conf").read_bytes()


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and redis only: no extras yet."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    assert run([SYSTEM_PYTHON, "-m", "venv", path]).returncode == 0
    pip = [path / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    assert run([*pip, "--no-deps", wheel]).returncode == 0
    if run([*pip, "redis>=4.3"]).returncode != 0:
        pytest.skip("pip cannot get redis (no cache, no registry)")
    return path


def outside_env(venv: Path, **extra: str) -> dict[str, str]:
    """What a shell outside any source tree has: no PYTHONPATH, the venv's bin first."""
    return {"PATH": f"{venv}/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(venv), **extra}


def three_settings(redis_url: str) -> dict[str, str]:
    return {**THREE, "ENGAGE_REDIS_URL": redis_url}


def one_line_naming(done: subprocess.CompletedProcess, extra: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 78, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"pip install 'engage-milter[{extra}]'" in lines[0], lines[0]


def test_the_milter_without_its_extra_says_which_to_install(venv, redis_server, tmp_path):
    env = outside_env(venv, **three_settings(redis_server.url),
                      ENGAGE_CONFIG=str(empty_config(tmp_path)))
    done = run([venv / "bin/engage-milter"], env=env, cwd=tmp_path, timeout=60)
    one_line_naming(done, "milter")
    assert done.stderr.startswith("engage-milter: the Python module Milter is not installed")


def test_the_redirector_without_its_extra_says_which_to_install(venv, tmp_path):
    done = run([venv / "bin/python", "-c", "import engage.web.app"], env=outside_env(venv),
               cwd=tmp_path, timeout=60)
    one_line_naming(done, "web")
    assert "module flask is not installed" in done.stderr


def empty_config(folder: Path) -> Path:
    path = folder / "engage.conf"
    path.write_text("")
    return path


@pytest.fixture
def web_extra(venv, wheel) -> Path:
    done = run([venv / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                f"{wheel}[web]"], timeout=600)
    if done.returncode != 0:
        pytest.skip("pip cannot get Flask and gunicorn (no cache, no registry)")
    return venv


@pytest.fixture
def no_system_settings():
    """Hold the package tests' lock (they install /etc/engage/engage.conf meanwhile)."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def test_the_redirector_runs_from_the_wheel_with_the_three_settings(
        web_extra, redis_server, no_system_settings, tmp_path):
    venv = web_extra
    env = outside_env(venv, **three_settings(redis_server.url))
    if os.path.exists("/etc/engage/engage.conf"):  # installed on this machine: not ours to read
        env["ENGAGE_CONFIG"] = str(empty_config(tmp_path))
    where = run([venv / "bin/python", "-c", "import engage, engage_milter; from engage.verdicts import "
                 "machines; print(engage.__file__); print(machines.shipped_rules())"],
                env=env, cwd=tmp_path).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen([str(venv / "bin/gunicorn"), "--bind", f"127.0.0.1:{port}",
                                 "engage.web.app:create_app()"], env=env, cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
    try:
        status = wait_healthz(f"http://127.0.0.1:{port}/healthz", proc, log)
        code, health = status
        assert code == 200 and (health["status"], health["redis"]) == ("ok", "ok"), health
        assert http_get(f"http://127.0.0.1:{port}/c/nosuchtoken")[0] == 404
        code, _, body = http_get(f"http://127.0.0.1:{port}/api/v1/events/message",
                                 {"Authorization": THREE["ENGAGE_API_KEYS"]})
        assert code == 200 and json.loads(body)["results"] == []
    finally:
        stop_process(proc)
    text = log.read_text(errors="replace")
    print(text[-3000:])
    assert "Traceback" not in text


def wait_healthz(url: str, proc: subprocess.Popen, log: Path) -> tuple[int, dict]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            code, _, body = http_get(url, timeout=2)
            return code, json.loads(body)
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"gunicorn from the wheel did not answer (exit {proc.poll()}):\n"
                f"{log.read_text(errors='replace')[-3000:]}")
