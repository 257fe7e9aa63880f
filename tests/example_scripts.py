"""The example scripts as the tests meet them: imported as modules (they are scripts, not package modules), or run
in subprocesses offline, with one torch thread and a private HF_HOME."""

import importlib.util
import os
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def load_example(name: str):
    """`examples/<name>.py` as a module, without running its `main()`."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def offline_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a subprocess that runs an example: no network, one thread, its own HF_HOME."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": str(tmp_path / "hf_home"),
    }


def free_port() -> int:
    """A TCP port nobody listens on now, for the rendezvous of a multi-process launch."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
