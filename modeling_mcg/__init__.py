"""MCG-VideoQA: MCG (arXiv 2410.09379) as a Hugging Face transformers model.

Importing the package registers MCG with the Auto classes (config, models, processor, video processor).
"""

from .configuration_mcg import MCGConfig, MCGDecoderConfig, MCGQuestionConfig, MCGTextConfig, MCGVisionConfig
from .convert_hf_checkpoints import from_unimodal_pretrained, load_unimodal_weights
from .hub import push_to_hub, save_for_hub
from .modeling_mcg import (
    MCGForPreTraining,
    MCGForVideoQuestionAnswering,
    MCGModel,
    MCGModelOutput,
    MCGPreTrainedModel,
    MCGPreTrainingOutput,
    MCGVideoQuestionAnsweringOutput,
)
from .pipeline_mcg import VideoQuestionAnsweringPipeline, register_pipeline
from .processing_mcg import MCGProcessor, add_mcg_special_tokens, build_wordpiece_tokenizer
from .registration import register_mcg
from .video_io import VideoDecodeError
from .video_processing_mcg import MCGVideoProcessor

register_mcg()
register_pipeline()

__all__ = [
    "MCGConfig",
    "MCGVisionConfig",
    "MCGTextConfig",
    "MCGQuestionConfig",
    "MCGDecoderConfig",
    "MCGPreTrainedModel",
    "MCGModel",
    "MCGForVideoQuestionAnswering",
    "MCGForPreTraining",
    "MCGModelOutput",
    "MCGVideoQuestionAnsweringOutput",
    "MCGPreTrainingOutput",
    "MCGProcessor",
    "MCGVideoProcessor",
    "VideoDecodeError",
    "build_wordpiece_tokenizer",
    "add_mcg_special_tokens",
    "register_mcg",
    "VideoQuestionAnsweringPipeline",
    "register_pipeline",
    "save_for_hub",
    "push_to_hub",
    "from_unimodal_pretrained",
    "load_unimodal_weights",
]
