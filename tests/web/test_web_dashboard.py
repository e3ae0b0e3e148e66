"""The dashboard's routes and login (Flask test client, real Redis): off means 404, on means
HTTP Basic for the page and its files, a strict CSP and no inline script; the same login
opens the JSON APIs the page reads. Password hashes interoperate with Werkzeug's."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from engage.dashboard import assets
from engage.dashboard.login import CHALLENGE, Login, basic_credentials
from engage.dashboard.passwords import make_hash, parse_hash, verify
from engage.web.ratelimit import RateLimiter

PASSWORD = "correct horse battery"
# pbkdf2 with few rounds keeps the tests fast; the format is the one scrypt hashes use too.
USERS = (("ada", generate_password_hash(PASSWORD, "pbkdf2:sha256:1000")),
         ("bob", generate_password_hash("bobs password", "pbkdf2:sha256:1000")))
EVENTS = "/api/v1/events/message"
METRICS = "/api/v1/metrics/deliverability/campaign?from=2026-01-01T00:00&metrics=count_sent"


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
                                     {"Authorization": "test-key-1"},
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
def test_dashboard_login_opens_the_json_apis_and_api_401s_ask_for_it(on, path):
    assert on.get(path, headers=basic("ada", PASSWORD)).status_code == 200
    assert on.get(path, headers={"Authorization": "test-key-1"}).status_code == 200
    refused = on.get(path, headers=basic("ada", "nope"))
    assert refused.status_code == 401 and refused.json["errors"][0]["message"] == "Unauthorized."
    assert refused.headers["WWW-Authenticate"] == CHALLENGE


def test_the_page_lives_under_the_tracking_url_path(make_app):
    client = make_app(dashboard_enabled=True, dashboard_users=USERS,
                      tracking_url="https://click.example.com/t").test_client()
    assert client.get("/t/dashboard", headers=basic("ada", PASSWORD)).status_code == 200
    assert client.get("/t/api/v1/events/message", headers=basic("ada", PASSWORD)).status_code == 200
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
    assert login.check(bob, "192.0.2.1") is None  # right password, but over the limit
    assert login.check(bob, "192.0.2.2") == "bob"  # another address
    assert login.check(good, "192.0.2.1") == "ada"  # remembered
    assert rclient.keys("test:dashboard:rl:*")


def test_unknown_users_are_refused_even_with_a_known_users_password():
    login = Login(dict(USERS), Counter(100))
    assert login.check(basic("eve", PASSWORD)["Authorization"], "192.0.2.1") is None


@pytest.mark.parametrize("header,expected", [
    ("Basic " + base64.b64encode(b"ada:pa:ss").decode(), ("ada", "pa:ss")),
    ("basic   " + base64.b64encode("j\u00fcrgen:\u00e4".encode()).decode(), ("j\u00fcrgen", "\u00e4")),
    ("Basic " + base64.b64encode(b"nocolon").decode(), None),
    ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
    ("Basic not base64!", None), ("Digest x", None), ("", None), ("test-key-1", None)])
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
