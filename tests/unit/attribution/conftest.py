"""Make the shared oracles module importable under pytest's importlib import mode."""

from __future__ import annotations

import sys
from pathlib import Path

# importlib mode puts no test directory on sys.path; the oracles live beside the tests.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
