"""The forget API cannot be triggered cross-site (Flask test client, real Redis): it takes
the API key header only, never a dashboard login the browser holds, and only a body
declared application/json; everything else leaves the recipient where it was. (A real
Chromium on an attacker's page: tests/e2e/test_e2e_forget_csrf.py.)"""
from __future__ import annotations

import base64
import json

import pytest
from werkzeug.security import generate_password_hash

from support.redisdump import traces

FORGET = "/api/v1/recipients/forget"
KEY = "test-key-1-abcdefghijkl"
USERS = (("ada", generate_password_hash("ada's password", "pbkdf2:sha256:1000")),)
BODY = json.dumps({"recipient": "jane@example.org"})
FORM_BODY = '{"recipient":"jane@example.org","x":"="}'  # what a text/plain form sends


@pytest.fixture
def jane(mail, rclient):
    mail("https://example.com/", rcpt=("jane@example.org",))
    assert traces(rclient, "jane@example.org")


@pytest.fixture
def on(make_app):
    return make_app(dashboard_enabled=True, dashboard_users=USERS).test_client()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_a_dashboard_login_never_erases(on, jane, rclient, content_type):
    response = on.post(FORGET, data=FORM_BODY, content_type=content_type,
                       headers={"Authorization": basic("ada", "ada's password")})
    assert response.status_code == 401 and "WWW-Authenticate" not in response.headers
    assert traces(rclient, "jane@example.org")


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    None, "application/jsonp", "text/json"])
def test_only_a_json_body_is_taken(client, jane, rclient, content_type):
    headers = {"Authorization": KEY}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(FORGET, data=BODY, headers=headers)
    assert response.status_code == 415
    assert response.json["errors"][0]["code"] == "1300"
    assert traces(rclient, "jane@example.org")


def test_the_key_and_a_json_body_erase(client, jane, rclient):
    response = client.post(FORGET, data=BODY, headers={
        "Authorization": KEY, "Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200 and response.json["results"]["changed"] is True
    assert traces(rclient, "jane@example.org") == []


def test_a_body_over_16_kib_is_refused_unread(client, jane, rclient):
    padded = json.dumps({"recipient": "jane@example.org", "pad": "x" * 17000})
    response = client.post(FORGET, data=padded, content_type="application/json",
                           headers={"Authorization": KEY})
    assert response.status_code == 413 and response.json["errors"][0]["code"] == "1300"
    assert traces(rclient, "jane@example.org")
