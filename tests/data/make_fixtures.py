#!/usr/bin/env python3
"""Generate the realistic test messages in tests/data/*.eml (CRLF line ends).

Run from anywhere: ``python3 tests/data/make_fixtures.py``. The output is
deterministic (no clock, no randomness), so re-running it must leave ``git diff``
empty; the generated files are committed alongside this script.

Each message imitates what one real client writes: header set and order, boundary
style, charset spelling, transfer encoding, HTML dialect. What each one is for is
said above its function; the expectations live in tests/milter/test_rewrite_fixtures.py.
"""
from __future__ import annotations

import base64
import binascii
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- helpers
def crlf(data: bytes) -> bytes:
    """LF -> CRLF for a whole message built with LF; refuses stray CRs."""
    assert b"\r" not in data, "build messages with LF only"
    return data.replace(b"\n", b"\r\n")


def qp(text: bytes) -> bytes:
    """Quoted-printable as mail clients write it: 76-column lines, '=' soft breaks.

    ``text`` uses LF line ends; the result does too (crlf() converts the message)."""
    return binascii.b2a_qp(text, istext=True)


def b64(data: bytes, width: int = 76) -> bytes:
    text = base64.b64encode(data)
    return b"\n".join(text[i:i + width] for i in range(0, len(text), width)) + b"\n"


def canonical(text: str, charset: str) -> bytes:
    """A text body in canonical form (CRLF) in its charset, for base64 bodies."""
    return text.replace("\n", "\r\n").encode(charset)


def encoded_word(text: str, charset: str) -> str:
    """An RFC 2047 B encoded-word, as Japanese mailers write their headers."""
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset.lower().replace('-', '_'))).decode()}?="


def png(width: int = 24, height: int = 12) -> bytes:
    """A small valid PNG (a blue-ish gradient), for inline images."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 10 % 256, 80 + y, 200)) for x in range(width))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9))
            + chunk(b"IEND", b""))


def pdf() -> bytes:
    """A one-page PDF whose page carries a URI link annotation (must never change)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> /Annots [6 0 R] >>",
        None,  # content stream, below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Annot /Subtype /Link /Rect [72 700 300 720] /Border [0 0 0]"
        b" /A << /S /URI /URI (https://billing.example.com/pay/INV-2023-1147?ref=pdf&src=mail) >> >>",
    ]
    stream = (b"BT /F1 18 Tf 72 760 Td (Invoice INV-2023-1147) Tj ET\n"
              b"BT /F1 11 Tf 72 706 Td (Pay online: https://billing.example.com/pay/INV-2023-1147) Tj ET\n")
    objects[3] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write(name: str, message: bytes) -> None:
    data = crlf(message)
    for number, line in enumerate(data.split(b"\r\n"), 1):
        assert len(line) <= 998, f"{name}: line {number} is {len(line)} octets"
    (HERE / name).write_bytes(data)


# ---------------------------------------------------------------- Outlook
OUTLOOK_REGISTER = "https://events.contoso.example/register?id=4411&src=mail&lang=en-US"
OUTLOOK_DECK = ("https://contoso.sharepoint.com/:p:/r/sites/Finance/Shared%20Documents/"
                "Q4%20Review%202023.pptx?d=w1c2e3f4a5b6c7d8e9f0a1b2c3d4e5f6&csf=1&web=1&e=Xy7AbC")
OUTLOOK_TEAMS = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_NmE2ZTQ1YjMtYzA0Ny00ZDk2LWI5"
                 "ZGMtMGQ2ZWY4YjM1ZTcz%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab"
                 "-2d7cd011db47%22%2c%22Oid%22%3a%22c1b2a3d4-0000-4e5f-8a9b-1c2d3e4f5a6b%22%7d")


def outlook() -> None:
    """Outlook 365 desktop: multipart/alternative, windows-1252 QP, Word HTML with
    <o:p>, MSO conditional comments, and a VML "bulletproof" button whose <a> twin
    sits in <!--[if !mso]><!--> ... <!--<![endif]-->."""
    boundary = "_000_AM0PR07MB4321D5F2A1B0C9E8F7A6AM0PR07MB4321eurp_"
    plain = (
        "Hi all,\n\n"
        "Here\u2019s the agenda for Thursday\u2019s quarterly review \u2013 please have a look "
        "at the deck beforehand:\n"
        f"Q4 Review 2023.pptx<{OUTLOOK_DECK}>\n\n"
        "Registration for the customer day is open: Register now<" + OUTLOOK_REGISTER + ">\n\n"
        "Best regards / Viele Gr\u00fc\u00dfe\n"
        "J\u00f6rg\n\n"
        "J\u00f6rg M\u00fcller\n"
        "Head of Finance Operations\n"
        "Contoso GmbH | Leopoldstra\u00dfe 12 | 80802 M\u00fcnchen\n"
        "Tel. +49 89 1234 5678\n\n"
        "________________________________________________________________________________\n"
        "Microsoft Teams meeting\n"
        "Join on your computer, mobile app or room device\n"
        f"Click here to join the meeting<{OUTLOOK_TEAMS}>\n"
    )
    html = (
        '<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
        'xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" '
        'xmlns="http://www.w3.org/TR/REC-html40">\n'
        "<head>\n"
        '<meta http-equiv="Content-Type" content="text/html; charset=Windows-1252">\n'
        '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">\n'
        "<!--[if !mso]><style>v\\:* {behavior:url(#default#VML);}\n"
        "o\\:* {behavior:url(#default#VML);}\n"
        "w\\:* {behavior:url(#default#VML);}\n"
        ".shape {behavior:url(#default#VML);}\n"
        "</style><![endif]--><style><!--\n"
        "/* Font Definitions */\n"
        "@font-face\n"
        '\t{font-family:"Cambria Math";\n'
        "\tpanose-1:2 4 5 3 5 4 6 3 2 4;}\n"
        "@font-face\n"
        "\t{font-family:Calibri;\n"
        "\tpanose-1:2 15 5 2 2 2 4 3 2 4;}\n"
        "/* Style Definitions */\n"
        "p.MsoNormal, li.MsoNormal, div.MsoNormal\n"
        "\t{margin:0cm;\n"
        "\tfont-size:11.0pt;\n"
        '\tfont-family:"Calibri",sans-serif;}\n'
        "a:link, span.MsoHyperlink\n"
        "\t{mso-style-priority:99;\n"
        "\tcolor:#0563C1;\n"
        "\ttext-decoration:underline;}\n"
        "span.EmailStyle17\n"
        "\t{mso-style-type:personal-compose;\n"
        '\tfont-family:"Calibri",sans-serif;\n'
        "\tcolor:windowtext;}\n"
        ".MsoChpDefault\n"
        "\t{mso-style-type:export-only;\n"
        '\tfont-family:"Calibri",sans-serif;}\n'
        "@page WordSection1\n"
        "\t{size:612.0pt 792.0pt;\n"
        "\tmargin:72.0pt 72.0pt 72.0pt 72.0pt;}\n"
        "div.WordSection1\n"
        "\t{page:WordSection1;}\n"
        "--></style><!--[if gte mso 9]><xml>\n"
        '<o:shapedefaults v:ext="edit" spidmax="1026" />\n'
        "</xml><![endif]--><!--[if gte mso 9]><xml>\n"
        '<o:shapelayout v:ext="edit">\n'
        '<o:idmap v:ext="edit" data="1" />\n'
        "</o:shapelayout></xml><![endif]-->\n"
        "</head>\n"
        '<body lang="EN-US" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">\n'
        '<div class="WordSection1">\n'
        '<p class="MsoNormal"><span lang="DE">Hi all,<o:p></o:p></span></p>\n'
        '<p class="MsoNormal"><span lang="DE"><o:p>&nbsp;</o:p></span></p>\n'
        '<p class="MsoNormal">Here\u2019s the agenda for Thursday\u2019s quarterly review \u2013 please have a '
        "look at the deck beforehand:<o:p></o:p></p>\n"
        f'<p class="MsoNormal"><a href="{OUTLOOK_DECK.replace("&", "&amp;")}">Q4 Review 2023.pptx</a>'
        "<o:p></o:p></p>\n"
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'
        '<p class="MsoNormal">Registration for the customer day is open:<o:p></o:p></p>\n'
        "<div>\n"
        "<!--[if mso]>\n"
        '<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" xmlns:w="urn:schemas-microsoft-com:office:word" '
        f'href="{OUTLOOK_REGISTER.replace("&", "&amp;")}" style="height:40px;v-text-anchor:middle;width:220px;" '
        'arcsize="10%" strokecolor="#1e3650" fill="t">\n'
        '<v:fill type="tile" color="#0078d4" />\n'
        "<w:anchorlock/>\n"
        '<center style="color:#ffffff;font-family:sans-serif;font-size:13px;font-weight:bold;">Register now'
        "</center>\n"
        "</v:roundrect>\n"
        "<![endif]-->\n"
        "<!--[if !mso]><!-->\n"
        f'<a href="{OUTLOOK_REGISTER.replace("&", "&amp;")}" data-msys-linkname="register-button" '
        'style="background-color:#0078d4;border:1px solid #1e3650;border-radius:4px;color:#ffffff;'
        "display:inline-block;font-family:sans-serif;font-size:13px;font-weight:bold;line-height:40px;"
        'text-align:center;text-decoration:none;width:220px;-webkit-text-size-adjust:none;">Register now</a>\n'
        "<!--<![endif]-->\n"
        "</div>\n"
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'
        '<p class="MsoNormal"><span lang="DE">Best regards / Viele Gr\u00fc\u00dfe<o:p></o:p></span></p>\n'
        '<p class="MsoNormal"><span lang="DE">J\u00f6rg<o:p></o:p></span></p>\n'
        '<p class="MsoNormal"><span lang="DE"><o:p>&nbsp;</o:p></span></p>\n'
        '<p class="MsoNormal"><b><span lang="DE" style="font-size:10.0pt">J\u00f6rg M\u00fcller</span></b>'
        '<span lang="DE" style="font-size:10.0pt"><br>\n'
        "Head of Finance Operations<br>\n"
        "Contoso GmbH | Leopoldstra\u00dfe 12 | 80802 M\u00fcnchen<br>\n"
        'Tel. <a href="tel:+498912345678"><span style="color:#0563C1">+49 89 1234 5678</span></a> | '
        '<a href="mailto:joerg.mueller@contoso.example"><span style="color:#0563C1">'
        "joerg.mueller@contoso.example</span></a><o:p></o:p></span></p>\n"
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'
        '<div style="margin-bottom:.25in;overflow:hidden">\n'
        '<p class="MsoNormal"><span style="color:#5F5F5F">___________________________________________'
        "_____________________________________</span><o:p></o:p></p>\n"
        "</div>\n"
        '<p class="MsoNormal" style="margin-bottom:3.0pt"><b><span style="font-size:18.0pt;'
        'font-family:&quot;Segoe UI&quot;,sans-serif;color:#252424">Microsoft Teams meeting</span></b>'
        "<o:p></o:p></p>\n"
        f'<p class="MsoNormal"><span style="font-size:10.5pt"><a href="{OUTLOOK_TEAMS}" target="_blank">'
        '<span style="font-family:&quot;Segoe UI Semibold&quot;,sans-serif;color:#6264A7">Click here to join '
        "the meeting</span></a><o:p></o:p></span></p>\n"
        "</div>\n"
        "</body>\n"
        "</html>\n"
    )
    message = (
        "Received: from AM0PR07MB4321.eurprd07.prod.outlook.com (2603:10a6:208:1c0::14)\n"
        " by AM0PR07MB4321.eurprd07.prod.outlook.com with HTTPS; Tue, 14 Nov 2023 09:12:45\n"
        " +0000\n"
        "From: =?iso-8859-1?Q?M=FCller=2C_J=F6rg?= <joerg.mueller@contoso.example>\n"
        "To: Finance Team <finance@contoso.example>\n"
        "Subject: =?windows-1252?Q?Quarterly_review_=96_agenda_and_registration?=\n"
        "Thread-Topic: =?windows-1252?Q?Quarterly_review_=96_agenda_and_registration?=\n"
        "Thread-Index: AdoW2cGm0f8c3fQyTl2sJ1kZ4xYq0g==\n"
        "Date: Tue, 14 Nov 2023 09:12:44 +0000\n"
        "Message-ID:\n"
        " <AM0PR07MB4321D5F2A1B0C9E8F7A6AM0PR07MB4321@AM0PR07MB4321.eurprd07.prod.outlook.com>\n"
        "Accept-Language: en-US, de-DE\n"
        "Content-Language: en-US\n"
        "X-MS-Has-Attach:\n"
        "X-MS-TNEF-Correlator:\n"
        'X-MSYS-API: {"campaign_id": "q4-review", "tags": ["internal"],\n'
        ' "options": {"open_tracking": true, "click_tracking": true}}\n'
        "Content-Type: multipart/alternative;\n"
        f'\tboundary="{boundary}"\n'
        "MIME-Version: 1.0\n"
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="windows-1252"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii")
    message += qp(plain.encode("cp1252")) + b"\n"
    message += (
        f"--{boundary}\n"
        'Content-Type: text/html; charset="windows-1252"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii")
    message += qp(html.encode("cp1252")) + b"\n"
    message += f"--{boundary}--\n".encode("ascii")
    write("outlook_windows1252_qp.eml", message)


# ---------------------------------------------------------------- Gmail
GMAIL_MAPS = ("https://www.google.com/maps/place/Englischer+Garten/@48.1642335,11.6055165,15z/"
              "data=!4m6!3m5!1s0x479e75f9a38c5fd9:0x10cb84a7db1987d!8m2!3d48.1642335!4d11.6055165"
              "!16zL20vMDJ4ZzNu?entry=ttu")
GMAIL_PHOTOS = "https://photos.app.goo.gl/7XqkV2mR9pLw3sTn8"
GMAIL_DOC = ("https://docs.google.com/document/d/1aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789AbCdEfGh/"
             "edit?usp=sharing&resourcekey=0-AbCdEfGhIjKlMnOpQrStUv")


def gmail() -> None:
    """Gmail web: multipart/alternative, UTF-8 QP in both parts, <div dir="ltr">,
    no <html>/<body> tags, long hrefs soft-broken by QP, a quoted reply."""
    boundary = "0000000000004e6a2b060a3b1c2d"
    plain = (
        "Hi Ben,\n\n"
        "here are the photos from the weekend: " + GMAIL_PHOTOS + "\n"
        "We met here, in case you want to go again:\n" + GMAIL_MAPS + "\n\n"
        "And the packing list is in the doc: " + GMAIL_DOC + "\n\n"
        "Liebe Gr\u00fc\u00dfe,\nAnna\n\n"
        "On Mon, 13 Nov 2023 at 21:14, Ben Rivera <ben@example.org> wrote:\n\n"
        "> Did you upload the pictures yet? \U0001F4F7\n"
        ">\n"
    )
    html = (
        '<div dir="ltr">Hi Ben,<div><br></div><div>here are the photos from the weekend:\u00a0'
        f'<a href="{GMAIL_PHOTOS}">{GMAIL_PHOTOS}</a></div><div>We met here, in case you want to go '
        f'again:</div><div><a href="{GMAIL_MAPS}">Englischer Garten</a></div><div><br></div><div>And the '
        f'packing list is in the doc: <a href="{GMAIL_DOC.replace("&", "&amp;")}" target="_blank">Packing '
        "list</a></div><div><br></div><div>Liebe Gr\u00fc\u00dfe,</div><div>Anna</div></div><br><div "
        'class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 13 Nov 2023 at 21:14, Ben Rivera '
        '&lt;<a href="mailto:ben@example.org">ben@example.org</a>&gt; wrote:<br></div><blockquote '
        'class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);'
        'padding-left:1ex"><div dir="ltr">Did you upload the pictures yet? \U0001F4F7</div>\n'
        "</blockquote></div>\n"
    )
    message = (
        "MIME-Version: 1.0\n"
        "Date: Wed, 15 Nov 2023 18:03:27 +0100\n"
        "Message-ID: <CAH+w=7YkQ3nV5rT0uL9pZx2mWc4bD8eF1gH6jK0sA3oP_qR7tA@mail.gmail.com>\n"
        "Subject: Re: Photos from the weekend\n"
        "From: Anna Schmidt <anna.schmidt@gmail.example>\n"
        "To: Ben Rivera <ben@example.org>\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="UTF-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii")
    message += qp(plain.encode("utf-8")) + b"\n"
    message += (
        f"--{boundary}\n"
        'Content-Type: text/html; charset="UTF-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii")
    message += qp(html.encode("utf-8")) + b"\n"
    message += f"--{boundary}--\n".encode("ascii")
    write("gmail_utf8_qp.eml", message)


# ---------------------------------------------------------------- Apple Mail
APPLE_CAFE = "https://maps.apple.com/?address=Hauptstra%C3%9Fe%2012,%2010827%20Berlin&ll=52.4875,13.3504&q=Caf%C3%A9"
APPLE_MENU = "https://www.cafe-example.de/menu/lunch?week=46"


def applemail() -> None:
    """Apple Mail 16: multipart/alternative of text/plain (7bit us-ascii) and a
    multipart/related holding text/html (QP us-ascii) plus an inline PNG by cid."""
    outer = "Apple-Mail=_9B3D7E8A-4C21-4F0B-9D6E-2A1B3C4D5E6F"
    inner = "Apple-Mail=_1F2E3D4C-5B6A-4978-8695-A4B3C2D1E0F9"
    cid = "5E6F7A8B-9C0D-4E1F-A2B3-C4D5E6F7A8B9"
    plain = (
        "Hi Dana,\n\n"
        "Lunch on Friday? The place I mentioned is here:\n"
        f"{APPLE_CAFE}\n\n"
        f"Menu: {APPLE_MENU}\n\n"
        "\n\n"
        "See you,\nChris\n"
    )
    html = (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=us-ascii"></head>'
        '<body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">'
        'Hi Dana,<div><br></div><div>Lunch on Friday? The place I mentioned is <a href="'
        + APPLE_CAFE.replace("&", "&amp;") + '">here</a>.</div><div><br></div><div>Menu: <a href="'
        + APPLE_MENU + '">' + APPLE_MENU + '</a></div><div><br></div><div><img apple-inline="yes" '
        'id="A1B2C3D4-E5F6-4789-9ABC-DEF012345678" src="cid:' + cid + '" width="240" height="120"'
        ' alt="map"></div><div><br></div><div>See you,</div><div>Chris</div></body></html>'
    )
    message = (
        "From: Chris Doe <chris.doe@icloud.example>\n"
        "Content-Type: multipart/alternative;\n"
        f'\tboundary="{outer}"\n'
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.200.91.1.1\\))\n"
        "Subject: Lunch on Friday?\n"
        "Message-Id: <0B1C2D3E-4F50-4617-8293-A4B5C6D7E8F9@icloud.example>\n"
        "Date: Thu, 16 Nov 2023 11:42:03 +0100\n"
        "To: Dana Lee <dana.lee@example.net>\n"
        "X-Mailer: Apple Mail (2.3774.200.91.1.1)\n"
        "\n"
        "\n"
        f"--{outer}\n"
        "Content-Transfer-Encoding: 7bit\n"
        "Content-Type: text/plain;\n"
        "\tcharset=us-ascii\n"
        "\n"
        f"{plain}"
        f"--{outer}\n"
        "Content-Type: multipart/related;\n"
        '\ttype="text/html";\n'
        f'\tboundary="{inner}"\n'
        "\n"
        "\n"
        f"--{inner}\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "Content-Type: text/html;\n"
        "\tcharset=us-ascii\n"
        "\n"
    ).encode("ascii")
    message += qp(html.encode("ascii")) + b"\n"
    message += (
        f"--{inner}\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: inline;\n"
        "\tfilename=map.png\n"
        "Content-Type: image/png;\n"
        "\tx-unix-mode=0644;\n"
        '\tname="map.png"\n'
        f"Content-Id: <{cid}>\n"
        "\n"
    ).encode("ascii")
    message += b64(png()) + b"\n"
    message += f"--{inner}--\n\n--{outer}--\n".encode("ascii")
    write("applemail_related_inline_image.eml", message)


# ---------------------------------------------------------------- newsletter
NEWS = "https://news.example.com"
NEWS_CAMPAIGN = "utm_source=newsletter&utm_medium=email&utm_campaign=nov-digest"
NEWS_ARTICLES = 65
NEWS_NAMED = range(0, NEWS_ARTICLES, 3)  # every third article carries data-msys-linkname
NEWS_LONG_OK = NEWS + "/r?d=" + "a" * (4096 - len(NEWS + "/r?d="))  # exactly 4096: tracked
NEWS_LONG_KO = NEWS + "/r?d=" + "b" * (4097 - len(NEWS + "/r?d="))  # 4097: left alone


def news_article(i: int) -> str:
    """Article i's destination URL (decoded; the HTML writes '&' as '&amp;')."""
    return f"{NEWS}/2023/11/story-{i:03d}?{NEWS_CAMPAIGN}&pos={i}"


def news_image(i: int) -> str:
    return f"https://cdn.news.example.com/img/2023/11/story-{i:03d}-600x300.jpg"


def newsletter_html() -> str:
    """About 60 KB of table-layout HTML with ~150 links of every kind."""
    rows = []
    for i in range(NEWS_ARTICLES):
        name = f' data-msys-linkname="article-{i:03d}"' if i in NEWS_NAMED else ""
        href = news_article(i).replace("&", "&amp;")
        rows.append(
            '<tr>\n<td class="mcnTextContent" valign="top" style="padding:9px 18px;">\n'
            f'<a href="{href}" target="_blank"><img align="left" alt="" src="{news_image(i)}" '
            'width="120" style="max-width:120px;padding-right:12px;" class="mcnImage"></a>\n'
            f'<h3 style="margin:0;font-size:18px;"><a href="{href}"{name} target="_blank" '
            f'style="color:#007C89;">Story number {i}: '
            "what happened this week</a></h3>\n"
            f"Lorem ipsum dolor sit amet, consectetur adipiscing elit {i}.\n</td>\n</tr>\n"
        )
        if i == 40:
            rows.append(
                "<!-- removed for this issue:\n"
                '<tr><td><a href="https://old.news.example.com/2022/archive">Old archive</a></td></tr>\n'
                "-->\n"
            )
        if i == 60:
            rows.append(
                '<tr><td class="mcnTextContent" style="padding:9px 18px;">\n'
                "Merge tags in this newsletter are written "
                "{{opening_double_curly()}}like_this{{closing_double_curly()}}; reply with "
                "{{opening_double_curly()}}first_name{{closing_double_curly()}} to be greeted by name.\n"
                "</td></tr>\n"
            )
        if i == 50:
            rows.append(
                '<tr><td align="center" style="padding:18px;">\n'
                '<img src="https://cdn.news.example.com/img/2023/11/map.png" width="300" height="150" '
                'usemap="#regions" alt="Regions" style="border:0;">\n'
                '<map name="regions">\n'
                '<area shape="rect" coords="0,0,150,150" href="' + NEWS + '/regions/north?' +
                NEWS_CAMPAIGN.replace("&", "&amp;") + '" alt="North">\n'
                '<area shape="rect" coords="150,0,300,150" href="' + NEWS + '/regions/south" alt="South" '
                'data-msys-linkname="region-south">\n'
                '<area shape="default" nohref alt="">\n'
                "</map>\n</td></tr>\n"
            )
    special = (
        '<tr><td class="mcnTextContent" style="padding:9px 18px;font-size:14px;">\n'
        f'<A HREF="{NEWS}/events/upcoming" TARGET="_blank" STYLE="color:#007C89;">UPCOMING EVENTS</A> |\n'
        f"<a href='{NEWS}/podcast/episode-47' target='_blank'>Listen to episode 47</a> |\n"
        f"<a href={NEWS}/about target=_blank>About us</a> |\n"
        f'<a href="{NEWS}/%C3%BCber-uns" data-msys-linkname="\u00dcber uns">\u00dcber uns</a> |\n'
        f'<a href="{NEWS}/jobs" data-msys-linkname="'
        + "careers-" + "x" * 70 + '">We are hiring</a>\n'
        "</td></tr>\n"
        '<tr><td class="mcnTextContent" style="padding:9px 18px;font-size:14px;">\n'
        '<a href="mailto:editor@news.example.com?subject=Feedback%20on%20the%20digest">Write to the editor</a> |\n'
        '<a href="tel:+1-555-0100">Call us</a> |\n'
        '<a href="#top">Back to top</a> |\n'
        '<a href="/preferences/manage">Preferences</a> |\n'
        '<a href="javascript:void(0)" onclick="return false">Print</a> |\n'
        '<a name="bottom"></a>\n'
        "</td></tr>\n"
        '<tr><td style="padding:9px 18px;font-size:11px;word-break:break-all;">\n'
        f'<a href="{NEWS_LONG_OK}">Full report (long link)</a><br>\n'
        f'<a href="{NEWS_LONG_KO}">Full report (too long to track)</a>\n'
        "</td></tr>\n"
    )
    footer = (
        '<tr><td class="mcnTextContent" valign="top" style="padding:18px;color:#656565;'
        'font-family:Helvetica;font-size:12px;line-height:150%;text-align:center;">\n'
        '<a href="https://www.facebook.com/newsexample" target="_blank"><img src="https://cdn.news.example.com/'
        'icons/facebook.png" alt="Facebook" width="24" height="24"></a>\n'
        '<a href="https://twitter.com/newsexample" target="_blank"><img src="https://cdn.news.example.com/'
        'icons/twitter.png" alt="Twitter" width="24" height="24"></a>\n'
        '<a href="https://www.instagram.com/newsexample/" target="_blank"><img src="https://cdn.news.example.com/'
        'icons/instagram.png" alt="Instagram" width="24" height="24"></a>\n'
        "<br><em>Copyright &copy; 2023 News Example Inc., All rights reserved.</em><br>\n"
        "You are receiving this email because you opted in via our website.<br>\n"
        "<strong>Our mailing address is:</strong><br>\n"
        "News Example Inc. &middot; 123 Main St &middot; Springfield, OR 97477 &middot; USA<br>\n"
        f'Want to change how you receive these emails?<br>You can <a href="{NEWS}/profile?u=7f3a9c&amp;'
        'id=2b81d4e6f0">update your preferences</a> or <a href="' + NEWS + '/unsubscribe?u=7f3a9c&amp;'
        'id=2b81d4e6f0&amp;e=5c1d2e3f4a" data-msys-clicktrack="0">unsubscribe from this list</a>.\n'
        "</td></tr>\n"
    )
    head = (
        '<!doctype html>\n<html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office">\n'
        "<head>\n"
        '<!--[if gte mso 15]><xml><o:OfficeDocumentSettings><o:AllowPNG/><o:PixelsPerInch>96'
        "</o:PixelsPerInch></o:OfficeDocumentSettings></xml><![endif]-->\n"
        '<meta charset="UTF-8">\n<meta http-equiv="X-UA-Compatible" content="IE=edge">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>The Weekly Digest \u2013 November</title>\n"
        '<style type="text/css">\n'
        "p{margin:10px 0;padding:0;}table{border-collapse:collapse;}h1,h2,h3,h4,h5,h6{display:block;"
        "margin:0;padding:0;}img,a img{border:0;height:auto;outline:none;text-decoration:none;}\n"
        "body,#bodyTable,#bodyCell{height:100%;margin:0;padding:0;width:100%;}\n"
        ".mcnPreviewText{display:none !important;}\n"
        "#outlook a{padding:0;}\n"
        "a.footer{background:url(https://cdn.news.example.com/img/bg.png) repeat-x;}\n"
        "@media only screen and (max-width:480px){body,table,td,p,a,li,blockquote{-webkit-text-size-adjust:"
        "none !important;}body{width:100% !important;min-width:100% !important;}}\n"
        "</style>\n"
        "</head>\n"
    )
    body = (
        '<body leftmargin="0" marginwidth="0" topmargin="0" marginheight="0" offset="0" '
        'style="height:100%;margin:0;padding:0;width:100%;background-color:#FAFAFA;">\n'
        '<!--*|IF:MC_PREVIEW_TEXT|*-->\n'
        '<!--[if !gte mso 9]><!----><span class="mcnPreviewText" style="display:none;font-size:0px;'
        'line-height:0px;max-height:0px;max-width:0px;opacity:0;overflow:hidden;visibility:hidden;">'
        "Twelve stories, one podcast and a map.</span><!--<![endif]-->\n"
        "<!--*|END:IF|*-->\n"
        '<center>\n<table align="center" border="0" cellpadding="0" cellspacing="0" height="100%" '
        'width="100%" id="bodyTable">\n'
        '<tr><td align="center" valign="top" id="bodyCell"><a name="top"></a>\n'
        '<table border="0" cellpadding="0" cellspacing="0" width="100%" class="templateContainer" '
        'style="max-width:600px !important;">\n'
        '<tr><td valign="top" style="padding:9px 18px;font-size:11px;">\n'
        f'<a href="{NEWS}/view/nov-digest?e=5c1d2e3f4a" data-smtpd-no-track target="_blank">View this email in '
        "your browser</a>\n</td></tr>\n"
        + "".join(rows) + special + footer +
        "</table>\n</td></tr>\n</table>\n</center>\n"
        "</body>\n</html>\n"
    )
    return head + body


NEWS_TEXT_LINKS = [
    f"{NEWS}/view/nov-digest?e=5c1d2e3f4a",
    news_article(0),
    news_article(1),
    news_article(2),
    f"{NEWS}/unsubscribe?u=7f3a9c&id=2b81d4e6f0&e=5c1d2e3f4a",
]


def newsletter_text() -> str:
    return (
        "** The Weekly Digest - November\n"
        "------------------------------------------------------------\n"
        f"View this email in your browser ({NEWS_TEXT_LINKS[0]})\n\n"
        f"Story number 0: what happened this week ({NEWS_TEXT_LINKS[1]})\n"
        f"Story number 1: what happened this week ({NEWS_TEXT_LINKS[2]})\n"
        f"Story number 2: what happened this week ({NEWS_TEXT_LINKS[3]})\n\n"
        "Reply with {{opening_double_curly()}}first_name{{closing_double_curly()}} to be greeted by name.\n\n"
        "Write to the editor: mailto:editor@news.example.com\n\n"
        "============================================================\n"
        "Copyright (C) 2023 News Example Inc., All rights reserved.\n"
        f"unsubscribe from this list ({NEWS_TEXT_LINKS[4]})\n"
    )


def newsletter(variant: str) -> None:
    """A Mailchimp-style campaign: multipart/alternative, UTF-8, the HTML part about
    60 KB with ~150 links; ``qp`` or ``base64`` for the HTML part's encoding."""
    boundary = "_----------=_MCPart_1847362950"
    message = (
        "Return-Path: <bounce-mc.us21_1234567.987654-editor=news.example.com@mail1.suw21.mcdlv.example>\n"
        "Received: from mail1.suw21.mcdlv.example (mail1.suw21.mcdlv.example [198.51.100.21])\n"
        "\tby mx.example.org (Postfix) with ESMTPS id 4SXq2Z1v0Qz9sWQ\n"
        "\tfor <reader@example.org>; Thu, 16 Nov 2023 14:00:07 +0000 (UTC)\n"
        "Subject: =?utf-8?Q?The=20Weekly=20Digest=20=E2=80=93=20November?=\n"
        "From: =?utf-8?Q?News=20Example?= <editor@news.example.com>\n"
        "Reply-To: News Example <editor@news.example.com>\n"
        "To: <reader@example.org>\n"
        "Date: Thu, 16 Nov 2023 14:00:03 +0000\n"
        "Message-ID: <2b81d4e6f0.5c1d2e3f4a.20231116140003.1a2b3c4d5e.9f8e7d6c@mail1.suw21.mcdlv.example>\n"
        "List-ID: 7f3a9c2b81d4e6f0mc list <7f3a9c2b81d4e6f0.1234567.list-id.mcsv.example>\n"
        f"List-Unsubscribe: <{NEWS}/unsubscribe?u=7f3a9c&id=2b81d4e6f0&e=5c1d2e3f4a&c=9f8e7d6c>,\n"
        " <mailto:unsubscribe-mc.us21_7f3a9c.2b81d4e6f0-reader=example.org@unsub.news.example.com>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"
        "X-MSYS-API: {\"campaign_id\": \"nov-digest\", \"metadata\": {\"list\": \"weekly\", \"edition\": 47},\n"
        " \"tags\": [\"newsletter\", \"digest\"]}\n"
        "X-MSYS-API: {\"campaign_id\": \"ignored-second-header\"}\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n'
        "\n"
        "This is a multi-part message in MIME format\n"
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="utf-8"; format="fixed"\n'
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii")
    message += qp(newsletter_text().encode("utf-8")) + b"\n"
    html = newsletter_html()
    if variant == "qp":
        message += (f"--{boundary}\n"
                    'Content-Type: text/html; charset="utf-8"\n'
                    "Content-Transfer-Encoding: quoted-printable\n\n").encode("ascii")
        message += qp(html.encode("utf-8")) + b"\n"
    else:
        message += (f"--{boundary}\n"
                    'Content-Type: text/html; charset="utf-8"\n'
                    "Content-Transfer-Encoding: base64\n\n").encode("ascii")
        message += b64(canonical(html, "utf-8")) + b"\n"
    message += f"--{boundary}--\n".encode("ascii")
    write(f"newsletter_{variant}.eml", message)


# ---------------------------------------------------------------- 8-bit ISO-8859-1
LATIN1_LINKS = [
    "https://www.hotel-exemple.fr/reservation?chambre=double&nuits=2",
    "https://www.hotel-exemple.fr/offres/%C3%A9t%C3%A9-2024",
]


def latin1_8bit() -> None:
    """A French hotel's mailing tool: single-part text/html, ISO-8859-1, 8bit."""
    html = (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">\n'
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">\n'
        "<title>Votre s\u00e9jour \u00e0 l'H\u00f4tel Exemple</title>\n"
        "</head>\n"
        '<body bgcolor="#ffffff" text="#333333">\n'
        "<p>Ch\u00e8re Madame, cher Monsieur,</p>\n"
        "<p>Nous avons le plaisir de vous proposer une r\u00e9duction de 15&nbsp;% sur votre prochain "
        "s\u00e9jour. Les chambres donnent sur la for\u00eat ; le petit-d\u00e9jeuner est servi "
        "jusqu'\u00e0 10&nbsp;h.</p>\n"
        f'<p><a href="{LATIN1_LINKS[0].replace("&", "&amp;")}" data-msys-linkname="R\u00e9server">'
        "R\u00e9server maintenant</a></p>\n"
        f'<p>D\u00e9couvrez aussi nos <a href="{LATIN1_LINKS[1]}">offres d\'\u00e9t\u00e9</a>.</p>\n'
        "<p>Bien cordialement,<br>\nL'\u00e9quipe de l'H\u00f4tel Exemple<br>\n"
        '<a href="mailto:r\u00e9ception@hotel-exemple.fr">r\u00e9ception@hotel-exemple.fr</a></p>\n'
        "</body>\n</html>\n"
    )
    message = (
        "From: =?ISO-8859-1?Q?H=F4tel_Exemple?= <contact@hotel-exemple.fr>\n"
        "To: client@example.org\n"
        "Subject: =?ISO-8859-1?Q?Votre_s=E9jour_=E0_l'H=F4tel_Exemple?=\n"
        "Date: Fri, 17 Nov 2023 08:30:00 +0100\n"
        "Message-ID: <20231117083000.4F2A1@hotel-exemple.fr>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/html; charset=ISO-8859-1\n"
        "Content-Transfer-Encoding: 8bit\n"
        "X-Mailer: PHPMailer 6.8.0 (https://github.com/PHPMailer/PHPMailer)\n"
        "\n"
    ).encode("ascii") + html.encode("iso-8859-1")
    write("latin1_8bit_html.eml", message)


# ---------------------------------------------------------------- ISO-2022-JP
JP_LINKS = [
    "https://shop.example.jp/campaign/winter?utm_source=mail&utm_medium=email",
    "https://shop.example.jp/item/12345",
]


def jis(text: str) -> bytes:
    """ISO-2022-JP line by line, each line back in ASCII at its end (RFC 1468)."""
    return b"\n".join(line.encode("iso2022_jp") for line in text.split("\n"))


def iso2022jp() -> None:
    """A Japanese shop's mail: multipart/alternative, text/plain and text/html both
    ISO-2022-JP in 7bit, as Japanese mailers still send."""
    boundary = "----=_Part_20231118_1029384756.1700270000000"
    plain = (
        "\u5c71\u7530\u69d8\n\n"
        "\u3044\u3064\u3082\u3054\u5229\u7528\u3044\u305f\u3060\u304d\u3042\u308a\u304c\u3068\u3046\u3054\u3056"
        "\u3044\u307e\u3059\u3002\n"
        "\u51ac\u306e\u30ad\u30e3\u30f3\u30da\u30fc\u30f3\u3092\u958b\u50ac\u4e2d\u3067\u3059\u3002\n"
        f"\u8a73\u3057\u304f\u306f\u3053\u3061\u3089\uff1a {JP_LINKS[0]}\n"
        f"\u304a\u3059\u3059\u3081\u5546\u54c1\uff1a{JP_LINKS[1]} \uff08\u9650\u5b9a\uff09\n\n"
        "\u3054\u4e0d\u660e\u306a\u70b9\u306f support@shop.example.jp \u307e\u3067\u3002\n"
    )
    html = (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html; charset=ISO-2022-JP">\n'
        "</head>\n<body>\n"
        "<p>\u5c71\u7530\u69d8</p>\n"
        "<p>\u3044\u3064\u3082\u3054\u5229\u7528\u3044\u305f\u3060\u304d\u3042\u308a\u304c\u3068\u3046\u3054"
        "\u3056\u3044\u307e\u3059\u3002</p>\n"
        f'<p><a href="{JP_LINKS[0].replace("&", "&amp;")}" data-msys-linkname="\u51ac\u30ad\u30e3\u30f3'
        '\u30da\u30fc\u30f3">\u51ac\u306e\u30ad\u30e3\u30f3\u30da\u30fc\u30f3\u3092\u958b\u50ac\u4e2d\u3067'
        "\u3059</a></p>\n"
        f'<p>\u304a\u3059\u3059\u3081\uff1a<a href="{JP_LINKS[1]}">\u6e29\u304b\u3044\u30bb\u30fc\u30bf'
        "\u30fc</a></p>\n"
        '<p><a href="mailto:support@shop.example.jp">\u304a\u554f\u3044\u5408\u308f\u305b</a></p>\n'
        "</body>\n</html>\n"
    )
    message = (
        "From: " + encoded_word("\u30a8\u30b0\u30b6\u30f3\u30d7\u30eb\u30b7\u30e7\u30c3\u30d7", "ISO-2022-JP")
        + " <info@shop.example.jp>\n"
        "To: yamada@example.jp\n"
        "Subject: " + encoded_word("\u51ac\u306e\u30ad\u30e3\u30f3\u30da\u30fc\u30f3", "ISO-2022-JP") + "\n"
        "Date: Sat, 18 Nov 2023 10:29:38 +0900\n"
        "Message-ID: <20231118102938.1029384756@shop.example.jp>\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
    ).encode("ascii") + jis(plain) + (
        f"\n--{boundary}\n"
        "Content-Type: text/html; charset=ISO-2022-JP\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
    ).encode("ascii") + jis(html) + f"\n--{boundary}--\n".encode("ascii")
    write("iso2022jp_alternative.eml", message)


# ---------------------------------------------------------------- Shift_JIS base64
SJIS_LINKS = [
    "https://www.example.co.jp/news/2023/11/?from=mail",
    "https://www.example.co.jp/software/download?ver=5.2",
]


def shiftjis() -> None:
    """An old Windows mailer's HTML newsletter: single-part, Shift_JIS, base64.
    The text holds kanji whose second byte is 0x5C ('\\') or ASCII letters."""
    html = (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">\n'
        "<title>\u304a\u77e5\u3089\u305b</title>\n"
        "</head>\n"
        '<body bgcolor="#FFFFFF">\n'
        "<p>\u5e73\u7d20\u3088\u308a\u5f0a\u793e\u88fd\u54c1\u3092\u3054\u5229\u7528\u3044\u305f\u3060\u304d"
        "\u3001\u8aa0\u306b\u3042\u308a\u304c\u3068\u3046\u3054\u3056\u3044\u307e\u3059\u3002</p>\n"
        f'<p>\u6700\u65b0\u60c5\u5831\uff1a<a href="{SJIS_LINKS[0]}" title="\u8868\u793a">'
        "\u30cb\u30e5\u30fc\u30b9\u4e00\u89a7\u3092\u8868\u793a</a></p>\n"
        f'<p><a href="{SJIS_LINKS[1]}" data-msys-linkname="\u30bd\u30d5\u30c8">'
        "\u30bd\u30d5\u30c8\u30a6\u30a7\u30a2\u6a5f\u80fd\u8868\u306e\u30c0\u30a6\u30f3\u30ed\u30fc\u30c9"
        "</a></p>\n"
        "<p>\u682a\u5f0f\u4f1a\u793e\u30a8\u30b0\u30b6\u30f3\u30d7\u30eb \u30b5\u30dd\u30fc\u30c8\u7a93\u53e3"
        "</p>\n"
        "</body>\n</html>\n"
    )
    message = (
        "From: " + encoded_word("\u30a8\u30b0\u30b6\u30f3\u30d7\u30eb", "Shift_JIS") + " <news@example.co.jp>\n"
        "To: user@example.org\n"
        "Subject: " + encoded_word("\u304a\u77e5\u3089\u305b", "Shift_JIS") + "\n"
        "Date: Sun, 19 Nov 2023 09:00:00 +0900\n"
        "Message-ID: <000001da1a2b$3c4d5e60$7f8091a2$@example.co.jp>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: text/html;\n\tcharset="Shift_JIS"\n'
        "Content-Transfer-Encoding: base64\n"
        "X-Mailer: Microsoft Outlook 16.0\n"
        "\n"
    ).encode("ascii") + b64(canonical(html, "shift_jis"))
    write("shiftjis_base64_html.eml", message)


# ---------------------------------------------------------------- UTF-8 base64
UTF8_B64_LINKS = [
    "https://app.example.io/verify?token=9f86d081884c7d659a2feaa0c55ad015&user=42",
    "https://app.example.io/help/getting-started#step-2",
    "https://status.example.io/",
]


def utf8_base64() -> None:
    """A transactional mail from a SaaS: single-part text/html, UTF-8, base64 in
    76-character lines (as most ESP libraries write it)."""
    html = (
        "<!DOCTYPE html>\n"
        '<html lang="de">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width">\n'
        "<title>Bitte best\u00e4tige deine E-Mail-Adresse</title>\n"
        "</head>\n"
        '<body style="margin:0;padding:0;background:#f4f4f7;">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0">\n'
        '<tr><td style="padding:24px;font-family:-apple-system,Segoe UI,Roboto,sans-serif;">\n'
        "<h1>Willkommen bei Example \U0001F44B</h1>\n"
        "<p>Bitte best\u00e4tige deine E-Mail-Adresse, damit wir wissen, dass sie dir geh\u00f6rt.</p>\n"
        f'<p><a href="{UTF8_B64_LINKS[0].replace("&", "&amp;")}" data-msys-linkname="verify" '
        'style="display:inline-block;padding:12px 24px;background:#3869d4;color:#fff;'
        'border-radius:3px;text-decoration:none;">E-Mail best\u00e4tigen</a></p>\n'
        f'<p>Erste Schritte: <a href="{UTF8_B64_LINKS[1]}">Anleitung</a> \u00b7 '
        f'Status: <a href="{UTF8_B64_LINKS[2]}">{UTF8_B64_LINKS[2]}</a></p>\n'
        "<p>Falls du dich nicht registriert hast, ignoriere diese E-Mail einfach.</p>\n"
        "</td></tr>\n</table>\n"
        "</body>\n</html>\n"
    )
    message = (
        "From: Example <no-reply@app.example.io>\n"
        "To: neu@example.org\n"
        "Subject: =?UTF-8?B?Qml0dGUgYmVzdMOkdGlnZSBkZWluZSBFLU1haWwtQWRyZXNzZQ==?=\n"
        "Date: Mon, 20 Nov 2023 07:15:00 +0000\n"
        "Message-ID: <0100018bea1c2d3e-4f5a6b7c-8d9e-4f01-a2b3-c4d5e6f7a8b9-000000@email.example.io>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: text/html; charset="UTF-8"\n'
        "Content-Transfer-Encoding: base64\n"
        'X-MSYS-API: {"campaign_id":"signup-verify","metadata":{"user_id":42},"options":{"open_tracking":false}}\n'
        "\n"
    ).encode("ascii") + b64(canonical(html, "utf-8"))
    write("utf8_base64_html.eml", message)


# ---------------------------------------------------------------- attachments
MIXED_LINKS = ["https://billing.example.com/invoices/INV-2023-1147?view=web"]
MIXED_ATTACHED_LINK = "https://billing.example.com/pay/INV-2023-1147?ref=html-attachment"


def mixed_attachments() -> None:
    """Thunderbird: multipart/mixed of an HTML body, an attached .html file and a PDF."""
    boundary = "------------8Zl1N0QyB2sJ3wX5vC7mK9pE"
    body_html = (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta http-equiv="content-type" content="text/html; charset=UTF-8">\n'
        "  </head>\n  <body>\n"
        "    <p>Hello,</p>\n"
        "    <p>please find attached invoice INV-2023-1147 (PDF and HTML). You can also\n"
        f'      <a class="moz-txt-link-freetext" href="{MIXED_LINKS[0]}">view it online</a>.</p>\n'
        "    <p>Kind regards,<br>\n      Accounts \u2013 Example Billing\n    </p>\n"
        "  </body>\n</html>\n"
    )
    attached_html = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Invoice INV-2023-1147</title></head>\n"
        "<body>\n<h1>Invoice INV-2023-1147</h1>\n"
        "<table><tr><td>Consulting, 12 h</td><td>1.440,00 \u20ac</td></tr></table>\n"
        f'<p><a href="{MIXED_ATTACHED_LINK}">Pay online</a></p>\n'
        "</body></html>\n"
    )
    message = (
        "Message-ID: <3f2a1b0c-9d8e-4f7a-b6c5-d4e3f2a1b0c9@billing.example.com>\n"
        "Date: Tue, 21 Nov 2023 16:20:11 +0100\n"
        "MIME-Version: 1.0\n"
        "User-Agent: Mozilla Thunderbird\n"
        "Content-Language: en-US\n"
        "To: customer@example.org\n"
        "From: Example Billing <accounts@billing.example.com>\n"
        "Subject: Invoice INV-2023-1147\n"
        "X-MSYS-API: {\"campaign_id\": \"invoices\"}\n"
        "Content-Type: multipart/mixed;\n"
        f' boundary="{boundary}"\n'
        "\n"
        "This is a multi-part message in MIME format.\n"
        f"--{boundary}\n"
        "Content-Type: text/html; charset=UTF-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
    ).encode("ascii") + body_html.encode("utf-8") + (
        f"--{boundary}\n"
        "Content-Type: text/html; charset=UTF-8; name=\"INV-2023-1147.html\"\n"
        "Content-Disposition: attachment; filename=\"INV-2023-1147.html\"\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
    ).encode("ascii") + qp(attached_html.encode("utf-8")) + (
        f"\n--{boundary}\n"
        'Content-Type: application/pdf; name="INV-2023-1147.pdf"\n'
        'Content-Disposition: attachment; filename="INV-2023-1147.pdf"\n'
        "Content-Transfer-Encoding: base64\n"
        "\n"
    ).encode("ascii") + b64(pdf()) + f"\n--{boundary}--\n".encode("ascii")
    write("mixed_html_attachment_pdf.eml", message)


# ---------------------------------------------------------------- forward as attachment
FORWARD_LINKS = ["https://wiki.example.org/team/onboarding"]
FORWARDED_LINKS = ["https://vendor.example.net/quote/2023-88?contact=ops",
                   "https://vendor.example.net/terms"]


def forward_rfc822() -> None:
    """Thunderbird "Forward as Attachment": multipart/mixed with the new text and the
    original message as message/rfc822, itself multipart/alternative with links."""
    outer = "------------q1W2e3R4t5Y6u7I8o9P0aSdF"
    inner = "b1_4f7a9c2e1d3b5a6f8e0c2d4b6a8f0e1c"
    forwarded = (
        "Date: Mon, 20 Nov 2023 13:45:09 +0000\n"
        "From: Vendor Sales <sales@vendor.example.net>\n"
        "To: ops@example.org\n"
        "Subject: Your quote 2023-88\n"
        "Message-ID: <b1_4f7a9c2e1d3b5a6f8e0c2d4b6a8f0e1c@vendor.example.net>\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{inner}"\n'
        "\n"
        f"--{inner}\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
        f"Your quote: {FORWARDED_LINKS[0]}\nTerms: {FORWARDED_LINKS[1]}\n"
        "\n"
        f"--{inner}\n"
        "Content-Type: text/html; charset=us-ascii\n"
        "\n"
        "<html><body>\n"
        f'<p>Your quote: <a href="{FORWARDED_LINKS[0]}">2023-88</a></p>\n'
        f'<p><a href="{FORWARDED_LINKS[1]}" data-msys-linkname="terms">Terms</a></p>\n'
        "</body></html>\n"
        "\n"
        f"--{inner}--\n"
    )
    message = (
        "Message-ID: <7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6@example.org>\n"
        "Date: Tue, 21 Nov 2023 09:02:44 +0100\n"
        "MIME-Version: 1.0\n"
        "User-Agent: Mozilla Thunderbird\n"
        "From: Olga Petrova <olga@example.org>\n"
        "To: Team <team@example.org>\n"
        "Subject: Fwd: Your quote 2023-88\n"
        "Content-Type: multipart/mixed;\n"
        f' boundary="{outer}"\n'
        "\n"
        "This is a multi-part message in MIME format.\n"
        f"--{outer}\n"
        "Content-Type: text/html; charset=UTF-8\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta http-equiv="content-type" content="text/html; charset=UTF-8">\n'
        "  </head>\n  <body>\n"
        "    <p>FYI, see the quote below. Background in\n"
        f'      <a href="{FORWARD_LINKS[0]}">our wiki</a>.</p>\n'
        "  </body>\n</html>\n"
        f"--{outer}\n"
        "Content-Type: message/rfc822; charset=UTF-8; name=\"Your quote 2023-88.eml\"\n"
        "Content-Disposition: attachment; filename=\"Your quote 2023-88.eml\"\n"
        "\n"
        f"{forwarded}"
        "\n"
        f"--{outer}--\n"
    ).encode("ascii")
    write("forward_rfc822.eml", message)


# ---------------------------------------------------------------- PGP/MIME signed
SIGNED_LINKS = ["https://security.example.org/advisories/2023-11"]


def multipart_signed() -> None:
    """Thunderbird + OpenPGP: multipart/signed over multipart/alternative; any change
    to the signed part would break the signature."""
    outer = "------------sig7Hq2LkT9vX0cRbN4mZ8wA"
    inner = "------------alt5Gf3JhU1yV6eWdP2oQ7iS"
    signed_part = (
        f'Content-Type: multipart/alternative;\n boundary="{inner}"\n'
        "\n"
        f"--{inner}\n"
        "Content-Type: text/plain; charset=UTF-8; format=flowed\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        f"Advisory published: {SIGNED_LINKS[0]}\n"
        "\n"
        f"--{inner}\n"
        "Content-Type: text/html; charset=UTF-8\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "<html><body>\n"
        f'<p>Advisory published: <a href="{SIGNED_LINKS[0]}">2023-11</a></p>\n'
        "</body></html>\n"
        "\n"
        f"--{inner}--\n"
    )
    signature = (
        "-----BEGIN PGP SIGNATURE-----\n\n"
        "wsF5BAABCAAjFiEE3pHhUcWq8Vd2bHkQ7nXr0ZkY4tIFAmVcqfUFAwAAAAAACgkQ7nXr0ZkY4tIj\n"
        "Ig/+Ktq4VbnP2mWx8ZcE1uF0hYd3Rj6Ls9Ga2Tq7Xv5Ni0Ob4Mc1Pe8Ud3Wf2Yg6Zh9Ai1Bj0Ck\n"
        "=Zx1q\n"
        "-----END PGP SIGNATURE-----\n"
    )
    message = (
        "Message-ID: <a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d@example.org>\n"
        "Date: Wed, 22 Nov 2023 10:00:00 +0100\n"
        "MIME-Version: 1.0\n"
        "From: Security Team <security@example.org>\n"
        "To: subscribers@example.org\n"
        "Subject: Advisory 2023-11\n"
        "X-MSYS-API: {\"campaign_id\": \"advisories\"}\n"
        "Content-Type: multipart/signed; micalg=pgp-sha256;\n"
        ' protocol="application/pgp-signature";\n'
        f' boundary="{outer}"\n'
        "\n"
        "This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\n"
        f"--{outer}\n"
        f"{signed_part}"
        "\n"
        f"--{outer}\n"
        'Content-Type: application/pgp-signature; name="OpenPGP_signature.asc"\n'
        "Content-Description: OpenPGP digital signature\n"
        'Content-Disposition: attachment; filename="OpenPGP_signature.asc"\n'
        "\n"
        f"{signature}"
        "\n"
        f"--{outer}--\n"
    ).encode("ascii")
    write("multipart_signed.eml", message)


# ---------------------------------------------------------------- DKIM-signed
def dkim_signed() -> None:
    """An application that signs before handing the mail to the MTA: DKIM-Signature
    present, so the body must keep its bytes (X-MSYS-API is still removed)."""
    boundary = "==============0318734295817623451=="
    message = (
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=shop.example.com;\n"
        " s=s2023; t=1700654400; h=from:to:subject:date:message-id:mime-version;\n"
        " bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\n"
        " b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSwganVzdCBhIHBsYWNlaG9sZGVyIGZvciB0ZXN0aW5n\n"
        "\t Zm9yIHRoZSBkby1uby1oYXJtIHJ1bGUgb2YgdGhlIG1pbHRlcg==\n"
        "From: Example Shop <orders@shop.example.com>\n"
        "To: buyer@example.org\n"
        "Subject: Your order 10042 has shipped\n"
        "Date: Wed, 22 Nov 2023 12:00:00 +0000\n"
        "Message-ID: <170065440012.4242.123456789@shop.example.com>\n"
        "MIME-Version: 1.0\n"
        'X-MSYS-API: {"campaign_id": "shipping"}\n'
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="us-ascii"\n'
        "MIME-Version: 1.0\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "Track your parcel: https://shop.example.com/track/10042\n"
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/html; charset="us-ascii"\n'
        "MIME-Version: 1.0\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        '<html><body><p><a href="https://shop.example.com/track/10042">Track your parcel</a></p></body></html>\n'
        "\n"
        f"--{boundary}--\n"
    ).encode("ascii")
    write("dkim_signed.eml", message)


# ---------------------------------------------------------------- plain text prose
PROSE_LINKS = [
    "https://example.org/release-notes/4.2",
    "https://en.wikipedia.org/wiki/Mutt_(email_client)",
    "https://example.org/docs/install",
    "https://git.example.org/mail/tool/-/issues/1234",
    "http://mirror.example.net/pub/tool-4.2.tar.gz",
    "https://example.org/faq#upgrade",
    "https://example.org/download?os=linux&arch=x86_64",
    "https://example.org/a_(b)_c",
]


def plaintext_prose() -> None:
    """Mutt-style text/plain only, UTF-8 8bit, URLs inside sentences: full stops,
    commas, parentheses, angle brackets, quotes."""
    text = (
        "Hi everyone,\n\n"
        f"version 4.2 is out. The release notes are at {PROSE_LINKS[0]}.\n"
        f"(If you wonder where the name comes from: {PROSE_LINKS[1]}.)\n"
        f"Installation is described at <{PROSE_LINKS[2]}>, and the known issue\n"
        f"is tracked in {PROSE_LINKS[3]}, with a workaround.\n"
        f"Tarball: \"{PROSE_LINKS[4]}\"; FAQ: {PROSE_LINKS[5]}!\n"
        f"Direct download: {PROSE_LINKS[6]}\n"
        f"Odd path ({PROSE_LINKS[7]}) works too.\n\n"
        "Not links: mailto:dev@example.org, ftp://ftp.example.org/pub, www.example.org and\n"
        "http:// example.org (broken).\n\n"
        "Gr\u00fc\u00dfe \u2013 the release team\n"
        "-- \n"
        "Sent with Mutt\n"
    )
    message = (
        "Date: Thu, 23 Nov 2023 20:10:00 +0100\n"
        "From: Release Team <release@example.org>\n"
        "To: announce@lists.example.org\n"
        "Subject: [ANN] tool 4.2 released\n"
        "Message-ID: <ZV-9xYz1Q2w3e4r5@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Disposition: inline\n"
        "Content-Transfer-Encoding: 8bit\n"
        "User-Agent: Mutt/2.2.9 (2022-11-12)\n"
        "\n"
    ).encode("ascii") + text.encode("utf-8")
    write("plaintext_prose_urls.eml", message)


# ---------------------------------------------------------------- 990-octet lines
LONG_LINE = 990
LONG_LINKS_PER_LINE = 6


def long_line_link(row: int, column: int) -> str:
    return f"https://minified.example.com/p/{row}/{column}"


def long_lines_8bit() -> None:
    """A templating engine that minifies HTML into 990-octet lines, UTF-8 8bit: the
    tracked URLs are longer than these, so rewritten lines must be folded in tags."""
    lines = []
    filler = "Gr\u00fc\u00dfe aus M\u00fcnchen \u2013 "
    for row in range(5):
        line = "<body style=\"margin:0\">" if row == 0 else ""
        line += f"<div class=\"r{row}\">"
        for column in range(LONG_LINKS_PER_LINE):
            line += (f'<a href="{long_line_link(row, column)}" style="color:#06c">link {row}.{column}</a>'
                     f" {filler}")
        pad = LONG_LINE - len(line.encode("utf-8")) - len("</div>")
        assert pad > 0
        line += ("x" * pad) + "</div>"
        assert len(line.encode("utf-8")) == LONG_LINE, len(line.encode("utf-8"))
        lines.append(line)
    last = "</body>"
    lines[-1] = lines[-1][:-len("</div>") - len(last)] + "</div>" + last
    assert len(lines[-1].encode("utf-8")) == LONG_LINE
    html = "<html><head><meta charset=\"utf-8\"></head>\n" + "\n".join(lines) + "\n</html>\n"
    message = (
        "From: Minified Mailer <mailer@minified.example.com>\n"
        "To: someone@example.org\n"
        "Subject: Long lines\n"
        "Date: Fri, 24 Nov 2023 06:00:00 +0000\n"
        "Message-ID: <long-lines-1@minified.example.com>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/html; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
    ).encode("ascii") + html.encode("utf-8")
    write("long_lines_8bit_html.eml", message)


def main() -> int:
    outlook()
    gmail()
    applemail()
    newsletter("qp")
    newsletter("base64")
    latin1_8bit()
    iso2022jp()
    shiftjis()
    utf8_base64()
    mixed_attachments()
    forward_rfc822()
    multipart_signed()
    dkim_signed()
    plaintext_prose()
    long_lines_8bit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
