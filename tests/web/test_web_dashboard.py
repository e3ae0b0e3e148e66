"""The dashboard's routes and login (Flask test client, real Redis): off means 404, on means
HTTP Basic for the page, its files and its read-only data routes (dashboard/api/...), a
strict CSP and no inline script; the login never opens the /api/ routes, which take API
keys only. Password hashes interoperate with Werkzeug's; hashing is limited per network
and capped per host."""
from __future__ import annotations

import base64
import logging
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from engage.dashboard import assets
from engage.dashboard import login as login_module
from engage.dashboard.gate import HashGate
from engage.dashboard.login import CHALLENGE, Busy, Login, TooManyAttempts, basic_credentials
from engage.dashboard.passwords import make_hash, parse_hash, verify
from engage.web.ratelimit import RateLimiter

PASSWORD = "correct horse battery"
# pbkdf2 with few rounds keeps the tests fast; the format is the one scrypt hashes use too.
USERS = (("ada", generate_password_hash(PASSWORD, "pbkdf2:sha256:1000")),
         ("bob", generate_password_hash("bobs password", "pbkdf2:sha256:1000")))
EVENTS = "/api/v1/events/message"
METRICS = "/api/v1/metrics/deliverability/campaign?from=2026-01-01T00:00&metrics=count_sent"
KEY = {"Authorization": "test-key-1-abcdefghijkl"}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def on(make_app):
    return make_app(dashboard_enabled=True, dashboard_users=USERS).test_client()


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/", "/dashboard/dashboard.js",
                                  "/dashboard/dashboard.css"])
def test_off_by_default_every_dashboard_url_is_404(client, path):
    response = client.get(path, headers=basic("ada", PASSWORD))
    assert response.status_code == 404
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("path", [EVENTS, METRICS])
def test_off_basic_credentials_do_not_open_the_apis_and_401_asks_no_browser_login(make_app, path):
    client = make_app(dashboard_users=USERS).test_client()  # users listed, dashboard off
    response = client.get(path, headers=basic("ada", PASSWORD))
    assert response.status_code == 401
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("headers", [{}, basic("ada", "wrong"), basic("eve", PASSWORD),
                                     {"Authorization": "test-key-1-abcdefghijkl"},
                                     {"Authorization": "Basic !!notbase64"},
                                     {"Authorization": "Bearer " + PASSWORD}])
def test_page_without_a_valid_login_is_401_with_a_basic_challenge(on, headers):
    response = on.get("/dashboard", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert b"<script" not in response.data


def test_page_with_a_login_has_a_strict_csp_and_no_inline_script_or_style(on):
    response = on.get("/dashboard", headers=basic("ada", PASSWORD))
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"

    class Scan(HTMLParser):
        tags: list[tuple[str, dict[str, str | None]]] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

    scan = Scan()
    scan.feed(response.data.decode())
    scripts = [attrs for tag, attrs in scan.tags if tag == "script"]
    assert scripts == [{"src": "dashboard/dashboard.js", "defer": None}]
    assert not [tag for tag, attrs in scan.tags
                if tag == "style" or "style" in attrs or any(a.startswith("on") for a in attrs)]
    # Nothing from another origin: every URL in the page is relative.
    assert not re.search(rb"(src|href)=\"(https?:)?//", response.data)


@pytest.mark.parametrize("name,kind", [("dashboard.js", "text/javascript; charset=utf-8"),
                                       ("dashboard.css", "text/css; charset=utf-8")])
def test_page_files_need_the_login_too(on, name, kind):
    assert on.get(f"/dashboard/{name}").status_code == 401
    response = on.get(f"/dashboard/{name}", headers=basic("bob", "bobs password"))
    assert (response.status_code, response.content_type) == (200, kind)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_files_and_the_page_under_another_name_are_404(on):
    for path in ("/dashboard/nope.js", "/dashboard/index.html", "/dashboard/..%2fweb.py"):
        assert on.get(path, headers=basic("ada", PASSWORD)).status_code == 404, path


def test_trailing_slash_redirects_to_the_page_relatively(on):
    response = on.get("/dashboard/")
    assert (response.status_code, response.headers["Location"]) == (302, "../dashboard")


def test_the_script_never_writes_markup():
    """Data reaches the DOM as text: no innerHTML/outerHTML/insertAdjacentHTML/document.write."""
    script = assets.load()["dashboard.js"].body.decode()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    assert "textContent" in script


@pytest.mark.parametrize("path", [EVENTS, METRICS])
def test_the_dashboard_login_opens_its_data_routes_and_only_them(on, path):
    assert on.get(f"/dashboard{path}", headers=basic("ada", PASSWORD)).status_code == 200
    refused = on.get(f"/dashboard{path}", headers=basic("ada", "nope"))
    assert refused.status_code == 401 and refused.json["errors"][0]["message"] == "Unauthorized."
    assert refused.headers["WWW-Authenticate"] == CHALLENGE
    # An API key is not a dashboard login, and a dashboard login is not an API key.
    assert on.get(f"/dashboard{path}", headers=KEY).status_code == 401
    assert on.get(path, headers=KEY).status_code == 200
    api = on.get(path, headers=basic("ada", PASSWORD))
    assert api.status_code == 401 and api.json["errors"][0]["code"] == "1100"
    assert "WWW-Authenticate" not in api.headers  # the browser is never asked for it


def test_the_data_routes_answer_what_the_apis_answer(on, mail, rclient):
    message = mail("https://example.com/")
    on.get(f"/c/{message.click(0)}")
    mine = on.get(f"/dashboard{EVENTS}", headers=basic("ada", PASSWORD)).json["results"]
    theirs = on.get(EVENTS, headers=KEY).json["results"]
    assert len(mine) == 1 and mine == theirs
    assert on.get(f"/dashboard{METRICS}", headers=basic("ada", PASSWORD)).json == on.get(
        METRICS, headers=KEY).json


def test_api_routes_never_hash_a_password(on, monkeypatch):
    """A wrong API key, or Basic credentials, on /api/ cost no password hash at all."""
    calls = []
    monkeypatch.setattr(login_module, "verify", lambda *args: calls.append(args) or False)
    for headers in (basic("ada", "guess"), basic("eve", "x"), {"Authorization": "wrong-key"}):
        assert on.get(EVENTS, headers=headers).status_code == 401
    assert calls == []
    assert on.get("/dashboard", headers=basic("ada", "guess")).status_code == 401
    assert len(calls) == 1


def test_the_page_lives_under_the_tracking_url_path(make_app):
    client = make_app(dashboard_enabled=True, dashboard_users=USERS,
                      tracking_url="https://click.example.com/t").test_client()
    assert client.get("/t/dashboard", headers=basic("ada", PASSWORD)).status_code == 200
    assert client.get(f"/t/dashboard{EVENTS}", headers=basic("ada", PASSWORD)).status_code == 200
    assert client.get("/dashboard", headers=basic("ada", PASSWORD)).status_code == 404


# --------------------------------------------------------------------------- Login

class Counter:
    """A limiter that counts calls (what was hashed) and refuses past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.calls = limit, 0

    def allow(self, ip: str) -> bool:
        self.calls += 1
        return self.calls <= self.limit


def test_a_verified_login_is_remembered_and_not_hashed_again():
    attempts = Counter(100)
    login = Login(dict(USERS), attempts)
    header = basic("ada", PASSWORD)["Authorization"]
    assert [login.check(header, "192.0.2.1") for _ in range(5)] == ["ada"] * 5
    assert attempts.calls == 1


def test_over_the_attempt_limit_nothing_is_checked_but_remembered_logins_still_work(rclient):
    limiter = RateLimiter(rclient, "test:dashboard:", 3, 300)
    login = Login(dict(USERS), limiter)
    good = basic("ada", PASSWORD)["Authorization"]
    assert login.check(good, "192.0.2.1") == "ada"
    for _ in range(2):
        assert login.check(basic("ada", "guess")["Authorization"], "192.0.2.1") is None
    bob = basic("bob", "bobs password")["Authorization"]
    with pytest.raises(TooManyAttempts):  # right password, but over the limit
        login.check(bob, "192.0.2.1")
    with pytest.raises(TooManyAttempts):  # another address of the same /24
        login.check(bob, "192.0.2.200")
    assert login.check(bob, "198.51.100.7") == "bob"  # another network
    assert login.check(good, "192.0.2.1") == "ada"  # remembered
    assert rclient.keys("test:dashboard:rl:192.0.2.0:*")


@pytest.mark.parametrize("mode", ["truncated", "none"])
def test_the_limiter_key_and_the_log_lines_follow_privacy(rclient, caplog, mode):
    login = Login(dict(USERS), RateLimiter(rclient, "test:dashboard:", 1, 300),
                  ip_mode=mode, secret=b"secret")
    with caplog.at_level(logging.INFO, logger="engage.dashboard.login"):
        assert login.check(basic("ada", "guess")["Authorization"], "192.0.2.77") is None
        with pytest.raises(TooManyAttempts):
            login.check(basic("ada", "guess")["Authorization"], "192.0.2.77")
    keys = [key.decode() for key in rclient.keys("test:dashboard:*")]
    assert len(keys) == 1 and "192.0.2" not in keys[0]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2 and not any("192.0.2.77" in line for line in lines)
    assert all(("192.0.2.0" in line) is (mode == "truncated") for line in lines), lines


class Full:
    """A gate with no free slot."""

    def enter(self):
        return None


def test_a_full_hashing_gate_refuses_at_once_and_hashes_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(login_module, "verify", lambda *args: calls.append(args) or True)
    login = Login(dict(USERS), Counter(100), gate=Full())
    with pytest.raises(Busy):
        login.check(basic("ada", PASSWORD)["Authorization"], "192.0.2.1")
    assert calls == []


def test_the_gate_is_shared_by_every_thread_and_process_of_the_host(tmp_path):
    first = HashGate("t", 2, str(tmp_path))
    second = HashGate("t", 2, str(tmp_path))  # as another worker process would make it
    a, b = first.enter(), second.enter()
    assert a and b and first.enter() is None and second.enter() is None
    a()
    c = second.enter()
    assert c is not None and first.enter() is None
    b(), c()
    code = ("import sys; sys.path[:0] = sys.argv[1:2]\n"
            "from engage.dashboard.gate import HashGate\n"
            f"print(HashGate('t', 1, {str(tmp_path)!r}).enter() is None)")
    redirector = str(Path(__file__).resolve().parents[2] / "redirector")
    held = HashGate("t", 1, str(tmp_path)).enter()
    other = subprocess.run([sys.executable, "-c", code, redirector], capture_output=True,
                           text=True, check=True)
    assert other.stdout.strip() == "True"  # another process finds the slot taken
    held()


def test_a_login_flood_gets_503s_not_queued_hashes(make_app, monkeypatch, tmp_path):
    """Concurrent wrong logins from many networks: at most one hash runs at a time, the
    others are refused at once (503) rather than queued."""
    running, most = [], []
    lock = threading.Lock()

    def slow_verify(stored, password):
        with lock:
            running.append(1)
            most.append(len(running))
        time.sleep(0.05)
        with lock:
            running.pop()
        return False
    monkeypatch.setattr(login_module, "verify", slow_verify)
    app = make_app(dashboard_enabled=True, dashboard_users=USERS)
    app.extensions["engage"].login.gate = HashGate("flood", 1, str(tmp_path))  # one slot

    def attempt(number: int) -> int:
        environ = {"REMOTE_ADDR": f"10.{number}.0.1"}
        return app.test_client().get("/dashboard", headers=basic("ada", f"guess {number}"),
                                     environ_base=environ).status_code
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(attempt, range(40)))
    assert set(statuses) <= {401, 503} and 503 in statuses and 401 in statuses
    assert max(most) == 1


def test_unknown_users_are_refused_even_with_a_known_users_password():
    login = Login(dict(USERS), Counter(100))
    assert login.check(basic("eve", PASSWORD)["Authorization"], "192.0.2.1") is None


@pytest.mark.parametrize("header,expected", [
    ("Basic " + base64.b64encode(b"ada:pa:ss").decode(), ("ada", "pa:ss")),
    ("basic   " + base64.b64encode("j\u00fcrgen:\u00e4".encode()).decode(), ("j\u00fcrgen", "\u00e4")),
    ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
    ("Basic not base64!", None), ("Digest x", None), ("", None), ("test-key-1-abcdefghijkl", None)])
def test_basic_credentials(header, expected):
    assert basic_credentials(header) == expected


# --------------------------------------------------------------------------- passwords

@pytest.mark.parametrize("method", ["scrypt", "pbkdf2"])
def test_our_hashes_verify_with_werkzeug_and_werkzeugs_with_ours(method):
    ours = make_hash("s3cret-pass", method)
    assert check_password_hash(ours, "s3cret-pass")
    assert not check_password_hash(ours, "s3cret-pasS")
    theirs = generate_password_hash("s3cret-pass", method)
    assert verify(parse_hash(theirs), "s3cret-pass")
    assert not verify(parse_hash(theirs), "other")


@pytest.mark.parametrize("text", ["", "plain", "md5$salt$abcd", "scrypt:3:8:1$salt$ab",
                                  "pbkdf2:nosuch:10$salt$ab", "pbkdf2:sha256:10$sa lt$ab",
                                  "scrypt:32768:8:1$salt$XYZ"])
def test_malformed_hashes_are_refused(text):
    with pytest.raises(ValueError):
        parse_hash(text)


def test_requests_with_a_credential_being_checked_wait_for_that_check(monkeypatch):
    """A page loads its files and data in parallel: one hash, not one 503 per request."""
    calls = []

    def slow_verify(stored, password):
        calls.append(password)
        time.sleep(0.2)
        return True
    monkeypatch.setattr(login_module, "verify", slow_verify)
    login = Login(dict(USERS), Counter(100), gate=HashGate("one", 1, tempfile.mkdtemp()))
    header = basic("ada", PASSWORD)["Authorization"]
    with ThreadPoolExecutor(6) as pool:
        users = list(pool.map(lambda _: login.check(header, "192.0.2.1"), range(6)))
    assert users == ["ada"] * 6 and calls == [PASSWORD]
