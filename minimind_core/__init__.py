"""minimind_core: the library behind the MiniMind course.

MiniMind2-Small (25.83M parameters, Llama-style) and everything needed to build and train it:
tokenizer, data pipeline, training loop (one GPU, many GPUs or a CPU), LoRA, DPO, distillation,
generation, evaluation, plots and widgets. Importing the package registers the model with
transformers' Auto classes, so `AutoModelForCausalLM.from_pretrained(folder)` works without
`trust_remote_code`.
"""
from .config import MiniMindConfig
from .model import MiniMindForCausalLM, MiniMindModel, count_parameters
from .profiles import Profile, get_profile

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        AutoConfig.register(MiniMindConfig.model_type, MiniMindConfig)
    except ValueError:  # already registered (module reloaded)
        pass
    try:
        AutoModelForCausalLM.register(MiniMindConfig, MiniMindForCausalLM)
    except ValueError:
        pass


_register_auto_classes()

__all__ = ["MiniMindConfig", "MiniMindForCausalLM", "MiniMindModel", "count_parameters", "Profile",
           "get_profile"]
