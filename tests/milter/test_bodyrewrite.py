"""engage_milter.linefold's folding of 7bit/8bit lines: its quick look agrees with the exact check."""
import pytest

from engage_milter import linefold
from engage_milter.transfer import CannotRewrite, Codec, Splice, splice

URL = b"https://t.example/t/c/Kx7Qm2Vp9Rs4Tw6YAbCdEfGhIjKl1"


def _cases():
    for newline in (b"\r\n", b"\n"):
        for width in (990, 997, 998, 999, 1200):
            tag = b'<a href="https://x.example/">'
            line = tag + b"x" * (width - len(tag))
            data = newline.join([b"<p>short</p>", line, line, b"tail"]) + newline
            at = data.index(b"https://x.example/")
            for new in (b"https://y.example/", URL, URL * 30):
                yield data, [Splice(at, at + 18, new)], [len(new) + 1]
                two = data.index(b"https://x.example/", at + 1)
                yield data, [Splice(at, at + 18, new), Splice(two, two + 18, new)], [len(new) + 1] * 2


def _result(data, splices, breaks):
    try:
        return splice(data, linefold.fold(splices, breaks, Codec(data, "8bit")))
    except CannotRewrite as exc:
        return str(exc)


@pytest.mark.parametrize("data, splices, breaks", list(_cases()))
def test_quick_line_check_gives_what_the_exact_one_gives(monkeypatch, data, splices, breaks):
    quick = _result(data, splices, breaks)
    monkeypatch.setattr(linefold, "short_lines", lambda data: False)
    assert quick == _result(data, splices, breaks)
