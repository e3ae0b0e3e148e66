"""A WSGI body that does more work after the answer is sent (engage.web.clickpath: a
click's event is appended once its 302 is out)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Callable, Optional

log = logging.getLogger("engage.web.app")


class Answered:
    """An answer's body whose ``close()`` runs ``then`` once the answer is written: PEP 3333
    servers call close() after the last byte; gunicorn's handle_request (workers/sync.py,
    gthread.py, base_async.py) writes the body, ``resp.close()`` (sent), then
    ``respiter.close()`` in its ``finally``. Nothing ``then`` raises reaches the server."""

    def __init__(self, body: list[bytes], then: Callable[[], None]) -> None:
        self.body = body
        self.then: Optional[Callable[[], None]] = then

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        then, self.then = self.then, None  # once
        if then is None:
            return
        try:
            then()
        except Exception:
            log.exception("after the answer: failed")
