"""Run a script in a fresh Python process that cannot import `modeling_mcg`: how a user without the package meets a
saved folder (`trust_remote_code=True`)."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


def run_without_package(script: str, args, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `script` with `sys.argv[1:] = args`, offline, with a private HF_HOME; fail the test if it exits non-zero.

    `python -S` skips site processing, so the editable install's import hook never runs; only site-packages (for
    torch/transformers) is put back on `sys.path`.
    """
    script_path = tmp_path / "isolated_script.py"
    script_path.write_text(script)
    argv = [str(script_path), *map(str, args)]
    code = (
        f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r}); sys.argv = {argv!r};"
        f"exec(open({str(script_path)!r}).read())"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
