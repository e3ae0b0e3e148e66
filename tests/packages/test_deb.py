"""The Debian packages, used the way a mail operator uses them.

Built exactly as `make deb` builds them (packaging/build-deb, into a temporary directory),
checked with lintian; then, as root, installed with `apt-get install ./*.deb` (Python
dependencies from Debian), the installed files, units and users checked, Debian's
autopkgtest runner run on this machine (null virtualisation) with packaging/debian/tests
(the smoke test: the units' commands as the engage user, a private Postfix reaching the
packaged milter on its unix socket, engage doctor, one message tracked, its click
followed and read back from the events API), and finally `apt-get purge`, after which
nothing of ours is left.

Needs root and the packaging tools (scripts/install-deps): skipped otherwise, a failure
when CI is set. It purges engage packages that were installed before it ran.
"""
from __future__ import annotations

import configparser
import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.procs import free_port, http_get, listening

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("python3-engage", "engage-common", "engage-milter", "engage-redirector")
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive"}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
LOCK = "/run/lock/engage-package-tests.lock"
UNITS = ("engage-milter", "engage-redirector", "engage-webhooks")
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
             "PrivateDevices=yes", "CapabilityBoundingSet=", "SystemCallFilter=@system-service",
             "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "MemoryDenyWriteExecute=yes")


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


def run(argv: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**SYSTEM_ENV, **kwargs.pop("env", {})}, **kwargs)
    print(f"$ {' '.join(argv)}  ({time.monotonic() - started:.1f} s, exit {done.returncode})")
    return done


def versions() -> tuple[str, str, str]:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    changelog = (REPO / "packaging/debian/changelog").read_text().split("\n", 1)[0]
    spec = (REPO / "packaging/rpm/engage-milter.spec").read_text()
    deb = re.match(r"engage-milter \(([^)-]+)-\d+\)", changelog)
    rpm = re.search(r"(?m)^Version:\s*(\S+)", spec)
    assert deb and rpm
    return setup["metadata"]["version"], deb.group(1), rpm.group(1)


def test_setup_cfg_debian_changelog_and_rpm_spec_agree_on_the_version():
    python, debian, rpm = versions()
    assert python == debian == rpm, "add a packaging/debian/changelog entry and bump the spec"


@pytest.mark.parametrize("unit", UNITS)
def test_units_run_in_the_foreground_as_engage_hardened(unit):
    text = (REPO / "packaging/systemd" / f"{unit}.service").read_text()
    lines = set(text.splitlines())
    assert {"Type=simple", "User=engage", "Group=engage", "RestartPreventExitStatus=78",
            "WantedBy=multi-user.target", *HARDENING} <= lines
    assert not re.search(r"(?m)^(PIDFile|StandardOutput|StandardError)=|--daemon", text)
    if unit == "engage-milter":
        assert {"RuntimeDirectory=engage", "RuntimeDirectoryMode=0750", "UMask=0007"} <= lines


def test_sysusers_and_tmpfiles_agree_with_the_units():
    sysusers = (REPO / "packaging/systemd/engage.sysusers").read_text()
    tmpfiles = (REPO / "packaging/systemd/engage.tmpfiles").read_text()
    assert re.search(r"(?m)^u engage - ", sysusers)
    assert re.search(r"(?m)^d /run/engage 0750 engage engage -$", tmpfiles)


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> dict[str, Path]:
    need(shutil.which("dpkg-buildpackage") is not None and shutil.which("lintian") is not None,
         "dpkg-buildpackage/lintian missing: run scripts/install-deps")
    out = tmp_path_factory.mktemp("deb")
    done = run(["bash", str(REPO / "packaging/build-deb"), str(out)], timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    built = {path.name.split("_")[0]: path for path in out.glob("*.deb")}
    assert sorted(built) == sorted(PACKAGES), built
    built["changes"] = next(out.glob("*.changes"))
    return built


def fields(deb: Path, *names: str) -> str:
    return run(["dpkg-deb", "--field", str(deb), *names]).stdout


def contents(deb: Path) -> list[str]:
    listing = run(["dpkg-deb", "--contents", str(deb)]).stdout.splitlines()
    return [line.split()[-1].lstrip(".") for line in listing if not line.endswith("/")]


def test_lintian_reports_no_errors_or_warnings(debs):
    done = run(["lintian", "--display-level", ">=pedantic", "--show-overrides",
                str(debs["changes"])], timeout=600)
    print(done.stdout, done.stderr)
    tags = [line for line in done.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert done.returncode == 0 and tags == [], done.stdout


def test_a_milter_host_gets_no_flask_and_a_web_host_no_libmilter(debs):
    milter_host = " ".join(fields(debs[p], "Depends", "Recommends")
                           for p in ("python3-engage", "engage-common", "engage-milter"))
    web_host = " ".join(fields(debs[p], "Depends", "Recommends")
                        for p in ("python3-engage", "engage-common", "engage-redirector"))
    assert "python3-milter" in milter_host and "python3-redis (>= 4.3)" in milter_host
    assert not re.search(r"flask|gunicorn", milter_host), milter_host
    assert "python3-flask" in web_host and "gunicorn" in web_host
    assert not re.search(r"milter", web_host.replace("engage-common", "")), web_host
    assert "hiredis" not in milter_host + web_host  # an optional extra, never a requirement


def links(deb: Path) -> dict[str, str]:
    listing = run(["dpkg-deb", "--contents", str(deb)]).stdout.splitlines()
    found = (line.split()[-3:] for line in listing if line.startswith("l"))
    return {path.lstrip("."): target for path, arrow, target in found if arrow == "->"}


def test_files_units_conffiles_and_man_pages_are_where_an_operator_looks(debs):
    lib, common, milter, web = (contents(debs[p]) for p in PACKAGES)
    assert {"/etc/engage/engage.conf", "/usr/bin/engage", "/usr/lib/sysusers.d/engage.conf",
            "/usr/lib/tmpfiles.d/engage.conf", "/usr/share/man/man8/engage.8.gz",
            "/usr/share/man/man5/engage.conf.5.gz",
            "/usr/libexec/engage/stop-services"} <= set(common)
    assert {"/usr/bin/engage-milter", "/lib/systemd/system/engage-milter.service",
            "/usr/share/man/man8/engage-milter.8.gz",
            "/usr/share/doc/engage-milter/examples/main.cf.engage",
            "/usr/share/doc/engage-milter/examples/engage-milter.mc"} <= set(milter)
    assert {"/etc/engage/gunicorn.conf.py", "/usr/bin/engage-webhooks",
            "/lib/systemd/system/engage-redirector.service",
            "/lib/systemd/system/engage-webhooks.service",
            "/usr/share/man/man8/engage-webhooks.8.gz",
            "/usr/share/man/man8/engage-redirector.8.gz",
            "/usr/share/doc/engage-redirector/examples/engage-redirector.conf"} <= set(web)
    # The verdict rules: package data of engage, kept in /usr/share/engage, linked back.
    assert "/usr/share/engage/machines.conf" in lib
    assert links(debs["python3-engage"])["/usr/lib/python3/dist-packages/engage/machines.conf"] \
        == "../../../../share/engage/machines.conf"
    assert not any("dist-packages/engage/" in f for f in milter + web + common)
    conffiles = {p: run(["dpkg-deb", "--info", str(debs[p]), "conffiles"]).stdout.split()
                 for p in ("engage-common", "engage-redirector")}
    assert conffiles == {"engage-common": ["/etc/engage/engage.conf"],
                         "engage-redirector": ["/etc/engage/gunicorn.conf.py"]}


def test_the_packaged_engage_conf_5_is_generated_from_the_shipped_settings(debs):
    tree = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs["engage-common"])],
                          capture_output=True, check=True).stdout
    page = subprocess.run(["tar", "-xOf", "-", "./usr/share/man/man5/engage.conf.5.gz"],
                          input=tree, capture_output=True, check=True).stdout
    packaged = subprocess.run(["gunzip"], input=page, capture_output=True, check=True).stdout
    fresh = subprocess.run(["/usr/bin/python3", str(REPO / "packaging/man/genconfman.py")],
                           capture_output=True, check=True).stdout
    assert packaged.split(b"\n", 1)[1] == fresh.split(b"\n", 1)[1]  # all but .TH's date


def test_the_dashboard_page_ships_in_python3_engage(debs):
    lib = contents(debs["python3-engage"])
    for name in ("index.html", "dashboard.js", "dashboard.css"):
        assert any(f.endswith(f"-packages/engage/dashboard/static/{name}") for f in lib), name


@pytest.fixture
def exclusive():
    """One package test at a time on this machine (they install and purge system packages)."""
    with open(LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def installed() -> list[str]:
    done = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *PACKAGES])
    return [line.split()[0] for line in done.stdout.splitlines() if len(line.split()) > 1]


def apt_install(debs: dict[str, Path]) -> None:
    argv = APT + ["install", "--no-install-recommends", *(str(debs[p]) for p in PACKAGES)]
    done = run(argv)
    if done.returncode != 0:  # a fresh machine's package lists may be stale
        run(APT + ["update"])
        done = run(argv)
    assert done.returncode == 0, done.stdout + done.stderr


def purge() -> subprocess.CompletedProcess:
    return run(APT + ["purge", *PACKAGES])


def check_installed() -> None:
    account = pwd.getpwnam("engage")
    assert account.pw_shell.endswith("nologin")
    conf = os.stat("/etc/engage/engage.conf")
    assert (conf.st_mode & 0o777, conf.st_uid, conf.st_gid) == (0o640, 0, account.pw_gid)
    if shutil.which("postfix") or os.path.exists("/usr/sbin/postfix"):
        assert "postfix" in grp.getgrnam("engage").gr_mem, "postinst adds postfix to group engage"
    if shutil.which("systemd-analyze"):  # syntax, users, executables; works without systemd running
        units = [f"/lib/systemd/system/{u}.service" for u in UNITS]
        done = run(["systemd-analyze", "verify", "--man=no", *units])
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    if shutil.which("man"):
        for page in ("engage", "engage-milter", "engage-redirector", "engage-webhooks",
                     "engage.conf"):
            assert run(["man", "-w", page]).returncode == 0, page
    for command in ("engage-milter --check-config", "engage doctor --help",
                    "engage-webhooks --help", "gunicorn --version"):
        argv = ["/usr/bin/" + command.split()[0], *command.split()[1:]]
        assert run(argv).returncode == 0, command


def check_purged() -> None:
    assert installed() == []
    leftovers = [p for p in ("/etc/engage", "/run/engage", "/usr/bin/engage", "/usr/libexec/engage",
                             "/usr/share/engage",
                             "/usr/bin/engage-milter", "/usr/bin/engage-webhooks",
                             "/lib/systemd/system/engage-milter.service",
                             "/usr/lib/python3/dist-packages/engage",
                             "/usr/lib/python3/dist-packages/engage_milter",
                             "/etc/systemd/system/multi-user.target.wants/engage-milter.service")
                 if os.path.lexists(p)]
    assert leftovers == []
    assert "postfix" not in grp.getgrnam("engage").gr_mem


def autopkgtest(debs: dict[str, Path], workdir: Path) -> None:
    """Debian's autopkgtest runner on this machine (null virtualisation) with our .debs:
    debian/tests/control's Depends are installed, then debian/tests/smoke runs."""
    tree = workdir / "source"
    tree.mkdir()
    files = run(["bash", str(REPO / "packaging/list-source")]).stdout
    subprocess.run(["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", str(workdir / "src.tar")],
                   input=files, text=True, check=True)
    subprocess.run(["tar", "-C", str(tree), "-xf", str(workdir / "src.tar")], check=True)
    shutil.copytree(REPO / "packaging/debian", tree / "debian")
    done = run(["autopkgtest", "--output-dir", str(workdir / "out"), "-B",
                *(str(debs[p]) for p in PACKAGES), f"{tree}/", "--", "null"], timeout=600)
    print(done.stdout[-6000:], done.stderr[-6000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert re.search(r"(?m)^smoke\s+PASS", done.stdout + done.stderr)
    assert "PASS: the installed packages tracked a message end to end" in done.stdout


def start_services(redis_url: str, workdir: Path) -> dict[str, subprocess.Popen]:
    """The three units' ExecStart= as the engage user, as an operator without systemd runs
    them (a container), on free ports; ready when they answer."""
    milter_port, web_port = free_port(), free_port()
    env = {**SYSTEM_ENV, "HOME": "/", "ENGAGE_REDIS_URL": redis_url, "ENGAGE_KEY_PREFIX": "pkg:",
           "ENGAGE_MILTER_SOCKET": f"inet:{milter_port}@127.0.0.1",
           "ENGAGE_WEB_BIND": f"127.0.0.1:{web_port}"}
    procs = {}
    for unit in UNITS:
        text = Path(f"/lib/systemd/system/{unit}.service").read_text()
        argv = shlex.split(re.search(r"(?m)^ExecStart=(.*)$", text).group(1))
        with open(workdir / f"{unit}.log", "wb") as log:
            procs[unit] = subprocess.Popen(argv, user="engage", group="engage", env=env, cwd="/",
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (listening(milter_port) and healthz(web_port)):
        logs = {u: (workdir / f"{u}.log").read_text(errors="replace")[-2000:] for u in UNITS}
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values()), logs
        time.sleep(0.2)
    time.sleep(1)
    assert procs["engage-webhooks"].poll() is None, (workdir / "engage-webhooks.log").read_text()
    return procs


def healthz(port: int) -> bool:
    try:
        return http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def check_remove_stops_the_services(redis_url: str, workdir: Path) -> None:
    """Without systemd, `apt-get remove` stops what runs from the packages' files."""
    procs = start_services(redis_url, workdir)
    try:
        done = run(APT + ["remove", "engage-milter", "engage-redirector"])
        print(done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        for unit, proc in procs.items():
            assert f"{unit}: systemd is not running: SIGTERM to pid {proc.pid} " in done.stdout
            proc.wait(5)  # reaped here: stop-services saw it end (a zombie of ours)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_install_track_a_message_and_purge(debs, exclusive, redis_server, tmp_path):
    need(os.geteuid() == 0, "needs root: installs the packages with apt-get")
    need(shutil.which("autopkgtest") is not None, "autopkgtest missing: run scripts/install-deps")
    try:
        apt_install(debs)
        check_installed()
        autopkgtest(debs, tmp_path)
        if not os.path.isdir("/run/systemd/system"):  # with systemd, the units are its own
            check_remove_stops_the_services(redis_server.url, tmp_path)
    finally:
        done = purge()
    assert done.returncode == 0, done.stdout + done.stderr
    check_purged()
