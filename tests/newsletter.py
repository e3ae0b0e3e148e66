"""A realistic 60 KB, 150-link HTML newsletter (multipart/alternative), for tests and benchmarks."""
from __future__ import annotations

import quopri


def _html(links: int) -> str:
    rows = []
    for i in range(links):
        rows.append(
            f'<tr><td class="item" style="padding:10px 20px;font-family:Arial,sans-serif;font-size:14px">'
            f'<a href="https://shop.example.com/product/{i}?utm_source=newsletter&amp;utm_medium=email'
            f'&amp;utm_campaign=spring&amp;pid={i}" data-msys-linkname="item-{i}" style="color:#1a73e8">'
            f'Product {i}: a sturdy thing</a> &ndash; lorem ipsum dolor sit amet, consectetur adipiscing '
            f'elit. Price: {i}.99 &euro;'
            f'</td></tr>\n'
        )
    return (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><meta charset="utf-8"/>\n'
        '<style type="text/css">td.item a:hover{text-decoration:underline}</style></head>\n'
        '<body style="margin:0;padding:0"><table width="100%" cellpadding="0" cellspacing="0">\n'
        + "".join(rows)
        + '<tr><td><a href="mailto:help@shop.example.com">Help</a> | '
        '<a href="https://shop.example.com/unsubscribe?u=1234&amp;l=spring">Unsubscribe</a></td></tr>\n'
        "</table></body></html>\n"
    )


def newsletter(quoted_printable: bool = False, links: int = 150) -> bytes:
    """The whole message with CRLF line ends, X-MSYS-API header included."""
    html = _html(links).replace("\n", "\r\n").encode("utf-8")
    if quoted_printable:
        html = quopri.encodestring(html.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
        cte = b"quoted-printable"
    else:
        cte = b"8bit"
    text = "".join(f"Product {i}: https://shop.example.com/product/{i}?utm_source=newsletter\r\n"
                   for i in range(links)).encode()
    return (
        b"From: Shop <news@shop.example.com>\r\n"
        b"To: rcpt@example.net\r\n"
        b"Subject: Spring sale\r\n"
        b"Message-ID: <bench-1@shop.example.com>\r\n"
        b'X-MSYS-API: {"campaign_id": "spring-sale", "metadata": {"user_id": "u-1234"},\r\n'
        b' "tags": ["newsletter"]}\r\n'
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="=_b1"\r\n'
        b"\r\n"
        b"--=_b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + text
        + b"\r\n--=_b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
        + cte + b"\r\n\r\n" + html + b"\r\n--=_b1--\r\n"
    )
