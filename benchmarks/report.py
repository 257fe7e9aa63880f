"""What every benchmark script records next to its numbers: the command that reproduces them, and the JSON file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command_line(script: str, quick: bool, argv: list[str] | None) -> str:
    """`python benchmarks/<script> [--quick] <the other arguments>`, as the run was started."""
    extra = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    return " ".join([f"python benchmarks/{script}" + (" --quick" if quick else ""), *extra])


def write_results(results: dict, name: str, quick: bool, output: str | None) -> Path:
    """Write `results` to `output`, else to benchmarks/results/<name>[_quick].json, and say where."""
    path = Path(output) if output else REPO / "benchmarks" / "results" / f"{name}{'_quick' if quick else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path
