"""Logging for every engage process: one line per event to stderr, for journald."""
from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr, level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
