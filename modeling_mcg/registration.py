"""Registration with the transformers Auto classes, and the remote-code `auto_map` written by `save_pretrained`.

Called on `import modeling_mcg`; safe to call again (registration is idempotent).
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForSeq2SeqLM, AutoProcessor
from transformers.models.auto.video_processing_auto import AutoVideoProcessor  # the top-level one needs torchvision

from .configuration_mcg import MCGConfig
from .modeling_mcg import MCGForPreTraining, MCGForVideoQuestionAnswering, MCGModel
from .processing_mcg import MCGProcessor
from .video_processing_mcg import MCGVideoProcessor


def register_mcg() -> None:
    """Register MCG with AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoModelForPreTraining, AutoProcessor and
    AutoVideoProcessor, and mark the classes for remote-code saving (code files + `auto_map`)."""
    AutoConfig.register(MCGConfig.model_type, MCGConfig, exist_ok=True)
    for auto_class, mcg_class in (
        (AutoModel, MCGModel),
        (AutoModelForSeq2SeqLM, MCGForVideoQuestionAnswering),
        (AutoModelForPreTraining, MCGForPreTraining),
        (AutoProcessor, MCGProcessor),
        (AutoVideoProcessor, MCGVideoProcessor),
    ):
        auto_class.register(MCGConfig, mcg_class, exist_ok=True)

    MCGConfig.register_for_auto_class()
    MCGModel.register_for_auto_class("AutoModel")
    MCGForVideoQuestionAnswering.register_for_auto_class("AutoModelForSeq2SeqLM")
    MCGForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    MCGProcessor.register_for_auto_class("AutoProcessor")
    MCGVideoProcessor.register_for_auto_class("AutoVideoProcessor")
