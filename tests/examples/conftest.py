"""The example applications live outside the installed packages, in ``examples/`` at the root
of the repository; they are imported from there, as ``python -m examples.shop`` does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
