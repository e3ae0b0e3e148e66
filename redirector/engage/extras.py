"""One clear line when a part of engage is run without the optional modules it needs.

A pip install brings only what every engage host needs (redis); the milter needs the
``milter`` extra (pymilter), the redirector the ``web`` extra (Flask, gunicorn). Run
without them, the entry points say which extra to install instead of a traceback, and
exit 78 (EX_CONFIG) like a bad setting: restarting does not help.
"""
from __future__ import annotations

import sys

from engage.settings import EX_CONFIG

# top-level module -> (extra, the Debian package that brings it)
EXTRAS = {"Milter": ("milter", "engage-milter"), "flask": ("web", "engage-redirector"),
          "werkzeug": ("web", "engage-redirector"), "gunicorn": ("web", "engage-redirector")}


def missing(program: str, exc: ModuleNotFoundError) -> SystemExit:
    """Print what to install for ``exc`` and return the SystemExit to raise; re-raise
    ``exc`` when the missing module is not one an extra brings (a real bug)."""
    module = (exc.name or "").split(".")[0]
    if module not in EXTRAS:
        raise exc
    extra, package = EXTRAS[module]
    print(f"{program}: the Python module {module} is not installed: install engage with "
          f"the {extra!r} extra (pip install 'engage-milter[{extra}]'; Debian: apt install "
          f"{package})", file=sys.stderr)
    return SystemExit(EX_CONFIG)
