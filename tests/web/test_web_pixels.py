"""Open pixels, healthz, rate limit and client IP through trusted proxies."""
from __future__ import annotations

import pytest

from engage.web.app import GIF
from support import stored


def stored_events(events):
    return stored.events(events.client, events.prefix)


def assert_gif(response):
    assert response.status_code == 200
    assert response.mimetype == "image/gif"
    assert response.data == GIF and len(GIF) == 43
    assert "no-store" in response.headers["Cache-Control"]
    assert "no-cache" in response.headers["Cache-Control"]
    assert response.headers["Pragma"] == "no-cache"


def test_bottom_and_top_pixels_record_open_and_initial_open(client, mail, events):
    message = mail("https://example.com/")
    assert_gif(client.get(f"/o/{message.open}", headers={"User-Agent": "Mail/1.0"}))
    assert_gif(client.get(f"/i/{message.open}"))
    opened, initial = stored_events(events)
    assert (opened["type"], initial["type"]) == ("open", "initial_open")
    assert opened["user_agent"] == "Mail/1.0" and opened["ip_address"] == "127.0.0.1"
    assert "target_link_url" not in opened and opened["initial_pixel"] is True


@pytest.mark.parametrize("token", ["nope", "A" * 28, "A" * 30])
def test_unknown_pixel_tokens_get_the_gif_and_no_event(client, mail, events, token):
    message = mail("https://example.com/")
    assert_gif(client.get(f"/o/{token}"))
    assert_gif(client.get(f"/i/{message.click(0)}"))  # a click token is no open token
    assert stored_events(events) == []


def test_gif_is_served_when_redis_is_down(client, mail, web_redis, caplog):
    message = mail("https://example.com/")
    web_redis.stop()
    try:
        assert_gif(client.get(f"/o/{message.open}"))
        assert_gif(client.get(f"/i/{message.open}"))
        clicked = client.get(f"/c/{message.click(0)}")
        assert clicked.status_code == 503 and "Location" not in clicked.headers
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json["status"] == "unavailable"
        assert any("open not recorded" in record.message for record in caplog.records)
    finally:
        web_redis.start()
    assert client.get("/healthz").status_code == 200  # reconnects by itself


def test_healthz_is_ok_with_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["redis"] == "ok"
    assert response.json["memory"]["maxmemory"] == 0  # the test Redis has no limit
    assert response.json["memory"]["events"] == "recording"
    assert response.json["refused_writes"] == 0
    assert response.json["dropped_events"] == {"high-water": 0, "refused": 0, "limited": 0,
                                               "lost": 0}


def test_rate_limit_answers_403_past_the_limit(make_app, mail):
    client = make_app(rate_limit=3, rate_limit_window=60).test_client()
    message = mail("https://example.com/")
    codes = [client.get(f"/c/{message.click(0)}").status_code for _ in range(3)]
    codes.append(client.get("/c/unknown-token-guess").status_code)
    assert codes == [302, 302, 302, 403]
    other = {"REMOTE_ADDR": "192.0.2.9"}
    assert client.get(f"/c/{message.click(0)}", environ_base=other).status_code == 302
    assert_gif(client.get(f"/o/{message.open}"))  # image proxies are not limited


def test_untrusted_forwarded_for_cannot_spoof_the_client(make_app, mail, events):
    client = make_app(rate_limit=2).test_client()
    message = mail("https://example.com/")
    for n in range(3):
        forged = {"X-Forwarded-For": f"203.0.113.{n}"}
        response = client.get(f"/c/{message.click(0)}", headers=forged)
    assert response.status_code == 403  # all three counted against 127.0.0.1
    assert {event["ip_address"] for event in stored_events(events)} == {"127.0.0.1"}


def test_trusted_proxy_hop_gives_the_client_ip(make_app, mail, events):
    client = make_app(proxy_hops=1, rate_limit=2).test_client()
    message = mail("https://example.com/")
    # A client forges the header; the one trusted proxy (nginx) appends the real peer.
    forged = {"X-Forwarded-For": "198.51.100.66, 203.0.113.7"}
    for _ in range(2):
        assert client.get(f"/c/{message.click(0)}", headers=forged).status_code == 302
    assert client.get(f"/c/{message.click(0)}", headers=forged).status_code == 403
    other = {"X-Forwarded-For": "198.51.100.66, 203.0.113.8"}
    assert client.get(f"/c/{message.click(0)}", headers=other).status_code == 302
    assert [event["ip_address"] for event in stored_events(events)] == [
        "203.0.113.7", "203.0.113.7", "203.0.113.8"]


def test_two_trusted_hops(make_app, mail, events):
    client = make_app(proxy_hops=2).test_client()
    message = mail("https://example.com/")
    client.get(f"/o/{message.open}", headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.1, 10.0.0.2"})
    assert stored_events(events)[0]["ip_address"] == "198.51.100.1"


def test_geo_ip_is_added_only_with_a_lookup(monkeypatch, make_app, mail, events):
    import engage.web.app

    monkeypatch.setattr(engage.web.app, "open_lookup",
                        lambda path: (lambda ip: {"country": "DE", "city": "Berlin"}))
    client = make_app(geoip_db="/nonexistent.mmdb").test_client()
    message = mail("https://example.com/")
    client.get(f"/c/{message.click(0)}")
    assert stored_events(events)[0]["geo_ip"] == {"country": "DE", "city": "Berlin"}


def test_geoip_needs_the_module_and_the_path(tmp_path):
    from engage.geoip import open_lookup, shape

    assert open_lookup("") is None
    assert open_lookup(str(tmp_path / "missing.mmdb")) is None  # no module or no file
    record = {"country": {"iso_code": "US"}, "subdivisions": [{"iso_code": "MD"}],
              "city": {"names": {"en": "Columbia"}},
              "location": {"latitude": 39.2, "longitude": -76.8}, "postal": {"code": "21046"}}
    assert shape(record) == {"country": "US", "region": "MD", "city": "Columbia",
                             "latitude": 39.2, "longitude": -76.8, "postal_code": "21046"}


def test_access_log_has_one_line_per_request_without_full_tokens(client, mail, caplog):
    message = mail("https://example.com/")
    caplog.set_level("INFO", logger="engage.access")
    client.get(f"/c/{message.click(0)}")
    client.get(f"/o/{message.open}")
    client.get("/api/v1/events/message?recipients=rcpt@example.com",
               headers={"Authorization": "test-key-1-abcdefghijkl"})
    lines = [record.getMessage() for record in caplog.records if record.name == "engage.access"]
    assert len(lines) == 3
    assert "status=302" in lines[0] and "event=click" in lines[0]
    text = "\n".join(lines)
    assert message.key not in text and "rcpt@example.com" not in text and "test-key-1-abcdefghijkl" not in text
