"""Authentication of the real redirector (gunicorn) through the sandbox nginx, with
``[privacy] ip_addresses = none`` and the dashboard on: the /api/ routes take API keys
only (a dashboard login there costs no hash and asks no browser); the dashboard's own
routes limit logins per network (here 127.0.0.0/24 against 127.0.1.0/24 and
127.0.2.0/24, all loopback), answering 429 past the limit; neither the limiter's Redis
keys nor the redirector's log hold any address."""
from __future__ import annotations

import base64
import json
import re

from werkzeug.security import generate_password_hash

from engage.dashboard.login import ATTEMPTS
from support.procs import http_get

PASSWORDS = {"ada": "ada's dashboard password", "bob": "bob's dashboard password"}
EVENTS = "/api/v1/events/message"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_through_nginx_apis_take_keys_only_and_logins_are_limited_per_network_anonymously(
        start_redirector, redis_client):
    users = ",".join(f"{name}:{generate_password_hash(password, 'pbkdf2:sha256:1000')}"
                     for name, password in PASSWORDS.items())
    redirector = start_redirector({"ENGAGE_DASHBOARD_ENABLED": "yes",
                                   "ENGAGE_DASHBOARD_USERS": users,
                                   "ENGAGE_IP_ADDRESSES": "none"}, nginx=True)
    base = redirector.public_url
    ada, bob = basic("ada", PASSWORDS["ada"]), basic("bob", PASSWORDS["bob"])

    status, headers, body = http_get(f"{base}{EVENTS}", ada, source="127.0.0.9")
    assert status == 401 and "WWW-Authenticate" not in headers
    assert json.loads(body)["errors"][0]["code"] == "1100"
    assert redis_client.keys("test:dashboard:*") == []  # not even counted: nothing hashed
    key = {"Authorization": redirector.api_key}
    assert http_get(f"{base}{EVENTS}", key, source="127.0.0.9")[0] == 200

    assert http_get(f"{base}/dashboard", ada, source="127.0.1.9")[0] == 200
    assert http_get(f"{base}/dashboard{EVENTS}", ada, source="127.0.1.9")[0] == 200
    assert http_get(f"{base}/dashboard{EVENTS}", key, source="127.0.1.9")[0] == 401

    wrong = [http_get(f"{base}/dashboard", basic("ada", f"guess {n}"), source="127.0.0.9")[0]
             for n in range(ATTEMPTS)]
    assert wrong == [401] * ATTEMPTS
    status, headers, _ = http_get(f"{base}/dashboard", basic("ada", "one more"),
                                  source="127.0.0.9")
    assert status == 429 and int(headers["Retry-After"]) > 0
    # Another address of the same /24 is refused too, even with the right password; another
    # network is not.
    assert http_get(f"{base}/dashboard", bob, source="127.0.0.77")[0] == 429
    assert http_get(f"{base}/dashboard", bob, source="127.0.2.5")[0] == 200

    limiter_keys = [name.decode() for name in redis_client.keys("test:dashboard:*")]
    assert len(limiter_keys) == 3  # three networks, each a keyed digest
    assert all(re.fullmatch(r"test:dashboard:rl:[0-9a-f]{20}:\d+", name) for name in limiter_keys)
    log = redirector.log_text()
    assert "failed login" in log and "too many login attempts" in log
    clients = ("127.0.0.9", "127.0.0.77", "127.0.1.9", "127.0.2.5", "127.0.0.0", "127.0.1.0",
               "127.0.2.0")  # (127.0.0.1 is gunicorn's and nginx's own)
    assert not [line for line in log.splitlines() if any(ip in line for ip in clients)]
