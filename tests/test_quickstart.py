"""`make demo` runs examples/quickstart.py: it must really learn clip-dependent answers (colour and motion)."""

import importlib.util
from pathlib import Path


def test_quickstart_answers_every_question():
    path = Path(__file__).parent.parent / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart", path)
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    assert quickstart.main() == 1.0
