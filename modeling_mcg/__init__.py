"""MCG-VideoQA: MCG (arXiv 2410.09379) as a Hugging Face transformers model.

Importing the package registers MCG with the Auto classes (config, models, processor, video processor).
"""

from .configuration_mcg import MCGConfig, MCGDecoderConfig, MCGQuestionConfig, MCGTextConfig, MCGVisionConfig
from .modeling_mcg import (
    MCGForPreTraining,
    MCGForVideoQuestionAnswering,
    MCGModel,
    MCGModelOutput,
    MCGPreTrainedModel,
    MCGPreTrainingOutput,
    MCGVideoQuestionAnsweringOutput,
)
from .registration import register_mcg

register_mcg()

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
    "register_mcg",
]
