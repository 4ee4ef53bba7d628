from .configuration_aksis import AksisConfig
from .modeling_aksis import AksisForCausalLM, AksisModel, AksisPreTrainedModel
from .tokenization_aksis import AksisTokenizer

__all__ = ["AksisConfig", "AksisForCausalLM", "AksisModel", "AksisPreTrainedModel", "AksisTokenizer"]
