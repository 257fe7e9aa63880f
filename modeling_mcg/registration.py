"""Registration with the transformers Auto classes, and the remote-code `auto_map` written by `save_pretrained`.

Called on `import modeling_mcg`; safe to call again (registration is idempotent).
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForSeq2SeqLM, AutoProcessor
from transformers.models.auto.video_processing_auto import AutoVideoProcessor  # the top-level one needs torchvision

from .configuration_mcg import MCGConfig
from .modeling_mcg import MCGForPreTraining, MCGForVideoQuestionAnswering, MCGModel
from .processing_mcg import MCGProcessor
from .video_processing_mcg import MCGVideoProcessor

_REGISTERED = False


def _register_local(auto_class, config_class, model_class):
    try:
        auto_class.register(config_class, model_class, exist_ok=True)
    except TypeError:  # older signature without exist_ok
        auto_class.register(config_class, model_class)


def register_mcg() -> None:
    """Register MCG with AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoModelForPreTraining, AutoProcessor and
    AutoVideoProcessor, and mark the classes for remote-code saving (code files + `auto_map`)."""
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        AutoConfig.register(MCGConfig.model_type, MCGConfig, exist_ok=True)
    except TypeError:
        AutoConfig.register(MCGConfig.model_type, MCGConfig)
    _register_local(AutoModel, MCGConfig, MCGModel)
    _register_local(AutoModelForSeq2SeqLM, MCGConfig, MCGForVideoQuestionAnswering)
    _register_local(AutoModelForPreTraining, MCGConfig, MCGForPreTraining)
    _register_local(AutoProcessor, MCGConfig, MCGProcessor)
    _register_local(AutoVideoProcessor, MCGConfig, MCGVideoProcessor)

    MCGConfig.register_for_auto_class()
    MCGModel.register_for_auto_class("AutoModel")
    MCGForVideoQuestionAnswering.register_for_auto_class("AutoModelForSeq2SeqLM")
    MCGForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    MCGProcessor.register_for_auto_class("AutoProcessor")
    MCGVideoProcessor.register_for_auto_class("AutoVideoProcessor")
    _REGISTERED = True
