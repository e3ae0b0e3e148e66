"""The pure parts of engage doctor's newer checks, and the redirector's client-address
endpoint they use (Flask test client on a real Redis)."""
from __future__ import annotations

import pytest

from engage import clientaddr
from engage.admin import doctor_postfix, doctor_proxy, doctor_redis, postfixconf
from engage.settings import Settings
from support.doctorstack import alternative

SETTINGS = Settings(tracking_url="https://click.example.com", source="/etc/engage/engage.conf")


@pytest.mark.parametrize("action, name, config_error, stops, words", [
    ("tempfail", "smtpd_milters", False, True, "451 4.7.1 Service unavailable"),
    ("tempfail", "smtpd_milters", True, True, "451 4.3.5 Server configuration problem"),
    ("reject", "smtpd_milters", False, True, "550 5.5.0 Service unavailable and is bounced"),
    ("reject", "smtpd_milters", True, True, "451 4.3.5"),
    ("tempfial", "smtpd_milters", False, True, "451 4.3.5"),
    ("accept", "smtpd_milters", True, False, "passes every message it receives by SMTP on"),
    ("quarantine", "smtpd_milters", False, True, "on hold"),
    ("tempfail", "non_smtpd_milters", False, True, "sendmail(1) stays in the maildrop queue"),
])
def test_what_postfix_does_when_a_milter_fails(action, name, config_error, stops, words):
    """As measured on the sandbox Postfix 3.7 (tests/admin/test_doctor_mail.py checks the replies)."""
    assert doctor_postfix.effect(action, name, config_error)[0] is stops
    assert words in doctor_postfix.effect(action, name, config_error)[1]


def test_per_milter_default_actions_are_read_from_groups():
    value = ("inet:127.0.0.1:8890, { unix:/run/opendkim/opendkim.sock, connect_timeout=5s, "
             "default_action=accept } {inet:[::1]:11332,default_action = tempfial}")
    assert postfixconf.milter_actions(value) == {"unix:/run/opendkim/opendkim.sock": "accept",
                                                 "inet:[::1]:11332": "tempfial"}
    assert postfixconf.split_milters(value) == ("inet:127.0.0.1:8890",
                                                "unix:/run/opendkim/opendkim.sock",
                                                "inet:[::1]:11332")


def test_where_a_chrooted_daemon_looks_for_a_unix_socket():
    milters = postfixconf.PostfixMilters((), (), "tempfail", "/var/spool/postfix", True)
    assert postfixconf.seen_path("/run/x.sock", milters, True) == "/var/spool/postfix/run/x.sock"
    assert postfixconf.seen_path("/run/x.sock", milters, False) == "/run/x.sock"
    assert postfixconf.seen_path("engage/m.sock", milters, False) == "/var/spool/postfix/engage/m.sock"
    assert postfixconf.chrooted("cleanup unix n - y - 0 cleanup\n", "cleanup")
    assert not postfixconf.chrooted("cleanup unix n - n - 0 cleanup\n", "cleanup")


@pytest.mark.parametrize("save, seconds", [("3600 1 300 100 60 10000", 3600), ("900 1", 900),
                                           ("", 0)])
def test_the_longest_time_between_snapshots(save, seconds):
    assert doctor_redis.longest_save_interval(save) == seconds


def test_redis_cli_commands_name_the_server_but_never_the_password():
    assert doctor_redis.redis_cli("127.0.0.1", 6379) == "redis-cli"
    assert doctor_redis.redis_cli("10.0.0.5", 6380, password=True) == (
        "redis-cli -h 10.0.0.5 -p 6380 --askpass")


def answer(client: str, peer: str, header: str, hops: int) -> dict:
    return {"client_address": client, "peer_address": peer, "x_forwarded_for": header,
            "proxy_hops": hops}


@pytest.mark.parametrize("results, level, words", [
    (answer("203.0.113.9", "127.0.0.1", "192.0.2.1, 203.0.113.9", 1), "ok", "own addresses"),
    (answer("192.0.2.1", "127.0.0.1", "192.0.2.1", 1), "error", "passes the client's"),
    (answer("192.0.2.1", "127.0.0.1", "192.0.2.1, 203.0.113.9", 2), "error",
     "proxy_hops = 2, but only 1 proxy adds"),
    (answer("192.0.2.1", "203.0.113.9", "192.0.2.1", 1), "error", "nothing stands between"),
    (answer("127.0.0.1", "127.0.0.1", "192.0.2.1, 203.0.113.9", 0), "error",
     "proxy_hops = 0, but 1 proxy adds"),
    (answer("127.0.0.1", "127.0.0.1", "", 0), "error", "sends no X-Forwarded-For"),
    (answer("10.0.0.1", "10.0.0.2", "192.0.2.1, 10.0.0.1, 10.0.0.2", 1), "error",
     "proxy_hops = 1, but 2 proxies add"),
    (answer("93.184.216.34", "127.0.0.1", "192.0.2.1, 93.184.216.34", 1), "ok", "through a NAT"),
    (answer("93.184.216.34", "93.184.216.34", "", 0), "warn", "right if a NAT"),
])
def test_the_proxy_chain_verdicts(results, level, words):
    finding = doctor_proxy.judge(results, "203.0.113.9", SETTINGS)
    assert finding.level == level and words in finding.text, finding.text


def test_a_fix_with_alternatives_is_split_at_its_headers():
    fix = ("either, a:", "one", "in /f: [milter] socket = x", "or, b:", "two")
    assert alternative(fix, 0) == ["one", "in /f: [milter] socket = x"]
    assert alternative(fix, 1) == ["two"]
    assert alternative(("just", "this"), 0) == ["just", "this"]


@pytest.fixture
def app_client(redis_client):
    from engage.web.app import create_app

    settings = Settings(redis_url="redis://unused", tracking_url="http://t.example",
                        api_keys=("k1",), proxy_hops=1, key_prefix="test:")
    return create_app(settings, redis_client).test_client()


def test_client_address_endpoint_needs_the_api_key(app_client):
    answer = app_client.get(clientaddr.ROUTE, headers={"X-Forwarded-For": "192.0.2.1"},
                            environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert answer.status_code == 401 and b"192.0.2.1" not in answer.data


def test_client_address_endpoint_says_what_the_redirector_derived(app_client):
    answer = app_client.get(clientaddr.ROUTE, headers={
        "Authorization": "k1", "X-Forwarded-For": "192.0.2.1, 203.0.113.9" + " " * 2000},
        environ_base={"REMOTE_ADDR": "127.0.0.1"})
    results = answer.get_json()["results"]
    assert results["client_address"] == "203.0.113.9"  # proxy_hops = 1: the last entry
    assert results["peer_address"] == "127.0.0.1" and results["proxy_hops"] == 1
    assert len(results["x_forwarded_for"]) == clientaddr.MAX_HEADER
    assert answer.headers["Content-Type"] == "application/json"
