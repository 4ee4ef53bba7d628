"""Every architecture is reachable the transformers way: top-level exports, and the Auto classes for its config."""

import pytest
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM

import lmforge

# model_type -> (config class, base model class, head class, the Auto class of the head)
ARCHITECTURES = {
    "aksis": ("AksisConfig", "AksisModel", "AksisForCausalLM", AutoModelForCausalLM),
    "char_transformer": (
        "CharTransformerConfig",
        "CharTransformerModel",
        "CharTransformerForCausalLM",
        AutoModelForCausalLM,
    ),
    "ae_llm": ("AELLMConfig", "AELLMModel", "AELLMForConditionalGeneration", AutoModelForSeq2SeqLM),
    "latent_reasoner": (
        "LatentReasonerConfig",
        "LatentReasonerModel",
        "LatentReasonerForConditionalGeneration",
        AutoModelForSeq2SeqLM,
    ),
}


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_top_level_exports_and_auto_classes(model_type):
    config_name, base_name, head_name, head_auto = ARCHITECTURES[model_type]
    config_class, base_class, head_class = (getattr(lmforge, name) for name in (config_name, base_name, head_name))
    assert {config_name, base_name, head_name} <= set(lmforge.__all__)
    assert config_class.model_type == model_type
    assert type(AutoConfig.for_model(model_type)) is config_class
    assert AutoModel._model_mapping[config_class] is base_class  # AutoModel.from_pretrained gives the base model
    assert head_auto._model_mapping[config_class] is head_class


def test_every_public_class_of_a_model_package_is_exported_at_the_top_level():
    models = lmforge.models
    for package in (models.aksis, models.char_transformer, models.ae_llm, models.latent_reasoner):
        for name in package.__all__:
            if name.endswith(("Config", "Model", "ForCausalLM", "ForConditionalGeneration", "Tokenizer")):
                assert getattr(lmforge, name) is getattr(package, name), name
