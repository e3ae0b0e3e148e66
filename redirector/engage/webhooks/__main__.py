"""``python -m engage.webhooks``: the same as the ``engage-webhooks`` command."""
from __future__ import annotations

import sys

from engage.webhooks.cli import main

sys.exit(main())
