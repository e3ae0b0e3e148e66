"""End to end in a real headless Chromium: messages of two campaigns go through the sandbox
Postfix and the milter, some are opened and clicked over HTTP, then the dashboard is
loaded from gunicorn, logged into with HTTP Basic, and every number it shows is compared
with what the metrics and events APIs answer (read here with urllib). A campaign id
holding markup must show as text; at phone width nothing may stick out sideways.
Screenshots (desktop and phone) go to build/test-artifacts/.

Chromium and chromedriver are Debian's (/usr/bin/chromium, /usr/bin/chromedriver, from
scripts/install-deps). Missing, they fail this test; ENGAGE_SKIP_BROWSER=1 skips it.
"""
from __future__ import annotations

import base64
import email
import json
import re
import urllib.request
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from werkzeug.security import generate_password_hash

from engage import settings as config
from support.browser import start_chromium
from support.procs import http_get
from support.stored import settled_for

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
USER, PASSWORD = "ada", "dashboard test password"
SPRING = "spring-sale"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"  # 56 bytes, within the cap
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
LINKS = (("https://shop.example.com/sale?x=1", "cta"), ("https://shop.example.com/help", "footer"))
TOTALS = ("count_sent", "count_unique_confirmed_opened", "count_unique_clicked",
          "count_nonprefetched_unique_confirmed_opened", "count_nonprefetched_unique_clicked")
SERIES = ("count_rendered", "count_nonprefetched_rendered", "count_clicked",
          "count_nonprefetched_clicked")
LINK_METRICS = ("count_clicked", "count_unique_clicked", "count_nonprefetched_unique_clicked")
VERDICT_TEXT = {"human": "human", "scanner": "scanner", "privacy_proxy": "privacy proxy",
                "prefetch": "prefetch"}

# Everything the page shows, read in one script so a refresh cannot interleave.
SNAPSHOT_JS = """
const text = (node) => node ? node.textContent.trim() : null;
const rows = (selector, key) => [...document.querySelectorAll(selector + ' tbody tr')].map(tr => {
  const row = {key: tr.getAttribute(key), name: text(tr.querySelector('td'))};
  tr.querySelectorAll('td[data-metric]').forEach(td => { row[td.dataset.metric] = text(td); });
  return row;
});
const summary = {};
document.querySelectorAll('#summary [data-metric]').forEach(n => { summary[n.dataset.metric] = text(n); });
document.querySelectorAll('#summary [data-rate]').forEach(n => { summary[n.dataset.rate] = text(n); });
const series = {};
document.querySelectorAll('#plot path[data-series]').forEach(p => {
  series[p.dataset.series] = Number(p.dataset.total);
});
return {
  state: document.body.dataset.metrics, tail_state: document.body.dataset.tail,
  from: document.body.dataset.from, to: document.body.dataset.to,
  precision: document.body.dataset.precision,
  summary, series, campaigns: rows('#campaigns', 'data-campaign'), links: rows('#links', 'data-link'),
  tail: [...document.querySelectorAll('#tail li')].map(li => ({
    id: li.dataset.eventId, verdict: li.dataset.verdict,
    badge: text(li.querySelector('.badge.verdict')), campaign: text(li.querySelector('dd'))})),
  errors: [...document.querySelectorAll('.error')].filter(n => !n.hidden).map(text),
  injected: document.querySelectorAll('main img, main script, main iframe').length,
  scripts: document.scripts.length,
};
"""
OVERFLOW_JS = """
const width = arguments[0];
const wide = [...document.querySelectorAll('body *')].filter(el => {
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.right > width + 0.5;
}).map(el => el.tagName + '.' + el.className + ' right=' + Math.round(el.getBoundingClientRect().right));
const spill = [...document.querySelectorAll('body *')].filter(el =>
  el.clientWidth && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible'
).map(el => el.tagName + '.' + el.className + ' ' + el.scrollWidth + '>' + el.clientWidth);
return {width, scroll: document.documentElement.scrollWidth, inner: window.innerWidth, wide, spill};
"""


@pytest.fixture
def chromium(engage_tmp) -> Any:
    driver = start_chromium(engage_tmp)
    yield driver
    driver.quit()


def build_message(campaign: str, rcpt: str, number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.example.com>"
    msg["To"] = rcpt
    msg["Subject"] = f"Offer {number}"
    msg["Message-ID"] = f"<dash-{number}@shop.example.com>"
    msg["X-MSYS-API"] = json.dumps({"campaign_id": campaign})
    anchors = "".join(f'<p><a href="{url}" data-msys-linkname="{name}">{name}</a></p>'
                      for url, name in LINKS)
    msg.set_content(f"<html><body><h1>Offer</h1>{anchors}</body></html>", subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def tracked(raw: bytes, base: str) -> dict[str, Any]:
    """The delivered copy's recipient and tracked URLs: top/bottom pixel and clicks in order."""
    message = email.message_from_bytes(raw, policy=policy.default)
    html = next(p.get_content() for p in message.walk() if p.get_content_type() == "text/html")
    find = lambda kind: re.findall(rf"{re.escape(base)}/{kind}/[A-Za-z0-9_-]+", html)  # noqa: E731
    return {"rcpt": message["Delivered-To"].lower(), "i": find("i")[0], "o": find("o")[0],
            "c": find("c")}


def hit(url: str, agent: str = BROWSER_UA, method: str = "GET") -> None:
    status, _, _ = http_get(url, {"User-Agent": agent, "Accept-Language": "en"}, method=method)
    assert status in (200, 302), (url, status)


def api(base: str, key: str, path: str, **params: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}{path}?{urlencode(params)}",
                                     headers={"Authorization": key})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def shown_count(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "\u2013"


def full_screenshot(driver: Any, path: Path) -> None:
    """The whole page, not just the viewport (DevTools: captureBeyondViewport)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {path}")


def ready_snapshot(driver: Any) -> dict[str, Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d: Any) -> Any:
        snap = d.execute_script(SNAPSHOT_JS)
        done = snap["state"] in ("ready", "error") and snap["tail_state"] in ("ready", "error")
        return snap if done else False
    return WebDriverWait(driver, 30, poll_frequency=0.2).until(settled)


def send_and_engage(postfix: Any, base: str) -> dict[str, Any]:
    """Five messages: spring-sale to three recipients, the hostile campaign to two; then
    opens and clicks like recipients' mail clients, and one link scanner."""
    recipients = {SPRING: ["a1@example.org", "a2@example.org", "a3@example.org"],
                  HOSTILE: ["b1@example.net", "b2@example.net"]}
    number = 0
    for campaign, rcpts in recipients.items():
        for rcpt in rcpts:
            number += 1
            assert postfix.send(build_message(campaign, rcpt, number), "bounces@shop.example.com",
                                [rcpt]) == {}
    mail = {m["rcpt"]: m for m in (tracked(raw, base) for raw in postfix.wait_delivered(5))}
    a1, a2, a3 = (mail[r] for r in recipients[SPRING])
    b1, b2 = (mail[r] for r in recipients[HOSTILE])
    hit(a1["i"]), hit(a1["o"]), hit(a1["c"][0]), hit(a1["c"][0]), hit(a1["c"][1])
    hit(a2["o"])
    hit(a3["c"][0], SCANNER_UA, "HEAD")  # a link scanner: HEAD, no pixel, bot agent
    hit(a3["c"][1], SCANNER_UA)
    hit(b1["c"][1]), hit(b2["i"]), hit(b2["o"])
    return mail


def settings_file(engage_tmp: Path) -> Path:
    """The redirector's settings. Our recipients open and click within a second of the
    send, which the verdicts' timing rules (when this tree has them) would call machine
    traffic: they are turned off, so only the user agent and HEAD mark the scanner."""
    path = engage_tmp / "dashboard.conf"
    known = {(section, key) for section, key, *_ in config.SCHEMA}
    timing = [("verdicts", "fast_click_seconds"), ("verdicts", "fast_open_seconds")]
    lines = ["[verdicts]", *(f"{key} = 0" for _, key in timing)] if set(timing) <= known else []
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dashboard_shows_what_the_apis_answer(start_redirector, start_milter, postfix_sandbox,
                                              chromium, engage_tmp, redis_client):
    """redis_client: the session's Redis starts empty (earlier tests' counts would add up)."""
    from selenium.webdriver.support.ui import WebDriverWait

    users = f"{USER}:{generate_password_hash(PASSWORD, 'pbkdf2:sha256:20000')}"
    redirector = start_redirector({"ENGAGE_DASHBOARD_ENABLED": "yes",
                                   "ENGAGE_DASHBOARD_USERS": users,
                                   "ENGAGE_CONFIG": str(settings_file(engage_tmp))})
    base, key = redirector.public_url, redirector.api_key
    postfix = postfix_sandbox(start_milter({"ENGAGE_TRACKING_URL": base}))
    mail = send_and_engage(postfix, base)
    settled_for(redirector)  # the clicks' events are appended after their 302s

    # Without the login the browser gets none of the dashboard (it would ask for the login).
    chromium.get(f"{base}/dashboard")
    assert "Campaigns" not in chromium.page_source
    chromium.get_log("browser")  # drained: only what follows the login counts below
    # Logging in: HTTP Basic, the credentials given the way a browser's prompt would.
    parts = urlsplit(base)
    chromium.get(f"{parts.scheme}://{USER}:{PASSWORD.replace(' ', '%20')}@{parts.netloc}/dashboard")
    snap = ready_snapshot(chromium)
    logs = chromium.get_log("browser")
    assert (snap["state"], snap["tail_state"], snap["errors"]) == ("ready", "ready", []), logs
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs

    window = {"from": snap["from"], "to": snap["to"]}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    full_screenshot(chromium, ARTIFACTS / "dashboard-desktop.png")

    # Summary cards = /deliverability.
    [total] = api(base, key, "/api/v1/metrics/deliverability", metrics=",".join(TOTALS),
                  **window)["results"]
    assert total["count_sent"] == 5  # what the test sent: the API saw the real messages
    for metric in ("count_sent", "count_unique_confirmed_opened", "count_unique_clicked"):
        assert shown_count(snap["summary"][metric]) == total[metric], metric
    assert snap["summary"]["open"] == rate(total["count_unique_confirmed_opened"], 5)
    assert snap["summary"]["open_human"] == rate(total["count_nonprefetched_unique_confirmed_opened"], 5)
    assert snap["summary"]["click"] == rate(total["count_unique_clicked"], 5)
    assert snap["summary"]["click_human"] == rate(total["count_nonprefetched_unique_clicked"], 5)

    # Campaigns table = /deliverability/campaign, row by row.
    campaigns = api(base, key, "/api/v1/metrics/deliverability/campaign",
                    metrics=",".join(TOTALS), **window)["results"]
    assert {row["campaign_id"]: row["count_sent"] for row in campaigns} == {SPRING: 3, HOSTILE: 2}
    shown = {row["key"]: row for row in snap["campaigns"]}
    assert set(shown) == {SPRING, HOSTILE}
    for row in campaigns:
        cells, sent = shown[row["campaign_id"]], row["count_sent"]
        assert cells["name"] == row["campaign_id"]  # the markup one too: as text
        for metric in ("count_sent", "count_unique_confirmed_opened", "count_unique_clicked"):
            assert shown_count(cells[metric]) == row[metric], (row["campaign_id"], metric)
        assert cells["open_rate"] == rate(row["count_unique_confirmed_opened"], sent)
        assert cells["open_rate_human"] == rate(row["count_nonprefetched_unique_confirmed_opened"], sent)
        assert cells["click_rate"] == rate(row["count_unique_clicked"], sent)
        assert cells["click_rate_human"] == rate(row["count_nonprefetched_unique_clicked"], sent)
    assert shown[SPRING]["count_unique_confirmed_opened"] == "3"  # a1, a2 opened, a3 clicked

    # Top links = /deliverability/link-name.
    links = api(base, key, "/api/v1/metrics/deliverability/link-name",
                metrics=",".join(LINK_METRICS), order_by="count_clicked", limit="10",
                **window)["results"]
    assert sorted(row["link_name"] for row in links) == ["cta", "footer"]
    assert [row["key"] for row in snap["links"]] == [row["link_name"] for row in links]
    for cells, row in zip(snap["links"], links):
        for metric in LINK_METRICS:
            assert shown_count(cells[metric]) == row[metric], (row["link_name"], metric)

    # The plot's series = /deliverability/time-series, summed.
    series = api(base, key, "/api/v1/metrics/deliverability/time-series",
                 metrics=",".join(SERIES), precision=snap["precision"], **window)["results"]
    for metric in SERIES:
        assert snap["series"][metric] == sum(row[metric] for row in series), metric
    assert snap["series"]["count_clicked"] == 6  # a1 x3, a3 x2 (one HEAD), b1
    assert snap["series"]["count_rendered"] == 5  # a1 top+bottom, a2, b2 top+bottom

    # The live tail = the events API's newest events, verdict badges included.
    settled_for(redirector)
    events = api(base, key, "/api/v1/events/message", events="click,open,initial_open",
                 per_page="50")["results"]
    assert len(events) == 11
    assert [item["id"] for item in snap["tail"]] == [e["event_id"] for e in events]
    for item, event in zip(snap["tail"], events):
        verdict = (event.get("engage") or {}).get("verdict", "human")
        assert (item["verdict"], item["badge"]) == (verdict, VERDICT_TEXT[verdict])
        assert item["campaign"] == event["campaign_id"]

    if any("engage" in event for event in events):  # verdicts are kept: the scanner's two
        # clicks count with machines only, so the rates of spring-sale with and without
        # machines differ.
        assert [e["engage"]["verdict"] for e in events if e["rcpt_to"] == "a3@example.org"] == [
            "scanner", "scanner"]
        assert (shown[SPRING]["click_rate"], shown[SPRING]["click_rate_human"]) == (
            "66.7%", "33.3%")
        assert (shown[SPRING]["open_rate"], shown[SPRING]["open_rate_human"]) == (
            "100.0%", "66.7%")

    # Markup in a campaign id stayed text: nothing injected, no alert (Selenium would raise).
    assert snap["injected"] == 0 and snap["scripts"] == 1
    assert HOSTILE in chromium.find_element("id", "campaigns").text

    # A new click appears in the tail by itself (the page polls the events API).
    hit(mail["a2@example.org"]["c"][0])
    newest = api(base, key, "/api/v1/events/message", events="click", per_page="1")["results"][0]
    WebDriverWait(chromium, 30, poll_frequency=0.2).until(
        lambda d: d.find_elements("css selector", f'#tail li[data-event-id="{newest["event_id"]}"]'))

    # Phone width: the page fits, nothing scrolls sideways.
    chromium.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    chromium.refresh()
    phone = ready_snapshot(chromium)
    assert phone["errors"] == []
    # A phone widens its layout viewport to fit wider content: innerWidth must stay 390.
    overflow = chromium.execute_script(OVERFLOW_JS, 390)
    assert overflow["wide"] == overflow["spill"] == [], overflow
    assert overflow["scroll"] <= 390 == overflow["inner"], overflow
    full_screenshot(chromium, ARTIFACTS / "dashboard-phone.png")
    chromium.save_screenshot(str(ARTIFACTS / "dashboard-phone-screen.png"))  # the first screen
    print(f"screenshot: {ARTIFACTS / 'dashboard-phone-screen.png'}")
