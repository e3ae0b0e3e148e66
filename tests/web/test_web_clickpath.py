"""The click layer in front of Flask (engage.web.clickpath) answers exactly as the Flask views
did: same pages and headers whichever layer answers, one Redis round trip before the
event append, and Flask keeps every request the layer does not recognise."""
from __future__ import annotations

import logging

from redis.connection import Connection

from engage.store import keys
from engage.store.links import parsed_template


def _answer(response):
    headers = {name: value for name, value in response.headers.items()}
    return response.status_code, headers, response.data


def test_pages_are_the_same_whichever_layer_answers(client, mail):
    mail("https://example.com/")
    by_flask = client.get("/c/bad%20token")  # a space: no token has one, Flask answers
    by_layer = client.get("/c/" + "A" * 29)  # well-formed, unknown: the click layer answers
    assert _answer(by_flask) == _answer(by_layer)
    assert by_layer.status_code == 404 and b"Link not found" in by_layer.data


def test_the_403_page_is_the_same_whichever_layer_answers(make_app, mail):
    message = mail("https://example.com/")
    client = make_app(rate_limit=1).test_client()
    assert client.get(f"/c/{message.click(0)}").status_code == 302
    by_layer = client.get(f"/c/{message.click(0)}")
    by_flask = client.get("/c/bad%20token")
    assert by_layer.status_code == 403
    assert _answer(by_flask) == _answer(by_layer)


def test_a_head_request_gets_the_headers_of_the_get_and_no_body(make_app, mail):
    message = mail("https://example.com/")
    client = make_app(rate_limit=1).test_client()
    get = client.get(f"/c/{message.click(0)}")
    head = client.head(f"/c/{message.click(0)}")  # over the limit now: the 403 page's headers
    page = client.get("/c/" + "A" * 29)
    assert get.status_code == 302 and get.data == b""
    assert head.status_code == 403 and head.data == b""
    assert head.headers["Content-Length"] == str(len(client.get("/c/bad%20token").data))
    assert page.status_code == 403


def test_a_click_is_two_redis_round_trips(client, mail, monkeypatch):
    """Rate limit, token and click state in one, the event append in the other."""
    message = mail("https://example.com/")
    client.get(f"/c/{message.click(0)}")  # scripts loaded, connections open
    sent = []
    original = Connection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)
    monkeypatch.setattr(Connection, "send_packed_command", counted)
    assert client.get(f"/c/{message.click(0)}").status_code == 302
    assert len(sent) == 2


def test_trailing_slashes_and_other_methods_stay_with_flask(client, mail):
    message = mail("https://example.com/")
    assert client.get(f"/c/{message.click(0)}/").status_code == 404
    assert client.delete(f"/c/{message.click(0)}").status_code == 405
    assert client.options(f"/c/{message.click(0)}").status_code == 200


def test_the_access_line_is_written_by_the_click_layer(client, mail, caplog):
    message = mail("https://example.com/")
    with caplog.at_level(logging.INFO, logger="engage.access"):
        client.get(f"/c/{message.click(0)}", headers={"User-Agent": "Agent/1"})
    lines = [r.getMessage() for r in caplog.records if r.name == "engage.access"]
    assert len(lines) == 1
    assert f"path=/c/{message.click(0)[:6]}... status=302" in lines[0]
    assert "event=click" in lines[0] and 'ua="Agent/1"' in lines[0]


def test_parsed_templates_are_reused_by_their_text_and_never_served_stale(client, mail, rclient,
                                                                           settings):
    """A worker keeps parsed templates (engage.store.links.parsed_template): a miss and a hit both
    redirect to the right URL, and a template rewritten in place (``engage forget`` does
    that, same id) is used as it is now, not as it was parsed before."""
    first = mail("https://example.com/a", "https://example.com/b")
    second = mail("https://example.com/a", "https://example.com/b")  # the same template
    other = mail("https://example.org/x", "https://example.org/y")
    assert first.template.template_id == second.template.template_id
    parsed_template.cache_clear()
    assert client.get(f"/c/{first.click(1)}").headers["Location"] == "https://example.com/b"
    assert parsed_template.cache_info().misses == 1
    assert client.get(f"/c/{second.click(0)}").headers["Location"] == "https://example.com/a"
    assert client.get(f"/c/{other.click(1)}").headers["Location"] == "https://example.org/y"
    assert parsed_template.cache_info().hits == 1 and parsed_template.cache_info().misses == 2
    key = keys.template(settings.key_prefix, first.template.template_id,
                        keys.shard_of(second.key))
    rclient.set(key, rclient.get(key).replace(b"example.com/a", b"example.com/scrubbed"))
    assert client.get(f"/c/{second.click(0)}").headers["Location"] == "https://example.com/scrubbed"
    assert parsed_template.cache_info().misses == 3
    rclient.delete(key)
    assert client.get(f"/c/{second.click(0)}").status_code == 404


def test_a_click_after_redis_lost_its_scripts_is_answered_and_recorded(client, mail, rclient,
                                                                       settings):
    """Both click scripts are sent as EVALSHA (engage.store.redisconn.run_script); a Redis that
    does not know them (restarted, flushed) gets them again with EVAL."""
    message = mail("https://example.com/")
    stream = keys.events(settings.key_prefix, keys.shard_of(message.key))
    assert client.get(f"/c/{message.click(0)}").status_code == 302
    rclient.script_flush()
    response = client.get(f"/c/{message.click(0)}")
    assert response.status_code == 302 and response.headers["Location"] == "https://example.com/"
    assert rclient.xlen(stream) == 2
    assert client.get(f"/c/{message.click(0)}").status_code == 302  # EVALSHA again
    assert rclient.xlen(stream) == 3
