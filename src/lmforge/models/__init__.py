"""The lmforge architectures, registered with the transformers Auto classes on import.

Each model folder is self-contained (torch, transformers and its own files only), so a saved model also loads with
`trust_remote_code=True` where lmforge is not installed. Each package defines its `SPEC` (`spec.ModelSpec`), what the
rest of lmforge knows about it; adding an architecture is its folder, its import and one
`register(SPEC)` line below, and its package in pyproject.toml's `packages` list.
`register_for_auto_class` makes `save_pretrained` write the `auto_map` and copy the model's code next to the weights.
"""

import sys

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.processing_utils import ProcessorMixin

from ..errors import LmforgeError
from ..import_hooks import is_imported
from . import ae_llm, aksis, char_transformer, latent_reasoner
from .ae_llm import AELLMConfig, AELLMForConditionalGeneration, AELLMModel, AELLMTokenizer
from .aksis import AksisConfig, AksisForCausalLM, AksisModel, AksisTokenizer
from .char_transformer import (
    CharTokenizer,
    CharTransformerConfig,
    CharTransformerForCausalLM,
    CharTransformerModel,
    CharTransformerTokenizer,
)
from .latent_reasoner import (
    LatentReasonerConfig,
    LatentReasonerForConditionalGeneration,
    LatentReasonerModel,
    LatentReasonerProcessor,
)
from .spec import ModelSpec

# model_type -> its spec. The registry: one line per architecture.
SPECS: dict[str, ModelSpec] = {}

_HEAD_AUTO_CLASSES = {"AutoModelForCausalLM": AutoModelForCausalLM, "AutoModelForSeq2SeqLM": AutoModelForSeq2SeqLM}


def add_lora_defaults() -> None:
    """Give PEFT each registered architecture's default LoRA `target_modules` (its per-model_type table, which
    `get_peft_model(model, LoraConfig(task_type=...))` reads). Only once peft is imported: lmforge never imports it
    for this (`lmforge.import_hooks` calls this when peft is imported later)."""
    if not is_imported("peft.utils.constants"):
        return
    mapping = sys.modules["peft.utils.constants"].TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    mapping.update({model_type: spec.lora_target_modules for model_type, spec in SPECS.items()})


def register(spec: ModelSpec) -> None:
    """Add an architecture: its spec, its classes to the transformers Auto classes (`AutoConfig`, `AutoModel`,
    `AutoModelForCausalLM` / `AutoModelForSeq2SeqLM`, and `AutoTokenizer` or `AutoProcessor`), and its default LoRA
    targets to PEFT (when peft is imported)."""
    AutoConfig.register(spec.model_type, spec.config_class, exist_ok=True)
    spec.config_class.register_for_auto_class()
    for auto in (AutoModel, _HEAD_AUTO_CLASSES[spec.auto_class_name]):
        model_class = spec.model_class if auto is AutoModel else spec.head_class
        auto.register(spec.config_class, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto.__name__)
    if spec.tokenizer_class is not None:
        AutoTokenizer.register(spec.config_class, tokenizer_class=spec.tokenizer_class, exist_ok=True)
        spec.tokenizer_class.register_for_auto_class("AutoTokenizer")
    if isinstance(spec.processor_class, type) and issubclass(spec.processor_class, ProcessorMixin):
        AutoProcessor.register(spec.config_class, spec.processor_class, exist_ok=True)
        spec.processor_class.register_for_auto_class("AutoProcessor")
    SPECS[spec.model_type] = spec
    add_lora_defaults()


register(aksis.SPEC)
register(char_transformer.SPEC)
register(ae_llm.SPEC)
register(latent_reasoner.SPEC)

MODEL_TYPES = list(SPECS)


def get_spec(model_type: str) -> ModelSpec:
    """The spec of an lmforge architecture; a one-line error naming the known ones for any other model type."""
    spec = SPECS.get(model_type)
    if spec is None:
        raise LmforgeError(f"unknown model_type '{model_type}'; lmforge models are {', '.join(SPECS)}")
    return spec


__all__ = [
    "MODEL_TYPES",
    "SPECS",
    "AELLMConfig",
    "AELLMForConditionalGeneration",
    "AELLMModel",
    "AELLMTokenizer",
    "AksisConfig",
    "AksisForCausalLM",
    "AksisModel",
    "AksisTokenizer",
    "CharTokenizer",
    "CharTransformerConfig",
    "CharTransformerForCausalLM",
    "CharTransformerModel",
    "CharTransformerTokenizer",
    "LatentReasonerConfig",
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerModel",
    "LatentReasonerProcessor",
    "ModelSpec",
    "add_lora_defaults",
    "get_spec",
    "register",
]
