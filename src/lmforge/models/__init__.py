"""The lmforge architectures, registered with the transformers Auto classes on import.

Each model folder is self-contained (torch, transformers and its own files only), so a saved model also loads with
`trust_remote_code=True` where lmforge is not installed. `register_for_auto_class` makes `save_pretrained` write
the `auto_map` and copy the model's code files next to the weights.
"""

from typing import Any

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from .ae_llm import AELLMConfig, AELLMForConditionalGeneration, AELLMModel, AELLMTokenizer
from .aksis import AksisConfig, AksisForCausalLM, AksisModel, AksisTokenizer
from .char_transformer import CharTokenizer, CharTransformerConfig, CharTransformerForCausalLM, CharTransformerModel
from .latent_reasoner import LatentReasonerConfig, LatentReasonerForConditionalGeneration, LatentReasonerModel

# (model_type, config, {auto class: model class}, tokenizer class or None)
REGISTRY: list[tuple[str, Any, dict[Any, Any], Any]] = [
    ("aksis", AksisConfig, {AutoModel: AksisModel, AutoModelForCausalLM: AksisForCausalLM}, AksisTokenizer),
    (
        "char_transformer",
        CharTransformerConfig,
        {AutoModel: CharTransformerModel, AutoModelForCausalLM: CharTransformerForCausalLM},
        CharTokenizer,
    ),
    (
        "ae_llm",
        AELLMConfig,
        {AutoModel: AELLMModel, AutoModelForSeq2SeqLM: AELLMForConditionalGeneration},
        AELLMTokenizer,
    ),
    # LatentReasoner uses its backbones' own tokenizers (saved beside the model).
    (
        "latent_reasoner",
        LatentReasonerConfig,
        {AutoModel: LatentReasonerModel, AutoModelForSeq2SeqLM: LatentReasonerForConditionalGeneration},
        None,
    ),
]

for _model_type, _config, _models, _tokenizer in REGISTRY:
    AutoConfig.register(_model_type, _config, exist_ok=True)
    _config.register_for_auto_class()
    for _auto, _model in _models.items():
        _auto.register(_config, _model, exist_ok=True)
        _model.register_for_auto_class(_auto.__name__)
    if _tokenizer is not None:
        AutoTokenizer.register(_config, tokenizer_class=_tokenizer, exist_ok=True)
        _tokenizer.register_for_auto_class("AutoTokenizer")

MODEL_TYPES = [entry[0] for entry in REGISTRY]

__all__ = [
    "MODEL_TYPES",
    "REGISTRY",
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
    "LatentReasonerConfig",
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerModel",
]
