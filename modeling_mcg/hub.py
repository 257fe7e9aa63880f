"""Save an MCG model + processor as one self-contained Hub folder (weights, code, pipeline, model card) and push it.

`Pipeline.save_pretrained` drops the processor and `model.save_pretrained` drops the pipeline, so this
module writes everything itself; `push_to_hub` uploads exactly the folder that `save_for_hub` wrote.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import pipeline_mcg
from .modeling_mcg import AUTO_MAP

PIPELINE_FILE = "pipeline_mcg.py"
CUSTOM_PIPELINES = {
    pipeline_mcg.TASK: {
        "impl": "pipeline_mcg.VideoQuestionAnsweringPipeline",
        "pt": ["AutoModelForSeq2SeqLM"],
        "tf": [],
        "type": "multimodal",
    }
}
FULL_AUTO_MAP = {
    **AUTO_MAP,
    "AutoProcessor": "processing_mcg.MCGProcessor",
    "AutoVideoProcessor": "video_processing_mcg.MCGVideoProcessor",
}
REQUIRED_FILES = ("config.json", "model.safetensors", "processor_config.json", PIPELINE_FILE, "README.md")


def save_for_hub(
    model,
    processor,
    folder: str | os.PathLike,
    *,
    metrics: dict[str, float] | None = None,
    preset: str | None = None,
    model_card_extra: str | None = None,
) -> Path:
    """Write a folder that loads with or without the package: safetensors weights, config + generation config,
    processor, remote code with a complete `auto_map`, the pipeline (`custom_pipelines` + `pipeline_mcg.py`) and a
    model card. Returns the folder."""
    if not hasattr(model, "save_pretrained") or not hasattr(model, "generation_config"):
        raise TypeError(f"model must be an MCG PreTrainedModel; got {type(model).__name__}.")
    if not hasattr(processor, "save_pretrained") or not hasattr(processor, "video_processor"):
        raise TypeError(f"processor must be an MCGProcessor; got {type(processor).__name__}.")
    vocab = len(processor.tokenizer)
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if model_vocab < vocab:
        raise ValueError(
            f"The tokenizer has {vocab} tokens but the model's embeddings only {model_vocab}; resize the embeddings "
            "(model.resize_token_embeddings(len(processor.tokenizer))) before saving."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    shutil.copyfile(pipeline_mcg.__file__, folder / PIPELINE_FILE)

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {**FULL_AUTO_MAP, **config.get("auto_map", {})}
    config["custom_pipelines"] = {**config.get("custom_pipelines", {}), **CUSTOM_PIPELINES}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    missing = [name for name in FULL_AUTO_MAP.values() if not (folder / f"{name.split('.')[0]}.py").exists()]
    if missing:
        raise RuntimeError(
            f"save_pretrained did not copy the code for {missing}; import modeling_mcg before saving so the classes "
            "are registered for remote code."
        )
    (folder / "README.md").write_text(model_card(model, metrics=metrics, preset=preset, extra=model_card_extra))
    return folder


def _metrics_table(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "No evaluation results were recorded for this checkpoint.\n"
    rows = ["| metric | value |", "| --- | --- |"]
    for name, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        rows.append(f"| {name} | {shown} |")
    return "\n".join(rows) + "\n"


def model_card(model, *, metrics=None, preset=None, extra=None) -> str:
    """The README.md model card: metrics, intended use, limitations, preset and how to load the folder."""
    config = model.config
    vision = config.vision_config
    preset_line = f"`{preset}`" if preset else "not recorded"
    parts = [
        "---",
        "library_name: transformers",
        "pipeline_tag: video-question-answering",
        "tags:\n- video-question-answering\n- mcg\n- custom_code",
        "---",
        "",
        "# MCG video question answering",
        "",
        "MCG (arXiv 2410.09379) answers natural-language questions about short videos: a video transformer and a "
        "question encoder are fused, and an answer decoder generates the answer (open-ended) or scores candidate "
        "answers (multiple choice).",
        "",
        f"- Preset: {preset_line}",
        f"- Frames per clip: {vision.num_frames}, frame size {vision.image_size}x{vision.image_size}",
        f"- Parameters: {sum(p.numel() for p in model.parameters()):,}",
        "",
        "## Evaluation",
        "",
        _metrics_table(metrics),
        "## Intended use",
        "",
        "Research on video question answering: open-ended answers to short factual questions about a clip, or "
        "ranking a given list of candidate answers. Subtitles can be given as extra context (TVQA-style).",
        "",
        "## Limitations",
        "",
        "- Only a few frames are sampled per clip, so brief events can be missed; long videos are subsampled.",
        "- Answers are short and come from the training answer distribution; the model does not explain them.",
        "- Scores are model confidences, not calibrated probabilities. It inherits the biases of its training "
        "data and should not be used for decisions about people.",
        "",
        "## How to use",
        "",
        "With the `modeling_mcg` package installed (no remote code runs):",
        "",
        "```python",
        "import modeling_mcg  # registers MCG and the pipeline task",
        "from modeling_mcg.pipeline_mcg import VideoQuestionAnsweringPipeline",
        "from transformers import pipeline",
        "",
        'pipe = pipeline("video-question-answering", model=FOLDER, pipeline_class=VideoQuestionAnsweringPipeline)',
        'pipe("clip.mp4", question="what is the man doing?", top_k=3)',
        'pipe("clip.mp4", question="what is he doing?", candidate_answers=["cooking", "running"])',
        "```",
        "",
        "`pipeline_class=` is needed because the folder declares a custom pipeline: without it transformers asks "
        "for `trust_remote_code=True` even when the task is registered locally.",
        "",
        "Without the package (the code in this folder is loaded; read it first):",
        "",
        "```python",
        "from transformers import AutoModelForSeq2SeqLM, AutoProcessor, pipeline",
        "",
        'pipe = pipeline("video-question-answering", model=FOLDER, trust_remote_code=True)',
        "model = AutoModelForSeq2SeqLM.from_pretrained(FOLDER, trust_remote_code=True)",
        "processor = AutoProcessor.from_pretrained(FOLDER, trust_remote_code=True)",
        'inputs = processor(videos="clip.mp4", text="what is the man doing?")',
        "answer = processor.tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True)",
        "```",
        "",
        "Video decoding uses PyAV (`pip install av`); no torchvision is needed.",
        "",
    ]
    if extra:
        parts += ["## Notes", "", extra.strip(), ""]
    return "\n".join(parts)


def push_to_hub(folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None):
    """Upload exactly the folder written by `save_for_hub` (creating the repo if needed); returns the commit info."""
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a save_for_hub folder (missing {missing}); call save_for_hub first.")
    from huggingface_hub import create_repo, upload_folder

    try:
        create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        return upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, repo_type="model")
    except Exception as error:  # offline mode, no network, bad token: say what failed and where
        raise RuntimeError(
            f"Could not push {folder} to the Hub repo {repo_id!r}: {type(error).__name__}: {error}. Check the network "
            "connection, that HF_HUB_OFFLINE is not set, and the token's write access."
        ) from error


__all__ = ["save_for_hub", "push_to_hub", "model_card", "CUSTOM_PIPELINES", "FULL_AUTO_MAP"]
