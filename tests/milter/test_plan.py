"""plan_message as a whole: a message that went through a tracking milter once is not
tracked again (a second milter hop, smtpd + non_smtpd milters), in either link style."""
from dataclasses import replace

import pytest

from engage.settings import Settings
from engage_milter.plan import Envelope, plan_message
from oracle import apply_changes, milter_view

MESSAGE = (b"From: a@shop.example\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n"
           b'<html><body><a href="https://shop.example/p">p</a></body></html>\r\n')


@pytest.mark.parametrize("link_style, opens", [("short", True), ("short", False), ("v1", False)])
def test_a_tracked_message_is_not_tracked_twice(link_style, opens):
    settings = replace(Settings(tracking_url="https://t.example"), link_style=link_style,
                       open_tracking=opens)
    first = plan_message(*milter_view(MESSAGE), Envelope(), settings, "A" * 16)
    assert first.body is not None
    tracked = apply_changes(MESSAGE, first.delete_headers, first.body)
    second = plan_message(*milter_view(tracked), Envelope(), settings, "B" * 16)
    assert second.body is None and second.record is None
    assert "body left alone: message is already tracked" in second.notes


def test_the_log_note_counts_tracked_and_skipped_links():
    message = (b"From: a@shop.example\r\nContent-Type: text/html\r\n\r\n"
               b'<a href="https://shop.example/p">p</a> <a href="mailto:x@shop.example">m</a>\r\n'
               b'<a data-msys-clicktrack="0" href="https://shop.example/q">q</a> <a name="top">t</a>\r\n')
    plan = plan_message(*milter_view(message), Envelope(), Settings(tracking_url="https://t.example"), "A" * 16)
    assert plan.notes[-1] == "links=1 pixels=2 campaign='' skipped=2"
