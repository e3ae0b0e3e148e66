"""[privacy] masking and [open_tracking] per domain, as pure logic: the masking functions,
the settings that choose them, the rate limiter's key, the milter plan's pixel decision.
(Through real gunicorn: tests/web/test_web_privacy_gunicorn.py; through the milter and
Postfix: tests/e2e/test_e2e_open_tracking.py.)"""
from __future__ import annotations

import re
from dataclasses import replace

import pytest

from engage import settings
from engage.erasure.privacy import (
    limiter_ip,
    limiter_secret,
    login_network,
    mask_facts,
    mask_ip,
    mask_user_agent,
    pseudonym,
    truncate_ip,
)
from engage.settings import Settings
from engage.store.events import RequestFacts
from engage.web.ratelimit import RateLimiter
from engage_milter.plan import Envelope, plan_message
from oracle import milter_view


@pytest.mark.parametrize("ip, truncated", [
    ("203.0.113.77", "203.0.113.0"),
    ("10.1.2.255", "10.1.2.0"),
    ("2001:db8:1234:5678:9abc::1", "2001:db8:1234::"),
    ("2001:0DB8:00aa:ffff::", "2001:db8:aa::"),
    ("::ffff:198.51.100.23", "::ffff:198.51.100.0"),
    ("fe80::1%eth0", "fe80::"),
    (" 192.0.2.9 ", "192.0.2.0"),
    ("", ""),
    ("unix:/run/x.sock", ""),
    ("999.1.1.1", ""),
])
def test_truncation_keeps_the_network_and_drops_what_is_not_an_address(ip, truncated):
    assert truncate_ip(ip) == truncated
    hits = truncate_ip.cache_info().hits
    assert mask_ip(ip, "truncated") == truncated  # the same answer from the cache
    assert truncate_ip.cache_info().hits == hits + 1


def test_full_keeps_none_drops():
    assert mask_ip("203.0.113.77", "full") == "203.0.113.77"
    assert mask_ip("203.0.113.77", "none") == ""
    assert mask_ip("2001:db8::1", "none") == ""
    assert mask_user_agent("Mozilla/5.0", "keep") == "Mozilla/5.0"
    assert mask_user_agent("Mozilla/5.0", "drop") == ""


def test_mask_facts_masks_ip_and_agent_and_keeps_the_rest():
    facts = RequestFacts("198.51.100.23", "Mozilla/5.0 (X11)", "de-DE", {"country": "DE"},
                         "https://mail.example/")
    masked = mask_facts(facts, "truncated", "drop")
    assert masked == RequestFacts("198.51.100.0", "", "de-DE", {"country": "DE"},
                                  "https://mail.example/")
    assert mask_facts(facts, "full", "keep") == facts


def test_the_rate_limiter_counts_per_network_unless_full_addresses_are_kept():
    assert limiter_ip("203.0.113.77", "full") == "203.0.113.77"
    assert limiter_ip("203.0.113.77", "truncated") == "203.0.113.0"
    assert limiter_ip("203.0.113.77", "none", b"k") == pseudonym("203.0.113.0", b"k")
    assert limiter_ip("203.0.113.9", "none", b"k") == limiter_ip("203.0.113.77", "none", b"k")
    assert limiter_ip("203.0.113.77", "none", b"k") != limiter_ip("203.0.113.77", "none", b"j")
    assert limiter_ip("garbage", "none") == "-"
    limiter = RateLimiter(None, "p:", 10, 60, "truncated")  # type: ignore[arg-type]
    assert limiter.key("2001:db8:1:2::3", 120) == "p:rl:2001:db8:1:::2"
    limiter = RateLimiter(None, "p:", 10, 60, "none", b"k")  # type: ignore[arg-type]
    assert re.fullmatch(r"p:rl:[0-9a-f]{20}:2", limiter.key("2001:db8:1:2::3", 120))
    assert RateLimiter(None, "p:", 10, 60).key("203.0.113.77", 0) == "p:rl:203.0.113.77:0"  # type: ignore[arg-type]


@pytest.mark.parametrize("ip, network", [
    ("203.0.113.77", "203.0.113.0"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
    ("::ffff:198.51.100.23", "::ffff:198.51.100.0"), ("nonsense", "-")])
def test_the_login_limiter_counts_per_ipv4_24_and_ipv6_64_and_names_it_only_in_full_mode(
        ip, network):
    assert login_network(ip, "full", b"k") == network
    for mode in ("truncated", "none"):
        hidden = login_network(ip, mode, b"k")
        assert hidden == ("-" if network == "-" else pseudonym(network, b"k"))
        assert "." not in hidden and ":" not in hidden  # no address of any form


def test_the_pseudonym_key_comes_from_the_settings_secrets():
    assert limiter_secret() == limiter_secret("", "") == b""
    assert len(limiter_secret("api-key", "")) == 32
    assert limiter_secret("a", "b") != limiter_secret("a", "c")


def test_privacy_settings_from_file_and_environment(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[privacy]\nip_addresses = Truncated\nuser_agents = drop\n")
    loaded = settings.load(str(conf), environ={})
    assert (loaded.ip_addresses, loaded.user_agents) == ("truncated", "drop")
    loaded = settings.load(str(conf), environ={"ENGAGE_IP_ADDRESSES": "none",
                                               "ENGAGE_USER_AGENTS": "keep"})
    assert (loaded.ip_addresses, loaded.user_agents) == ("none", "keep")
    assert settings.load(environ={"ENGAGE_CONFIG": "/dev/null"}).ip_addresses == "full"


@pytest.mark.parametrize("text, message", [
    ("[privacy]\nip_addresses = hashed\n", "[privacy] ip_addresses: must be one of full, truncated, none"),
    ("[privacy]\nuser_agents = maybe\n", "[privacy] user_agents: must be one of keep, drop"),
    ("[privacy]\nemails = none\n", "[privacy] emails: unknown key"),
    ("[open_tracking]\nexample.de = later\n", "[open_tracking] example.de: expected yes/no"),
])
def test_bad_privacy_settings_name_section_and_key(tmp_path, text, message):
    conf = tmp_path / "e.conf"
    conf.write_text(text)
    with pytest.raises(settings.SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        settings.load(str(conf), environ={})


def test_open_tracking_per_domain_matches_parent_domains_and_is_described(tmp_path):
    conf = tmp_path / "e.conf"
    conf.write_text("[open_tracking]\nExample.DE = no\nnews.example.de = yes\nshop.example = on\n")
    loaded = settings.load(str(conf), environ={})
    assert loaded.open_tracking_for("example.de") is False
    assert loaded.open_tracking_for("mail.Example.de") is False
    assert loaded.open_tracking_for("news.example.de") is True  # the nearest entry wins
    assert loaded.open_tracking_for("a.news.example.de") is True
    assert loaded.open_tracking_for("example.com") is None
    assert loaded.open_tracking_for("") is None
    text = settings.describe(loaded)
    assert "open_tracking.example.de = no" in text and "privacy.ip_addresses = full" in text


MESSAGE = ("From: News <news@{domain}>\r\nSubject: x\r\n{header}Content-Type: text/html\r\n\r\n"
           '<html><body><a href="https://shop.example/p">p</a></body></html>\r\n')


def plan_for(domain: str, asked: bool | None, **overrides: object):
    header = "" if asked is None else (
        f'X-MSYS-API: {{"options": {{"open_tracking": {"true" if asked else "false"}}}}}\r\n')
    config = replace(Settings(tracking_url="https://t.example"), **overrides)
    raw = MESSAGE.format(domain=domain, header=header).encode()
    return plan_message(*milter_view(raw), Envelope(), config, "A" * 16)


@pytest.mark.parametrize("domain, asked, global_default, pixels", [
    ("example.de", None, True, False),      # the operator's no
    ("shop.example.de", True, True, False),  # is final: the header cannot turn it on
    ("example.de", False, True, False),
    ("example.com", None, True, True),      # no entry: the global default
    ("example.com", False, True, False),    # which the header may change
    ("example.com", True, False, True),
    ("example.nl", None, False, True),      # a yes entry over a global no
    ("example.nl", False, False, False),    # is a default the header can turn off
])
def test_pixels_follow_the_domain_entry_the_header_and_the_default(domain, asked,
                                                                   global_default, pixels):
    plan = plan_for(domain, asked, open_tracking=global_default,
                    open_tracking_domains={"example.de": False, "example.nl": True})
    assert plan.body is not None and plan.template is not None  # the link is tracked anyway
    assert (b"/i/" in plan.body and b"/o/" in plan.body) is pixels
    assert plan.template.open_tracking is pixels
    noted = any(note.startswith("open tracking off for") for note in plan.notes)
    assert noted is (asked is True and not pixels)
