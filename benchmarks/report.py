"""What every benchmark script records next to its numbers: the command that reproduces them, and the JSON file;
and the package file a comparison's baseline comes from."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
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


def module_at(revision: str, path: str, module_name: str):
    """The repository file `path` (e.g. `modeling_mcg/losses.py`) as it was at git `revision`, imported as
    `module_name` beside today's package: a name inside `modeling_mcg` makes its relative imports resolve to today's
    modules. Raises `subprocess.CalledProcessError` (or `FileNotFoundError` without git) when there is no such file."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    file = Path(tempfile.mkdtemp()) / f"{module_name.rpartition('.')[2]}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
