"""engage doctor, the data side: Redis and the settings file. Each breakage of the issue-17
list is made on a real redis-server (started from a configuration file, as Debian runs it,
so that CONFIG REWRITE works) or a real file; the doctor names cause, effect and fix with
the right exit status, and following the fix as written clears the finding.

Breakages here: 2 Redis stopped, 3 RDB snapshots only, 4 no persistence, 5 an evicting
maxmemory-policy, 18 engage.conf unreadable by the service user, 19 a Cluster master
without a replica.
"""
from __future__ import annotations

import grp
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from engage.admin import doctor
from support.doctorstack import ConfiguredRedis, Diagnosis, case_dir, diagnose, flat, follow
from support.procs import REPO, RedisClusterServers, RedisServer, free_port

ONLY_REDIS = frozenset(doctor.TOPICS) - {"config", "redis"}
RDB_DEFAULT = "save 3600 1 300 100 60 10000\nappendonly no\n"  # Debian 12's redis.conf


@pytest.fixture
def workdir(engage_tmp, request) -> Path:
    return case_dir(engage_tmp, "doctor-store", request.node.name)


@pytest.fixture
def debian_redis(workdir):
    server = ConfiguredRedis(workdir / "redis", RDB_DEFAULT).start()
    yield server
    server.stop()


def settings_for(workdir: Path, redis_url: str, prefix: str = "test:") -> str:
    conf = workdir / "engage.conf"
    conf.write_text(f"[redis]\nurl = {redis_url}\nkey_prefix = {prefix}\n"
                    "[tracking]\nurl = https://click.example.com\n")
    return str(conf)


def redis_only(conf: str) -> Diagnosis:
    return diagnose(doctor.Options(config=conf, skip=ONLY_REDIS, timeout=3))


def cli(server: ConfiguredRedis) -> str:
    return f"redis-cli -p {server.port}"


def restarts(server: ConfiguredRedis) -> dict:
    def restart() -> None:
        server.stop()
        server.start()
    return {"systemctl start redis-server": server.start,
            "systemctl status redis-server": lambda: None,
            "systemctl restart redis-server": restart}


def test_3_rdb_snapshots_only_is_a_warning_that_says_what_a_crash_loses(workdir, debian_redis):
    found = redis_only(settings_for(workdir, debian_redis.url))
    warning = found.only("warn", "redis")
    assert flat(warning.text) == (
        "Redis saves RDB snapshots only (save 3600 1 300 100 60 10000), no AOF: a crash, a kill "
        "or a power cut loses everything written since the last snapshot, up to 60 minutes of "
        "it: the links of mail sent in that time (their clicks then get 404) and the opens and "
        "clicks recorded")
    assert warning.fix == (f"{cli(debian_redis)} CONFIG SET appendonly yes",
                           f"{cli(debian_redis)} CONFIG REWRITE")
    assert found.code == 0 and doctor.exit_status(found.findings, strict=True) == 1
    follow(warning.fix, restarts(debian_redis))
    assert "appendonly yes" in debian_redis.conf.read_text()  # kept across a restart
    restarts(debian_redis)["systemctl restart redis-server"]()
    found = redis_only(settings_for(workdir, debian_redis.url))
    assert found.problems() == [] and "persistence on (AOF)" in found.output


def test_4_no_persistence_at_all_is_an_error(workdir):
    server = ConfiguredRedis(workdir / "redis", 'save ""\nappendonly no\n').start()
    try:
        found = redis_only(settings_for(workdir, server.url))
        error = found.only("error", "redis")
        assert flat(error.text).startswith("Redis keeps everything in memory only (no AOF, no RDB "
                                           "snapshots): a restart loses every tracking link")
        assert error.fix[0] == f"{cli(server)} CONFIG SET appendonly yes"
        assert found.code == 1
        follow(error.fix, restarts(server))
        assert redis_only(settings_for(workdir, server.url)).code == 0
    finally:
        server.stop()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_5_an_evicting_maxmemory_policy_is_an_error(workdir, policy):
    server = ConfiguredRedis(workdir / "redis", f"appendonly yes\nmaxmemory-policy {policy}\n"
                             "maxmemory 64mb\n").start()
    try:
        found = redis_only(settings_for(workdir, server.url))
        error = found.only("error", "redis")
        assert error.text.startswith(f"maxmemory-policy is {policy}: once it holds maxmemory "
                                     "(67108864 bytes), Redis deletes ")
        assert "Use noeviction" in error.text
        assert error.fix == (f"{cli(server)} CONFIG SET maxmemory-policy noeviction",
                             f"{cli(server)} CONFIG REWRITE")
        assert found.code == 1
        follow(error.fix, restarts(server))
        assert redis_only(settings_for(workdir, server.url)).problems() == []
    finally:
        server.stop()


def test_2_redis_stopped_is_an_error(workdir, debian_redis):
    conf = settings_for(workdir, debian_redis.url)
    debian_redis.stop()
    found = redis_only(conf)
    error = found.only("error", "redis")
    assert error.text.startswith(f"cannot reach Redis at {debian_redis.url}: ")
    assert "Connection refused" in error.text and "the milter tempfails mail" in error.text
    assert error.fix[0] == "systemctl start redis-server"
    assert found.code == 1
    follow(error.fix, restarts(debian_redis))
    assert [f.level for f in redis_only(conf).findings if f.topic == "redis"][0] == "ok"


def test_2_redis_stopped_stops_mail_through_the_milter(engage_tmp, start_milter,
                                                      postfix_sandbox, workdir):
    """The effect the finding states, on the real path: the probe gets engage's 421."""
    server = RedisServer(workdir / "private-redis").start()
    milter = start_milter({"ENGAGE_REDIS_URL": server.url})
    postfix = postfix_sandbox(milter, private=True)
    conf = workdir / "e.conf"
    conf.write_text(f"[milter]\nsocket = {milter.socket}\n[redis]\nurl = {server.url}\n"
                    "key_prefix = test:\n[tracking]\nurl = https://click.example.com\n")
    server.stop()
    found = diagnose(doctor.Options(config=str(conf), postfix_config=str(postfix.dir / "etc"),
                                    postconf="/usr/sbin/postconf", timeout=3, probe="a@example.org",
                                    probe_from="b@example.com",
                                    smtp=f"127.0.0.1:{postfix.smtp_port}",
                                    skip=frozenset({"tracking", "nginx", "proxy"})))
    assert found.only("error", "redis").fix[0] == "systemctl start redis-server"
    probe = found.only("error", "probe")
    assert "421 4.3.3 engage link store unavailable" in probe.text
    assert "engage cannot reach Redis" in probe.text and found.code == 1


def test_18_settings_the_service_user_cannot_read(workdir):
    conf = workdir / "engage.conf"
    conf.write_text("[tracking]\nurl = https://click.example.com\n")
    conf.chmod(0o600)
    user = "nobody"  # stands in for engage: any user but root
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    as_user = ["setpriv", "--reuid", user, "--regid", group, "--clear-groups"]
    start = subprocess.run([*as_user, sys.executable, "-c",
                            "from engage import settings; settings.load_or_exit('engage', "
                            f"{str(conf)!r})"], capture_output=True, text=True,
                           env={"PYTHONPATH": str(REPO / "redirector")})
    assert start.returncode == 78, start.stderr  # what the services do: the effect stated
    found = diagnose(doctor.Options(config=str(conf), service_user=user,
                                    skip=frozenset(doctor.TOPICS[1:])))
    error = found.only("error", "config")
    assert flat(error.text).startswith(
        f"user {user} may not read {conf} (-rw------- root:root): the engage services run as "
        f"user {user}, so they cannot read their settings and stop at start with exit code 78")
    assert error.fix == (f"chgrp {group} {conf}", f"chmod 640 {conf}",
                         "systemctl restart engage-milter engage-redirector")
    assert found.code == 1
    follow(error.fix, {"systemctl restart engage-milter engage-redirector": lambda: None})
    assert diagnose(doctor.Options(config=str(conf), service_user=user,
                                   skip=frozenset(doctor.TOPICS[1:]))).code == 0
    start = subprocess.run(start.args, capture_output=True, text=True,
                           env={"PYTHONPATH": str(REPO / "redirector")})
    assert start.returncode == 0, start.stderr


def test_19_a_cluster_master_without_a_replica_is_a_warning(workdir):
    cluster = RedisClusterServers(workdir / "cluster", masters=3).start()
    spare = RedisServer(workdir / "spare", extra_args=[
        "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
        "--cluster-config-file", str(workdir / "spare" / "nodes.conf")])
    try:
        for node in cluster.nodes:
            redis.Redis(port=node.port).config_set("appendonly", "yes")
        conf = settings_for(workdir, cluster.url, prefix="{engage}:")
        found = redis_only(conf)
        warning = found.only("warn", "redis")
        master = re.search(r"the Cluster master 127\.0\.0\.1:(\d+),", warning.text)
        assert master, warning.text
        assert re.search(r"which holds slot \d+ \(every engage key\), has no replica: if it fails "
                         "nothing takes over", flat(warning.text))
        assert found.code == 0
        spare.start()
        steps = [step.replace("NEW_HOST:NEW_PORT", f"127.0.0.1:{spare.port}")
                 for step in warning.fix]
        follow(steps, {})
        for _ in range(100):  # the replica connects within a second or two
            if redis_only(conf).problems() == []:
                break
            time.sleep(0.1)
        assert redis_only(conf).problems() == []
    finally:
        spare.stop()
        cluster.stop()
