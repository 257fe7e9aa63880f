"""Registration with the transformers Auto classes, and the remote-code `auto_map` written by `save_pretrained`.

Called on `import modeling_mcg`; safe to call again (registration is idempotent).
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForSeq2SeqLM

from .configuration_mcg import MCGConfig
from .modeling_mcg import MCGForPreTraining, MCGForVideoQuestionAnswering, MCGModel

_REGISTERED = False


def _register_local(auto_class, config_class, model_class):
    try:
        auto_class.register(config_class, model_class, exist_ok=True)
    except TypeError:  # older signature without exist_ok
        auto_class.register(config_class, model_class)


def register_mcg() -> None:
    """Register MCG with AutoConfig/AutoModel/AutoModelForSeq2SeqLM/AutoModelForPreTraining (and, when the modules
    exist, AutoVideoProcessor/AutoProcessor and the "video-question-answering" pipeline), and mark the classes for
    remote-code saving."""
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

    MCGConfig.register_for_auto_class()
    MCGModel.register_for_auto_class("AutoModel")
    MCGForVideoQuestionAnswering.register_for_auto_class("AutoModelForSeq2SeqLM")
    MCGForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    _REGISTERED = True
