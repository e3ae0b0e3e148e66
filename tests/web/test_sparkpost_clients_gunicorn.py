"""SparkPost's own client and search parameters against the real redirector: gunicorn with
etc/engage/gunicorn.conf.py serving HTTPS (python-sparkpost only speaks https), a
self-signed certificate its ``requests`` trusts through REQUESTS_CA_BUNDLE, as a user
would point it at their engage host."""
from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from sparkpost import SparkPost
from sparkpost.exceptions import SparkPostAPIException

from engage.store.links import Link, LinkStore, MessageRecord, Template, new_message_key, open_token
from support.procs import Redirector

API_KEY = "sparkpost-client-key-0123456789abcdef"  # 128+ bits
PREFIX = "test:"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def engage_https(redis_server, redis_client, engage_tmp, certificate, monkeypatch):
    empty = engage_tmp / "empty.conf"
    empty.touch()
    server = Redirector({"ENGAGE_REDIS_URL": redis_server.url, "ENGAGE_KEY_PREFIX": PREFIX,
                         "ENGAGE_API_KEYS": API_KEY, "ENGAGE_RATE_LIMIT": "0",
                         "ENGAGE_TRACKING_URL": "https://127.0.0.1", "ENGAGE_CONFIG": str(empty)},
                        engage_tmp / "redirector-sparkpost.log", tls=certificate)
    server.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    yield server
    server.stop()


def send(redis_client, campaign: str, rcpt: str, domain: str = "shop.example") -> str:
    """Register a message as the milter does; its open token."""
    template = Template(links=(Link("https://shop.example/sale", "sale"),), campaign_id=campaign,
                        friendly_from=f"news@{domain}", sending_domain=domain)
    key = new_message_key()
    LinkStore(redis_client, PREFIX).register(key, template, MessageRecord(
        rcpt_to=(rcpt,), subject="Sale", message_id=f"<{key}@x>",
        injection_time=int(datetime.now(timezone.utc).timestamp()),
        template_id=template.template_id))
    return open_token(key, template.template_id)


def test_python_sparkpost_metrics_calls(engage_https, redis_client):
    send(redis_client, "Labor Day Sale", "a@gmail.com")
    send(redis_client, "Winter Event", "b@Yahoo.com", "example2.com")
    client = SparkPost(API_KEY, base_uri=f"127.0.0.1:{engage_https.port}")
    assert client.metrics.campaigns.list() == ["Labor Day Sale", "Winter Event"]
    assert client.metrics.domains.list() == ["gmail.com", "yahoo.com"]
    assert client.metrics.campaigns.list(params={"match": "winter"}) == ["Winter Event"]
    assert client.metrics.domains.list(params={"limit": 1, "timezone": "America/New_York"}) == [
        "gmail.com"]
    with pytest.raises(SparkPostAPIException) as refused:
        client.metrics.campaigns.list(params={"limit": "0"})
    assert refused.value.status == 400 and "Code: 1200" in refused.value.errors[0]
    with pytest.raises(SparkPostAPIException) as unauthorized:
        SparkPost("wrong-key", base_uri=f"127.0.0.1:{engage_https.port}").metrics.campaigns.list()
    assert unauthorized.value.status == 401


def test_a_cursor_walk_with_sparkpost_sample_parameters(engage_https, redis_client,
                                                        certificate):
    """The events search as SparkPost documents it, from/to as YYYY-MM-DDTHH:MM read in
    ``timezone``, filtered by recipient domain, walked by ``links.next``: 200 on every page,
    one total_count, exactly the matching events, newest first."""
    web = requests.Session()
    web.verify = str(certificate[0])
    expected = set()
    for n, rcpt in enumerate(["ann@example.com", "bob@mail.example.com", "cy@example.org",
                              "dee@Example.com", "eve@other.test"] * 2):
        token = send(redis_client, f"c{n % 3}", rcpt)
        for kind in ("o", "i"):
            assert web.get(f"{engage_https.url}/{kind}/{token}").status_code == 200
        if "example.com" in rcpt.lower():
            expected.add(token)
    zone, now = ZoneInfo("America/New_York"), datetime.now(timezone.utc)
    params = {"events": "open,initial_open,click", "recipient_domains": "example.com",
              "timezone": "America/New_York", "per_page": "5", "cursor": "initial",
              "from": (now - timedelta(hours=1)).astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
              "to": (now + timedelta(hours=1)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")}
    headers = {"Authorization": API_KEY, "Accept": "application/json"}
    page = web.get(f"{engage_https.url}/api/v1/events/message", params=params, headers=headers)
    pages = []
    while True:
        assert page.status_code == 200, page.text
        pages.append(page.json())
        following = pages[-1]["links"].get("next")
        if not following:
            break
        page = web.get(f"{engage_https.url}{following}", headers=headers)
    results = [event for body in pages for event in body["results"]]
    assert {body["total_count"] for body in pages} == {len(expected) * 2} == {len(results)}
    assert len(pages) == 3
    assert {event["email_id"] for event in results} == expected
    assert all(event["recipient_domain"].endswith("example.com") for event in results)
    ids = [int(event["event_id"]) for event in results]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
