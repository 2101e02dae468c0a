"""Reference architectures of examples/port/ importable by the port tests."""

import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "port"
sys.path.insert(0, str(EXAMPLES))
