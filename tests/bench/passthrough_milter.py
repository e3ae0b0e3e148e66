"""The floor of any Python milter, for bench_milter.py: receive headers and body, change nothing.

It negotiates what engage-milter negotiates for the same callbacks (no reply to headers
and body chunks, which it keeps as engage-milter does) and accepts at end of message.
With ``--replace FILE`` it is the floor of any milter that changes the body instead:
at end of message it deletes X-MSYS-API and sends FILE as the new body, as engage-milter
does with the body it rewrote, but without computing anything.
Usage: ``python tests/bench/passthrough_milter.py inet:PORT@127.0.0.1 [--replace FILE]``.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import Milter

CHUNK = 65535  # libmilter's largest body chunk


class PassThrough(Milter.Base):  # type: ignore[misc]
    replacement: Optional[bytes] = None

    def __init__(self) -> None:
        self.headers: list[tuple[str, bytes]] = []
        self.chunks: list[bytes] = []

    def envfrom(self, mail_from: str, *params: str) -> Any:
        self.headers, self.chunks = [], []
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[misc]
    @Milter.decode("bytes")  # type: ignore[misc]
    def header(self, name: str, value: bytes) -> Any:
        self.headers.append((name, value))
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[misc]
    def body(self, chunk: bytes) -> Any:
        self.chunks.append(chunk)
        return Milter.CONTINUE

    def eom(self) -> Any:
        body = self.replacement
        if body is not None:
            self.chgheader("X-MSYS-API", 1, "")
            for start in range(0, len(body), CHUNK):
                self.replacebody(body[start:start + CHUNK])
        return Milter.ACCEPT


def main() -> None:
    if sys.argv[2:3] == ["--replace"]:
        with open(sys.argv[3], "rb") as replacement:
            PassThrough.replacement = replacement.read()
    Milter.factory = PassThrough
    Milter.set_flags(Milter.CHGBODY | Milter.CHGHDRS)  # as engage-milter asks
    Milter.runmilter("passthrough", sys.argv[1], timeout=600)


if __name__ == "__main__":
    main()
