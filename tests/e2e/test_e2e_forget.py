"""End to end erasure: real messages through the sandbox Postfix and the milter to several
recipients (one transaction with two of them), with personalised and named links, opened
and clicked through gunicorn, a webhook whose target fails so batches wait and are parked
as dead letters; then ``engage forget`` as a user runs it, while everything keeps running.
Before it, every key belongs to a family of the registry (engage.store.keys). Afterwards
no Redis key (name or any value, of any type, aggregate counters included) holds the
address in any case, percent-encoded or JSON-escaped, nor do the raw bytes of a rewritten
AOF; the other recipients' events are intact; every link of the forgotten recipient's
messages still redirects; waiting batches and replayed dead letters go out without the
address once the target answers; a second forget has nothing to do; the API call does
the same through gunicorn."""
from __future__ import annotations

import email
import json
import re
import secrets
import subprocess
import sys
import threading
import time
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from engage.store import keys
from engage.webhooks import config
from engage.webhooks.config import Webhook
from engage.webhooks.store import WebhookStore
from support.procs import REPO, http_get, stop_process
from support.redisdump import forms, traces
from support.stored import settled_for

P = "test:"
JANE = "Jane.Roe@Example.ORG"
BOB = "bob@example.net"
CAROL = "carol@example.com"
LINKS = ["https://shop.example.com/sale?a=1&b=2", "https://shop.example.com/unsub?u={address}"]


def build(subject: str, rcpts: list[str], personal: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Shop <news@shop.example.com>"
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = subject
    msg["X-MSYS-API"] = json.dumps({"campaign_id": "e2e-forget",
                                    "metadata": {"email": personal.lower(), "plan": "gold"}})
    address = quote(personal.lower(), safe="")
    anchors = "".join(f'<p><a href="{url.format(address=address).replace("&", "&amp;")}"'
                      f' data-msys-linkname="link {i} for {personal.lower()}">l{i}</a></p>'
                      for i, url in enumerate(LINKS))
    msg.set_content(f"<html><body>{anchors}</body></html>\n", subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def expected_urls(personal: str, forgotten: bool = False) -> list[str]:
    address = "" if forgotten else quote(personal.lower(), safe="")
    return [url.format(address=address) for url in LINKS]


class Target:
    """A webhook target on loopback that answers 500 until told otherwise."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.failing.set()
        self.bodies: list[tuple[int, bytes]] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = 500 if target.failing.is_set() else 200
                target.bodies.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[dict]:
        return [item["msys"]["track_event"] for status, body in list(self.bodies)
                if status == 200 for item in json.loads(body) if item["msys"]]


def wait(predicate, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.05)


def engage_env(redis_url: str, config_file: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ENGAGE_CONFIG": str(config_file), "ENGAGE_REDIS_URL": redis_url,
            "ENGAGE_KEY_PREFIX": P, "ENGAGE_LOG_LEVEL": "INFO", "PYTHONPATH": str(REPO / "redirector"),
            "ENGAGE_WEBHOOK_BATCH_INTERVAL": "0.2", "ENGAGE_WEBHOOK_TIMEOUT": "2",
            "ENGAGE_WEBHOOK_RETRY_BASE": "0.2", "ENGAGE_WEBHOOK_RETRY_MAX": "0.5",
            "ENGAGE_WEBHOOK_RETRY_WINDOW": "3",
            "ENGAGE_WEBHOOK_ALLOW_PRIVATE_TARGETS": "yes"}  # the target is on loopback


def forget(env: dict[str, str], address: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engage.admin.cli", "forget", address], env=env,
                          capture_output=True, text=True, timeout=120)


def events_of(redirector, recipient: str) -> list[dict]:
    settled_for(redirector)  # clicks' events are appended after their 302
    query = urlencode({"recipients": recipient, "per_page": 1000})
    status, _, body = http_get(f"{redirector.url}/api/v1/events/message?{query}",
                               {"Authorization": redirector.api_key})
    assert status == 200, body
    return json.loads(body)["results"]


def test_forget_leaves_no_trace_while_links_events_of_others_and_webhooks_keep_working(
        start_redirector, start_milter, postfix_sandbox, redis_client, redis_server, engage_tmp,
        tmp_path):
    redirector = start_redirector()
    base = redirector.public_url
    milter = start_milter({"ENGAGE_TRACKING_URL": base})
    postfix = postfix_sandbox(milter)
    empty = tmp_path / "empty.conf"
    empty.touch()
    env = engage_env(redis_server.url, empty)
    target = Target()
    store = WebhookStore(redis_client, P)
    hook = config.validate(Webhook(id=secrets.token_hex(8), name="e2e", target=target.url,
                                   created=time.time()))
    store.create(hook)
    worker_log = open(engage_tmp / "forget-worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "engage.webhooks", "run"], env=env, cwd=REPO,
                              stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        # Five transactions: one of them to Jane and Carol together; m5 is never opened.
        mails = {"m1": ([JANE], JANE), "m2": ([BOB], BOB), "m3": ([JANE, CAROL], JANE),
                 "m4": ([CAROL], CAROL), "m5": ([JANE], JANE)}
        for name, (rcpts, personal) in mails.items():
            subject = f"{name}: your order, {personal}"
            assert postfix.send(build(subject, rcpts, personal), "bounces@shop.example.com", rcpts) == {}
        delivered = postfix.wait_delivered(6)
        links: dict[str, list[str]] = {}
        pixels: dict[str, list[str]] = {}
        for raw in delivered:
            message = email.message_from_bytes(raw, policy=policy.default)
            html = message.get_body(("html",)).get_content()
            name = message["Subject"].split(":")[0]
            links[name] = re.findall(rf"{re.escape(base)}/c/[A-Za-z0-9_-]+", html)
            pixels[name] = re.findall(rf"{re.escape(base)}/[io]/[A-Za-z0-9_-]+", html)
            assert "jane" not in html.lower() or name in ("m1", "m3", "m5")
        for name in ("m1", "m2", "m3", "m4"):
            for url in links[name] + pixels[name]:
                assert http_get(url, {"User-Agent": "Mail/1.0"})[0] in (200, 302)
        bob_before = events_of(redirector, BOB)
        carol_before = events_of(redirector, CAROL)
        assert len(bob_before) == 4 and len(carol_before) == 8  # m4, and m3 (with Jane)
        wait(lambda: any(status == 500 for status, _ in target.bodies), what="a failed webhook POST")
        wait(lambda: store.dead_letters(), what="a batch parked as a dead letter")
        before = traces(redis_client, JANE)
        families = {getattr(keys.family_of(P, key), "name", None) for key in before}  # any shard
        assert {"message bucket", "event subset index", "webhook dead letters"} <= families
        assert any("agg:l:" in key for key in before)  # the named links' counts
        unclaimed = sorted(_text(key) for key in redis_client.scan_iter(f"{P}*")
                           if keys.family_of(P, _text(key)) is None)
        assert unclaimed == []

        done = forget(env, JANE.upper())

        assert done.returncode == 0, done.stderr
        assert f"forgot {JANE.lower()}:" in done.stdout
        assert "message records scrubbed: 3," in done.stdout, done.stdout
        assert traces(redis_client, JANE) == []
        assert worker.poll() is None and milter.alive() and redirector.alive()
        # The others' events are intact: all of Bob's, Carol's own message's. Events refer
        # to their message (engage.store.eventforms): those of the message Jane shared with
        # Carol now read as its scrubbed record does, Jane an empty string, no subject.
        assert events_of(redirector, BOB) == bob_before
        carol_after = events_of(redirector, CAROL)
        same = ("event_id", "type", "timestamp", "transmission_id", "ip_address", "campaign_id")
        assert [{name: e[name] for name in same} for e in carol_after] == [
            {name: e[name] for name in same} for e in carol_before]
        for before, after in zip(carol_before, carol_after):
            if "rcpt_to_list" in before:  # the shared message's: as its scrubbed record
                assert after["rcpt_to_list"] == ["", CAROL] and after["subject"] == ""
                assert not any(form in json.dumps(after).lower() for form in forms(JANE))
            else:
                assert after == before
        # Every link of Jane's messages still redirects (the personalised one without her).
        for name in ("m1", "m3", "m5"):
            locations = [http_get(url)[1]["Location"] for url in links[name]]
            assert locations == expected_urls(JANE, forgotten=True), name
            for url in pixels[name]:
                assert http_get(url)[0] == 200
        assert [http_get(url)[1]["Location"] for url in links["m2"]] == expected_urls(BOB)
        assert traces(redis_client, JANE) == []  # the clicks since: anonymous events

        again = forget(env, JANE)
        assert again.returncode == 0 and again.stdout.startswith(f"nothing to forget for {JANE.lower()}")

        # The waiting batches and the replayed dead letters go out once the target
        # answers: without Jane, with the rest.
        target.failing.clear()
        replay = subprocess.run([sys.executable, "-m", "engage.webhooks", "replay", "--all"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
        wait(lambda: not store.pending(hook.id) and {e["rcpt_to"] for e in target.delivered()
                                                     if "rcpt_to" in e} >= {BOB, CAROL},
             what="the webhook queue draining")
        assert worker.poll() is None
        sent = b" ".join(body for status, body in target.bodies if status == 200).decode().lower()
        assert not any(form in sent for form in forms(JANE))
        assert len([e for e in target.delivered() if e.get("rcpt_to") == BOB]) >= len(bob_before)

        # The API call, through gunicorn: Carol this time. Her events include those of the
        # clicks on the shared message since Jane's erasure: rcpt_to_list ["", carol]. Its
        # pixels, fetched again from the same network within a minute, are repeats: counted
        # in repeat_opens, not stored as events (docs/limits.md).
        carols = events_of(redirector, CAROL)
        assert {tuple(e["rcpt_to_list"]) for e in carols if "rcpt_to_list" in e} == {("", CAROL)}
        status, _, body = http_post(f"{redirector.url}/api/v1/recipients/forget",
                                    {"recipient": CAROL}, redirector.api_key)
        assert status == 200 and json.loads(body)["results"]["messages"] == 2
        assert len(carols) > len(carol_before)  # the shared message clicked again since
        assert traces(redis_client, CAROL) == [] and events_of(redirector, CAROL) == []
        assert [http_get(url)[1]["Location"] for url in links["m4"]] == expected_urls(CAROL, forgotten=True)
        assert_no_trace_in_rewritten_aof(redis_client, redis_server, JANE, CAROL)
        assert JANE.lower() not in milter.log_text().lower()
        assert JANE.lower() not in redirector.log_text().lower()
    finally:
        stop_process(worker)
        worker_log.close()
        target.server.shutdown()
        target.server.server_close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def assert_no_trace_in_rewritten_aof(client, server, *addresses: str) -> None:
    """XDEL leaves an entry's bytes in its stream node, and an AOF rewrite with the RDB
    preamble copies nodes raw: the rewritten files must not hold the addresses anywhere.
    LZF compression off, or a listpack's bytes would hide what they hold."""
    client.config_set("rdbcompression", "no")
    client.bgrewriteaof()
    wait(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0
         and client.info("persistence")["aof_rewrite_scheduled"] == 0, what="the AOF rewrite")
    files = [p for p in Path(server.workdir).rglob("*") if p.is_file() and ".aof" in p.name]
    assert files
    raw = b"".join(p.read_bytes() for p in files).lower()
    for address in addresses:
        found = [form for form in forms(address) if form.encode() in raw]
        assert found == [], f"{address} left in the AOF as {found}"


def http_post(url: str, document: dict, key: str) -> tuple[int, Any, bytes]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", parts.path, body=json.dumps(document).encode(),
                           headers={"Authorization": key, "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()
