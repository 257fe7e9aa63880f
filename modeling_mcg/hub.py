"""Save an MCG model + processor as one self-contained Hub folder (weights, code, pipeline, metrics, model card) and
push it.

`Pipeline.save_pretrained` drops the processor and `model.save_pretrained` drops the pipeline, so this module writes
everything itself; it is the one writer of output folders (the training scripts call it too), and `push_to_hub`
uploads exactly the folder that `save_for_hub` wrote. A peft adapter is written as an adapter folder (adapter
weights, processor, model card naming its base model); its base is a `save_for_hub` folder of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from . import pipeline_mcg
from .modeling_mcg import AUTO_MAP, GENERATION_DEFAULTS

PIPELINE_FILE = "pipeline_mcg.py"
METRICS_FILE = "metrics.json"
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
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "processor_config.json", "README.md")
LICENSE = "apache-2.0"

# What a model trained on each dataset can be expected to know: the card says it per dataset, not one sentence for all.
DATASET_SCOPE = {
    "synthetic": "It was trained on the built-in synthetic set only: coloured shapes (circle, square, triangle, "
    "cross in red, green, blue, yellow) sliding across a dark 64x64 frame. It answers questions about their colour, "
    "shape, direction, number and order in such clips and knows nothing about real video.",
    "msrvtt-qa": "It was trained on MSRVTT-QA: open-ended what/who/how/when/where questions about short web clips, "
    "answered with one word from the training answers.",
    "msvd-qa": "It was trained on MSVD-QA: open-ended questions about short YouTube clips, answered with one word "
    "from the training answers.",
    "activitynet-qa": "It was trained on ActivityNet-QA: open-ended questions about long human-activity videos, "
    "answered with a short phrase from the training answers.",
    "nextqa": "It was trained on NExT-QA: causal and temporal questions about everyday videos, answered by ranking "
    "the given candidates (or generating a short answer).",
    "tvqa": "It was trained on TVQA: multiple-choice questions about TV-show clips with subtitles; it needs the "
    "subtitles and five candidate answers.",
    "clevrer": "It was trained on CLEVRER: descriptive and causal questions about rendered collisions of simple "
    "objects; it knows nothing about real video.",
}
NO_DATASET_SCOPE = (
    "This card does not record the training data; the model can only be expected to work on videos and questions "
    "like the ones it was trained on."
)


def save_for_hub(
    model,
    processor,
    folder: str | os.PathLike,
    *,
    metrics: dict[str, Any] | None = None,
    preset: str | None = None,
    model_card_extra: str | None = None,
    dataset: str | None = None,
    base_model: str | None = None,
    command: str | None = None,
    training: list[str] | None = None,
    plots: list[str] | None = None,
    generation_config=None,
) -> Path:
    """Write a folder that loads with or without the package and return it.

    A model: safetensors weights, config + generation config, processor, remote code with a complete `auto_map`,
    the pipeline (`custom_pipelines` + `pipeline_mcg.py`). A peft adapter: its adapter files and the processor
    (the base model is `base_model`). Both get `metrics.json` (when `metrics` is given; otherwise an existing
    `metrics.json` in the folder is kept and shown) and a model card with YAML metadata (license, datasets,
    base_model, metrics, pipeline_tag), the evaluation and per-answer-type results, what the training data lets the
    model know (`dataset`), the training summary (`training`, lines) and the `command` that produced it.

    Args:
        metrics: evaluation results (`test_accuracy`, `test_accuracy_<type>`, ...).
        preset: the preset or folder the model started from.
        model_card_extra: free text for the card's Notes section.
        dataset: the training dataset's name (`synthetic`, `msrvtt-qa`, ...).
        base_model: the model this one was fine-tuned from (required for an adapter).
        command: the command line that produced the folder.
        training: lines describing the training run (epochs, learning rate, ...); None for a model not trained here.
        plots: image files already in the folder to show in the card.
        generation_config: the generation defaults to save; default: the model's (or one built from its config).
    """
    is_adapter = hasattr(model, "peft_config")
    if not hasattr(model, "save_pretrained") or not hasattr(model, "config"):
        raise TypeError(f"model must be an MCG PreTrainedModel or a peft model of one; got {type(model).__name__}.")
    if not hasattr(processor, "save_pretrained") or not hasattr(processor, "video_processor"):
        raise TypeError(f"processor must be an MCGProcessor; got {type(processor).__name__}.")
    vocab = len(processor.tokenizer)
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if model_vocab < vocab:
        raise ValueError(
            f"The tokenizer has {vocab} tokens but the model's embeddings only {model_vocab}; resize the embeddings "
            "(model.resize_token_embeddings(len(processor.tokenizer))) before saving."
        )
    if is_adapter and base_model is None:
        raise ValueError("An adapter folder needs base_model= (the folder or Hub id of the model it adapts).")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if not is_adapter:
        _write_model_extras(model, folder, generation_config)

    if metrics is not None:
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    elif (folder / METRICS_FILE).is_file():
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    card = model_card(
        model,
        metrics=metrics,
        preset=preset,
        extra=model_card_extra,
        dataset=dataset,
        base_model=base_model,
        command=command,
        training=training,
        plots=plots,
        is_adapter=is_adapter,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def _write_model_extras(model, folder: Path, generation_config) -> None:
    """The pipeline code, the complete auto_map + custom_pipelines, and the generation defaults."""
    from transformers import GenerationConfig

    shutil.copyfile(pipeline_mcg.__file__, folder / PIPELINE_FILE)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {**FULL_AUTO_MAP, **config.get("auto_map", {})}
    config["custom_pipelines"] = {**config.get("custom_pipelines", {}), **CUSTOM_PIPELINES}
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if generation_config is None:
        generation_config = getattr(model, "generation_config", None)
    if generation_config is None:  # a pretraining model does not generate; the answer model loaded from it does
        generation_config = GenerationConfig.from_model_config(model.config)
        generation_config.update(**GENERATION_DEFAULTS)
    generation_config.save_pretrained(folder)

    missing = [name for name in FULL_AUTO_MAP.values() if not (folder / f"{name.split('.')[0]}.py").exists()]
    if missing:
        raise RuntimeError(
            f"save_pretrained did not copy the code for {missing}; import modeling_mcg before saving so the classes "
            "are registered for remote code."
        )


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metrics_section(metrics: dict[str, Any] | None) -> list[str]:
    if not metrics:
        return ["No evaluation results were recorded for this checkpoint.", ""]
    overall = {k: v for k, v in metrics.items() if not _per_type_key(k, metrics)}
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {_format(value)} |" for name, value in overall.items()]
    lines.append("")
    per_type: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        split = _per_type_key(key, metrics)
        if split:
            name, answer_type = split
            per_type.setdefault(answer_type, {})[name] = value
    if per_type:
        columns = sorted({name for row in per_type.values() for name in row})
        lines += ["Per answer type:", "", "| answer type | " + " | ".join(columns) + " |"]
        lines.append("| --- |" + " --- |" * len(columns))
        for answer_type, row in per_type.items():
            lines.append(f"| {answer_type} | " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")
        lines.append("")
    return lines


def _per_type_key(key: str, metrics: dict[str, Any]) -> tuple[str, str] | None:
    """(metric, answer type) for keys like `test_accuracy_color` whose overall `test_accuracy` exists."""
    for base in sorted((k for k in metrics if key.startswith(k + "_") and k != key), key=len, reverse=True):
        if base.endswith("accuracy") or "_wups_" in base:
            return base, key[len(base) + 1 :]
    return None


def _yaml_list(name: str, values: list[str]) -> list[str]:
    return [f"{name}:", *(f"- {value}" for value in values)] if values else []


def model_card(
    model,
    *,
    metrics=None,
    preset=None,
    extra=None,
    dataset=None,
    base_model=None,
    command=None,
    training=None,
    plots=None,
    is_adapter=False,
) -> str:
    """The README.md model card; see `save_for_hub` for the arguments."""
    config = model.config
    vision = config.vision_config
    metric_names = ["accuracy"] if any(k.endswith("accuracy") for k in metrics or {}) else []
    metadata = [
        "---",
        f"license: {LICENSE}",
        "library_name: " + ("peft" if is_adapter else "transformers"),
        "pipeline_tag: video-question-answering",
        *_yaml_list("datasets", [dataset] if dataset else []),
        *([f"base_model: {base_model}"] if base_model else []),
        *_yaml_list("metrics", metric_names),
        "tags:\n- video-question-answering\n- mcg\n- custom_code" + ("\n- lora" if is_adapter else ""),
        "---",
    ]
    kind = "A LoRA adapter (peft) for MCG" if is_adapter else "MCG"
    parts = [
        *metadata,
        "",
        "# MCG video question answering" + (f" — {dataset}" if dataset else ""),
        "",
        f"{kind} (arXiv 2410.09379) answers natural-language questions about short videos: a video transformer and "
        "a question encoder are fused, and an answer decoder generates the answer (open-ended) or scores candidate "
        "answers (multiple choice).",
        "",
        f"- Started from: {f'`{preset}`' if preset else 'not recorded'}",
        *([f"- Base model: `{base_model}` (this folder holds only the adapter)"] if is_adapter else []),
        f"- Frames per clip: {vision.num_frames}, frame size {vision.image_size}x{vision.image_size}",
        f"- Parameters: {sum(p.numel() for p in model.parameters()):,}",
        "",
        "## Training data and scope",
        "",
        DATASET_SCOPE.get(dataset, NO_DATASET_SCOPE) if dataset else NO_DATASET_SCOPE,
        "",
    ]
    if training is not None:
        parts += ["## Training", "", *(f"- {line}" for line in training)]
        parts += [f"- command: `{command}`" if command else "- command: not recorded", ""]
    elif command:
        parts += ["## Produced by", "", f"`{command}` (no training in this run)", ""]
    parts += ["## Evaluation", "", *_metrics_section(metrics)]
    parts += [f"![{name}]({name})" for name in plots or []]
    if plots:
        parts.append("")
    parts += [
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
    ]
    parts += _adapter_usage(base_model) if is_adapter else _model_usage()
    if extra:
        parts += ["## Notes", "", extra.strip(), ""]
    return "\n".join(parts)


def _model_usage() -> list[str]:
    return [
        "With the `modeling_mcg` package installed (no remote code runs):",
        "",
        "```python",
        "import modeling_mcg  # registers MCG and the pipeline task",
        "from transformers import pipeline",
        "",
        'pipe = pipeline("video-question-answering", model=FOLDER)',
        'pipe(video="clip.mp4", question="what is the man doing?", top_k=3)',
        'pipe("clip.mp4", question="what is he doing?", candidate_answers=["cooking", "running"])',
        "```",
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


def _adapter_usage(base_model: str) -> list[str]:
    return [
        "Load the base model, then this adapter on top of it (or merge it with `merge_and_unload()`):",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForSeq2SeqLM, AutoProcessor",
        "",
        f'base = AutoModelForSeq2SeqLM.from_pretrained("{base_model}", trust_remote_code=True)',
        "model = PeftModel.from_pretrained(base, FOLDER)",
        "processor = AutoProcessor.from_pretrained(FOLDER, trust_remote_code=True)",
        "```",
        "",
    ]


def push_to_hub(folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None):
    """Upload exactly the folder written by `save_for_hub` (creating the repo if needed); returns the commit info."""
    folder = Path(folder)
    required = ADAPTER_FILES if (folder / "adapter_config.json").is_file() else REQUIRED_FILES
    missing = [name for name in required if not (folder / name).is_file()]
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


__all__ = ["save_for_hub", "push_to_hub", "model_card", "CUSTOM_PIPELINES", "FULL_AUTO_MAP", "DATASET_SCOPE"]
