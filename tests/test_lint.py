"""Static checks that catch code no test executes: an undefined name in a benchmark's `__main__` block fails only
when a user runs it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_undefined_names_or_syntax_errors_anywhere_in_the_repository():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F821,F822,F823,E9", "--output-format", "concise",
         "modeling_mcg", "examples", "tests", "benchmarks"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
