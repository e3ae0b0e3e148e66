"""``engage doctor --probe ADDRESS``: send one real tracked message through the local Postfix
and check that engage tracked it.

The probe is an HTML message with one link, submitted by SMTP to ``--smtp`` (the local
Postfix, 127.0.0.1:25) with ``X-MSYS-API: {"campaign_id": "engage-doctor-probe"}``. How it
is observed: the milter counts every message it tracks in the hour's sent-metrics hash
(``{p}agg:s:<hour>``, field ``s|<campaign>|<sending domain>``) before Postfix answers 250 to
the message, so the doctor reads that counter for its own campaign and sender domain before
and after: one more means engage rewrote the links and recorded the message. A refusal is
reported with Postfix's own reply. The message really goes to ADDRESS, and counts as one
message sent in the metrics, under campaign engage-doctor-probe.
"""
from __future__ import annotations

import json
import smtplib
import socket
import time
import uuid
from email.message import EmailMessage

import redis

from engage import settings as config
from engage.admin.doctor_findings import ERROR, OK, WARN, Finding, Options
from engage.store import aggregates
from engage.store.redisconn import connect, readable_shards

CAMPAIGN = "engage-doctor-probe"
LINK = "https://example.com/engage-doctor-probe"
# What a refusal's words say about its cause: Postfix's replies when a milter fails (or its
# milter settings are wrong), engage's own when its Redis is away.
CAUSES = ((b"link store unavailable", "engage cannot reach Redis (see the redis findings)"),
          (b"4.3.5", "Postfix's milter settings are wrong (see the postfix findings)"),
          (b"4.7.1", "a milter in smtpd_milters does not answer (see the milter and postfix "
                     "findings)"),
          (b"5.5.0", "a milter in smtpd_milters does not answer (see the milter and postfix "
                     "findings)"))
SETTLE = 5.0  # seconds to wait for the counter after the 250 (it is written before it)


def check_probe(settings: config.Settings, options: Options) -> list[Finding]:
    if not options.probe:
        return []
    sender = options.probe_from or f"engage-doctor@{socket.getfqdn()}"
    domain = sender.rpartition("@")[2].lower()
    if not settings.metrics_retention_days:
        return [Finding(WARN, "probe", "not sent: with [metrics] retention_days = 0 engage "
                        "counts no sent messages, which is how the probe sees that it tracked one")]
    client = connect(settings.redis_url, timeout=options.timeout)
    try:
        try:
            before: int | None = sent(client, settings.key_prefix, domain, time.time())
        except redis.RedisError:
            before = None  # send anyway: what Postfix answers says the most
        queued = submit(options, sender, _message(sender, options.probe))
        if isinstance(queued, Finding):
            return [queued]
        if before is None:
            return [Finding(WARN, "probe", f"Postfix took the probe ({queued}), but Redis could "
                            "not be read before it was sent: whether engage tracked it is not "
                            "known (see the redis findings)")]
        deadline = time.monotonic() + SETTLE
        while sent(client, settings.key_prefix, domain, time.time()) <= before:
            if time.monotonic() > deadline:
                return [_untracked(options, queued)]
            time.sleep(0.1)
    except redis.RedisError as exc:
        return [Finding(ERROR, "probe", f"cannot read the sent counter in Redis ({exc}): "
                        "see the redis findings")]
    finally:
        client.close()
    return [Finding(OK, "probe", f"Postfix took the probe to {options.probe} ({queued}) and "
                    "engage tracked it: its link was rewritten and the message recorded")]


def sent(client: redis.Redis, prefix: str, domain: str, now: float) -> int:
    """The probe campaign's sent count for DOMAIN, this hour and the previous one, over
    every shard (one pipeline)."""
    field = aggregates.sent_field(CAMPAIGN, domain)
    hours = {aggregates.hour_of(now - 3600), aggregates.hour_of(now)}
    pipe = client.pipeline(transaction=False)
    for shard in readable_shards(client, prefix):
        for hour in hours:
            pipe.hget(aggregates.bucket_key(prefix, shard, "s", hour), field)
    return sum(int(count or 0) for count in pipe.execute())


def _message(sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = "engage doctor probe"
    message["Message-ID"] = f"<engage-doctor-{uuid.uuid4().hex}@{sender.rpartition('@')[2]}>"
    message["X-MSYS-API"] = json.dumps({"campaign_id": CAMPAIGN}, allow_nan=False)
    text = f"engage doctor sent this message to check that tracking works: {LINK}\n"
    message.set_content(text)
    message.add_alternative(f"<html><body><p>engage doctor sent this message to check that "
                            f"tracking works: <a href=\"{LINK}\">a tracked link</a>.</p>"
                            "</body></html>\n", subtype="html")
    return message


def submit(options: Options, sender: str, message: EmailMessage) -> str | Finding:
    """Send by SMTP; 'queued as ID' (Postfix's words), or the refusal as a Finding."""
    host, _, port = options.smtp.rpartition(":")
    recipient = options.probe or ""
    try:
        with smtplib.SMTP(host or "127.0.0.1", int(port), timeout=options.timeout * 6) as smtp:
            smtp.ehlo_or_helo_if_needed()
            code, reply = smtp.mail(sender)
            if code < 400:
                code, reply = smtp.rcpt(recipient)
            if code < 400:
                code, reply = smtp.data(message.as_bytes())
            if code >= 400:
                return _refused(options, code, reply)
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        return _refused(options, exc.smtp_code, error if isinstance(error, bytes) else error.encode())
    except (OSError, smtplib.SMTPException) as exc:
        return Finding(ERROR, "probe", f"cannot hand the probe to Postfix at {options.smtp}: {exc}",
                       ("systemctl start postfix", "or give its address: --smtp HOST:PORT"))
    text = reply.decode(errors="replace")
    return text[text.find("queued"):] if "queued" in text else text


def _refused(options: Options, code: int, reply: bytes) -> Finding:
    words = f"{code} {reply.decode(errors='replace')}"
    cause = next((why for marker, why in CAUSES if marker in reply), "Postfix's log says why")
    return Finding(ERROR, "probe", f"Postfix refused the probe to {options.probe}: {words}. "
                   f"Every sender gets the same. Cause: {cause}")


def _untracked(options: Options, queued: str) -> Finding:
    queue_id = queued.rpartition(" ")[2]
    return Finding(ERROR, "probe", f"Postfix took the probe ({queued}) but engage did not track "
                   "it: the message left without tracked links. smtpd_milters does not pass "
                   "mail through engage (see the postfix findings), or engage left the body "
                   "alone (its log says why)",
                   (f"journalctl -u engage-milter | grep {queue_id}",
                    f"postconf{' -c ' + options.postfix_config if options.postfix_config else ''}"
                    " -h smtpd_milters"))
