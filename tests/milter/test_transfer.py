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


QP_TRICKY = [
    b"",
    b"plain line\r\n",
    b"no line end at all",
    b"caf=C3=A9 soft=\r\nbreak=3D\r\nnext\r\n\r\n\r\n",
    b"ends in a soft break=\r\n",
    b"ends in a soft break=",
    b"trailing space \r\nand tab\t\r\n",
    b"padding after a soft break=  \r\nnext\r\n",
    b"encoded break=0D=0Ainside\r\nnext=0a\r\n",
    b"a bare CR\rin a line\r\n",
    b"LF only\nlines\n",
    b"mixed\r\nline\nends\r\n",
    b"broken == escape==\r\nnext\r\n",
    b"=ZZ bad escape and =4 short\r\n=",
    b"ends in white space  ",
    b"=\r\n=\r\n\r\n",
    b"\r\n",
]


def _reference_split(raw: bytes) -> Codec:
    codec = Codec.__new__(Codec)
    codec._qp_split_lines(raw)
    return codec


@pytest.mark.parametrize("raw", QP_TRICKY)
def test_qp_bulk_decode_matches_line_by_line(raw):
    """Quoted-printable decoded in one call (when a2b_qp reads the body as it reads each
    hard line) gives the same bytes, hard lines and offsets as decoding line by line."""
    codec = Codec(raw, "quoted-printable")
    reference = _reference_split(raw)
    assert (codec.decoded, codec.hard, codec.starts) == (reference.decoded, reference.hard, reference.starts)


def test_qp_bulk_decode_matches_line_by_line_on_random_bodies():
    import random
    pieces = [b"a", b"=", b"\r\n", b"\n", b"\r", b" ", b"\t", b"=3D", b"=0A", b"=0d", b"==",
              b"=\r\n", b"= \r\n", b"=ZZ", b"=C3=A9", b"x" * 80]
    rnd = random.Random(9)
    for _ in range(20000):
        raw = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 10)))
        codec, reference = Codec(raw, "quoted-printable"), _reference_split(raw)
        assert (codec.decoded, codec.hard, codec.starts) == \
            (reference.decoded, reference.hard, reference.starts), raw
