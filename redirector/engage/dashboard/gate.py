"""A host-wide cap on concurrent password hashes: ``HashGate.enter()`` takes a slot at
once or answers None, never waits.

A scrypt check costs ~0.1 s of CPU and 32 MB; gunicorn runs several processes of many
threads, so a per-process semaphore would still let every core hash. The slots are lock
files (``<stem>.<n>``) taken with flock(LOCK_EX | LOCK_NB): every process and thread
of this host that uses the same stem shares them, and a crashed worker's slot frees
itself when its descriptor closes. The systemd unit's PrivateTmp makes the temporary
directory the service's own. When the files cannot be opened, the cap is per process
(a semaphore), logged once.
"""
from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import threading
from typing import Callable

log = logging.getLogger(__name__)

Leave = Callable[[], None]


class HashGate:
    def __init__(self, name: str, slots: int = 1, directory: str | None = None) -> None:
        folder = directory or tempfile.gettempdir()
        self.paths = [os.path.join(folder, f"engage-{os.getuid()}-{name}.{n}")
                      for n in range(slots)]
        self._local = threading.BoundedSemaphore(slots)
        self._warned = False

    def enter(self) -> Leave | None:
        """A slot (call the answer to give it back), or None when all are taken."""
        for path in self.paths:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                return self._enter_locally(exc)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # taken (BlockingIOError), or the file system says no
                os.close(fd)
                continue
            return lambda: os.close(fd)  # closing the descriptor drops the lock
        return None

    def _enter_locally(self, exc: OSError) -> Leave | None:
        if not self._warned:
            self._warned = True
            log.warning("dashboard: lock files unusable (%s): the hashing cap is per process",
                        exc)
        return self._local.release if self._local.acquire(blocking=False) else None
