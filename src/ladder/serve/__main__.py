"""``python -m ladder.serve``: the same as ``ladder serve``."""

from __future__ import annotations

import sys

from ladder.serve.command import main

sys.exit(main())
