"""Transfer encodings: decode, splice, encode back without touching what did not change."""
import base64
import binascii

import pytest

from engage_milter.transfer import CannotRewrite, Codec, Splice


def test_qp_only_touched_hard_lines_are_reencoded():
    raw = (b"caf=C3=A9 line one stays=20\r\n"
           b"<a href=3D\"https://x.example/very/long=\r\n/path\">go</a>\r\n"
           b"last line =E2=82=AC\r\n")
    codec = Codec(raw, "quoted-printable")
    decoded = codec.decoded
    start = decoded.index(b"https://")
    end = decoded.index(b'">go')
    new = codec.encode([Splice(start, end, b"https://t.example/c/TOKEN")])
    lines = new.split(b"\r\n")
    assert lines[0] == b"caf=C3=A9 line one stays=20"  # untouched bytes, even the odd =20
    assert lines[-2] == b"last line =E2=82=AC"
    assert binascii.a2b_qp(new) == decoded.replace(decoded[start:end], b"https://t.example/c/TOKEN")
    assert all(len(line) <= 76 for line in lines)


def test_qp_edit_across_a_soft_break_and_lf_endings():
    raw = b"abc=\nde=3Df\nxyz\n"
    codec = Codec(raw, "quoted-printable")
    assert codec.decoded == b"abcde=f\r\nxyz\r\n"
    new = codec.encode([Splice(2, 5, b"ZZ")])
    assert new == b"abZZ=3Df\nxyz\n"


def test_base64_keeps_line_length_and_line_ends():
    data = ("<p>" + "é" * 200 + "</p>").encode()
    text = base64.encodebytes(data)  # 76-char lines, LF
    raw = text.replace(b"\n", b"\r\n")
    codec = Codec(raw, "base64")
    assert codec.decoded == data
    new = codec.encode([Splice(0, 3, b"<p class=x>")])
    assert base64.b64decode(new) == b"<p class=x>" + data[3:]
    assert {len(line) for line in new.split(b"\r\n")[:-2]} == {76}
    assert new.endswith(b"\r\n")


def test_invalid_base64_cannot_be_rewritten():
    with pytest.raises(CannotRewrite):
        Codec(b"!!!not base64***\r\n", "base64")


def test_unknown_encoding_cannot_be_rewritten():
    with pytest.raises(CannotRewrite):
        Codec(b"begin 644 x\r\n", "x-uuencode")


def test_8bit_is_spliced_as_bytes():
    raw = "Grüße <a href=\"http://a.example/\">x</a>\r\n".encode()
    codec = Codec(raw, "8bit")
    start = raw.index(b"http")
    new = codec.encode([Splice(start, start + 17, b"https://t.example/c/T")])
    assert new == raw.replace(b"http://a.example/", b"https://t.example/c/T")
