"""The MIME walk: which parts are body text, as exact byte spans."""
from email import message_from_bytes

from engage_milter import mimewalk


def walk(raw: bytes):
    head, body = raw.split(b"\r\n\r\n", 1)
    parts, notes = mimewalk.text_parts(message_from_bytes(head + b"\r\n\r\n"), body)
    return [(p.subtype, p.charset, p.cte, body[p.start:p.end]) for p in parts], notes


NESTED = (
    b"Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n"
    b"preamble --m not a delimiter\r\n"
    b"--m\r\n"
    b"Content-Type: multipart/related; boundary=\"m2\"\r\n\r\n"
    b"--m2\r\n"
    b"Content-Type: multipart/alternative; boundary=\"m3\"\r\n\r\n"  # outer boundary is a prefix
    b"--m3\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
    b"--m3\r\nContent-Type: text/html; charset=\"ISO-8859-1\"\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>html</p>\r\n"
    b"--m3--\r\n"
    b"--m2\r\nContent-Type: image/png\r\nContent-ID: <i1>\r\n\r\nPNG\r\n"
    b"--m2--\r\n"
    b"--m\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename=\"a.html\"\r\n\r\n<a href=x>\r\n"
    b"--m\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nattached by name\r\n"
    b"--m--\r\nepilogue\r\n"
)


def test_body_parts_of_nested_multiparts_only():
    parts, _ = walk(NESTED)
    assert parts == [
        ("plain", "us-ascii", "7bit", b"plain text"),
        ("html", "iso-8859-1", "quoted-printable", b"<p>html</p>"),
    ]


def test_sealed_and_attached_parts_are_left_alone():
    for ctype in (b"multipart/signed; protocol=\"application/pgp-signature\"; boundary=s",
                  b"multipart/encrypted; boundary=s", b"message/rfc822", b"multipart/report; boundary=s"):
        raw = b"Content-Type: " + ctype + b"\r\n\r\n--s\r\nContent-Type: text/html\r\n\r\n<a href=x>\r\n--s--\r\n"
        parts, notes = walk(raw)
        assert parts == [] and notes, ctype
    raw = b"Content-Type: text/html\r\nContent-Disposition: attachment\r\n\r\n<p>x</p>\r\n"
    assert walk(raw)[0] == []


def test_missing_close_delimiter_runs_to_the_end():
    raw = (b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\nno headers\r\n"
           b"--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n")
    parts, _ = walk(raw)
    assert parts == [("plain", "us-ascii", "7bit", b"no headers"), ("html", "us-ascii", "7bit", b"<p>x</p>\r\n")]


def test_lf_only_bodies():
    raw = b"Content-Type: multipart/alternative; boundary=b\r\n\r\n" + \
        b"--b\nContent-Type: text/plain\n\nline\n--b\nContent-Type: text/html\n\n<p>\n--b--\n"
    parts, _ = walk(raw)
    assert [p[3] for p in parts] == [b"line", b"<p>"]


def test_multipart_without_boundary_is_left_alone():
    parts, notes = walk(b"Content-Type: multipart/alternative\r\n\r\n--x\r\n\r\ny\r\n")
    assert parts == [] and "multipart without boundary left alone" in notes


APPLE_SPLIT = (  # Apple Mail: an HTML body with an inline attachment in the middle
    b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/alternative; boundary=\"Apple-Mail=_A\"\r\n\r\n"
    b"--Apple-Mail=_A\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: text/plain;\r\n\tcharset=us-ascii\r\n\r\n"
    b"Before https://before.example/a\r\n\r\nAfter https://after.example/b\r\n\r\n"
    b"--Apple-Mail=_A\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"Apple-Mail=_B\"\r\n\r\n\r\n"
    b"--Apple-Mail=_B\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: text/html;\r\n\tcharset=us-ascii\r\n\r\n"
    b"<html><head></head><body><div>Before <a href=\"https://before.example/a\">a</a></div></body></html>\r\n"
    b"--Apple-Mail=_B\r\nContent-Disposition: inline;\r\n\tfilename=photo.png\r\nContent-Type: image/png;\r\n"
    b"\tx-unix-mode=0644;\r\n\tname=\"photo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    b"--Apple-Mail=_B\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: text/html;\r\n\tcharset=us-ascii\r\n\r\n"
    b"<html><head></head><body><div>After <a href=\"https://after.example/b\">b</a></div></body></html>\r\n"
    b"--Apple-Mail=_B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nnot HTML: left alone\r\n"
    b"--Apple-Mail=_B--\r\n\r\n--Apple-Mail=_A--\r\n"
)


def test_apple_mail_split_html_parts_are_all_body():
    parts, _ = walk(APPLE_SPLIT)
    assert [(subtype, text[:40]) for subtype, _, _, text in parts] == [
        ("plain", b"Before https://before.example/a\r\n\r\nAfter"),
        ("html", b"<html><head></head><body><div>Before <a "),
        ("html", b"<html><head></head><body><div>After <a h"),
    ]


def test_apple_mail_split_parts_are_tracked_each_with_its_pixels():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from engage.settings import Settings
    from engage_milter.plan import Envelope, plan_message
    from oracle import apply_changes, assert_only_tracking_changed, milter_view

    plan = plan_message(*milter_view(APPLE_SPLIT), Envelope(), Settings(tracking_url="https://t.example"), "K" * 22)
    stored = [link.url for link in plan.template.links]
    assert stored == ["https://before.example/a", "https://after.example/b"]
    assert plan.notes[-1].startswith("links=2 pixels=4 ")
    rewritten = apply_changes(APPLE_SPLIT, plan.delete_headers, plan.body)
    assert_only_tracking_changed(APPLE_SPLIT, rewritten, "https://t.example", stored)
    html_parts = rewritten.split(b"Content-Type: text/html;")[1:]
    for part in html_parts:
        assert part.count(b"https://t.example/c/") == 1
        assert part.count(b'<img src="https://t.example/i/') == 1 and part.count(b'<img src="https://t.example/o/') == 1
