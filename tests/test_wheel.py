"""The built wheel is complete: installed into a fresh virtual environment (no checkout on the path), it ships every
preset of hub_configs/ and the evaluate metric, and both load."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHECK = textwrap.dedent(
    """
    import json, sys, evaluate
    import modeling_mcg, modeling_mcg.metrics
    from modeling_mcg.training import load_preset, preset_names
    assert modeling_mcg.__file__.startswith(sys.prefix), modeling_mcg.__file__  # the installed copy, not the checkout
    configs = {name: load_preset(name).vision_config.num_frames for name in preset_names()}
    metric = evaluate.load(modeling_mcg.metrics.METRIC_PATH)
    result = metric.compute(predictions=["red", "two"], references=["red", "three"], answer_types=["color", "count"])
    helper = modeling_mcg.metrics.load_videoqa_metric().compute(predictions=["a"], references=["a"])
    print(json.dumps({"presets": configs, "accuracy": result["accuracy"], "helper": helper["accuracy"]}))
    """
)


def test_the_wheel_ships_the_presets_and_the_metric(tmp_path):
    # build from a copy of the tracked sources, so that no stale build/ folder of the checkout can fill the gaps
    source = tmp_path / "source"
    tracked = subprocess.check_output(["git", "ls-files", "-z"], cwd=REPO, text=True).split("\0")
    for name in filter(None, tracked):
        if name.startswith(("modeling_mcg/", "hub_configs/")) or name in ("pyproject.toml", "setup.cfg", "README.md"):
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / name).is_symlink():
                target.symlink_to(os.readlink(REPO / name))
            elif (REPO / name).is_file():
                shutil.copyfile(REPO / name, target)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."]
    subprocess.run(build, cwd=source, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("modeling_mcg-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the dependencies come from this environment's site-packages, read as a plain path: its .pth files (among them
    # the editable install of the checkout) are not processed there
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_EVALUATE_OFFLINE="1", HF_HUB_OFFLINE="1")
    result = subprocess.run([python, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    presets = sorted(path.stem for path in (REPO / "hub_configs").glob("*.json"))
    assert sorted(out["presets"]) == presets and all(frames > 0 for frames in out["presets"].values())
    assert out["accuracy"] == 0.5 and out["helper"] == 1.0
