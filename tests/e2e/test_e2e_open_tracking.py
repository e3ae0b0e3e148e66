"""``[open_tracking]`` per From: domain through the sandbox Postfix and the milter: a domain
set to ``no`` (and its subdomains) gets no open pixel even when X-MSYS-API asks for one,
its links are still tracked; a domain set to ``yes`` gets pixels over a global ``no``;
other domains follow ``[tracking] open_tracking``."""
from __future__ import annotations

import email
import json
from email import policy
from email.message import EmailMessage

TRACK = "http://track.test"


def build(sender: str, subject: str, options: dict | None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"News <{sender}>"
    msg["To"] = "reader@example.net"
    msg["Subject"] = subject
    if options is not None:
        msg["X-MSYS-API"] = json.dumps({"options": options})
    msg.set_content("<html><body><a href='https://shop.example/p'>p</a></body></html>\n",
                    subtype="html")
    return msg.as_bytes(policy=policy.SMTP)


def test_open_tracking_per_sending_domain(start_milter, postfix_sandbox, tmp_path):
    config = tmp_path / "engage.conf"
    config.write_text("[tracking]\nopen_tracking = no\n\n"
                      "[open_tracking]\nexample.de = no\nexample.nl = yes\n")
    milter = start_milter({"ENGAGE_CONFIG": str(config), "ENGAGE_OPEN_TRACKING": None})
    postfix = postfix_sandbox(milter)
    cases = {  # subject: (From, X-MSYS-API options, pixels expected)
        "de-asks": ("news@shop.example.de", {"open_tracking": True}, False),
        "de-plain": ("news@example.de", None, False),
        "nl-plain": ("news@example.nl", None, True),
        "nl-off": ("news@mail.example.nl", {"open_tracking": False}, False),
        "com-plain": ("news@example.com", None, False),
        "com-asks": ("news@example.com", {"open_tracking": True}, True),
    }
    for subject, (sender, options, _) in cases.items():
        assert postfix.send(build(sender, subject, options), "bounces@example.com",
                            ["reader@example.net"]) == {}
    delivered = postfix.wait_delivered(len(cases))
    seen = {}
    for raw in delivered:
        message = email.message_from_bytes(raw, policy=policy.default)
        html = message.get_body(("html",)).get_content()
        assert f"{TRACK}/c/" in html  # click tracking is untouched
        pixels = (f"{TRACK}/i/" in html, f"{TRACK}/o/" in html)
        assert pixels[0] == pixels[1]
        seen[message["Subject"]] = pixels[0]
    assert seen == {subject: pixels for subject, (_, _, pixels) in cases.items()}
    log = milter.log_text()
    assert "open tracking off for shop.example.de (x-msys-api asked for it)" in log
    assert log.count("open tracking off for") == 1
