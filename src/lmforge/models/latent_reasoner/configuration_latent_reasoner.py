"""LatentReasoner model configuration: a composite of an encoder config, a causal decoder config and the bottleneck."""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils.type_validators import activation_fn_key, interval


@strict
class LatentReasonerConfig(PreTrainedConfig):
    r"""
    Configuration of a LatentReasoner model: a frozen encoder reads the input, its hidden states are mean-pooled and
    compressed into one *idea vector* per text, a middle MLP transforms that vector, and a prefix adapter turns it into
    `num_prefix_tokens` embeddings that condition a frozen causal decoder, which writes the output.

    The MLP widths that touch the backbones follow the sub-configs (`encoder.hidden_size` in, `decoder.hidden_size`
    out), so any encoder and any decoder-only causal language model fit. The sub-configs are built the way
    `EncoderDecoderConfig` builds them: a config object is kept as it is, a dict goes through the `AutoConfig`
    mapping of its `model_type`, and `None` gives the default (ModernBERT-base for the encoder, GPT-2 for the decoder).

    Args:
        encoder (`PreTrainedConfig` or `dict`, *optional*):
            Config of the encoder, a bare model loaded with `AutoModel` (e.g. BERT, ModernBERT). Defaults to a
            ModernBERT-base config.
        decoder (`PreTrainedConfig` or `dict`, *optional*):
            Config of the decoder, a decoder-only model loaded with `AutoModelForCausalLM` (e.g. GPT-2, Llama).
            Defaults to a GPT-2 config.
        idea_size (`int`, defaults to 256):
            Width of the idea vector: the output of the compression MLP, and the input and output of the middle MLP.
        compression_hidden_size (`int`, defaults to 512):
            Hidden width of the compression MLP (`encoder.hidden_size` -> `compression_hidden_size` -> `idea_size`).
        middle_hidden_size (`int`, defaults to 512):
            Hidden width of the two hidden layers of the middle MLP (`idea_size` -> `middle_hidden_size` ->
            `middle_hidden_size` -> `idea_size`).
        num_prefix_tokens (`int`, defaults to 10):
            Number of prefix embeddings the prefix adapter writes in front of the decoder tokens
            (`idea_size` -> `num_prefix_tokens` x `decoder.hidden_size`).
        hidden_act (`str`, defaults to `"gelu"`):
            Activation between the layers of the MLPs (any key of `transformers.activations.ACT2FN`).
        dropout (`float`, defaults to 0.1):
            Dropout after every hidden activation of the MLPs.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of the MLP weight matrices (biases start at zero). The
            backbones keep their own initialisation.
        freeze_encoder (`bool`, defaults to `True`):
            Whether the encoder parameters are frozen (`requires_grad=False`; a frozen encoder also runs without autograd).
        freeze_decoder (`bool`, defaults to `True`):
            Whether the decoder parameters are frozen (`requires_grad=False`; gradients still flow through it to the prefix).
        decoder_start_token_id (`int`, *optional*):
            First decoder token, written right after the prefix when `decoder_input_ids` are built from `labels` and
            when `generate` starts. `None` uses the decoder's `bos_token_id` (set it for a decoder without one).
        pad_token_id (`int`, *optional*):
            Decoder token that replaces -100 when `decoder_input_ids` are built from `labels`. `None` uses the
            decoder's `pad_token_id`, then its `eos_token_id`.
        is_encoder_decoder (`bool`, defaults to `True`):
            Tells `generate` to run the encoder once and then decode (keep it `True`).
        use_cache (`bool`, defaults to `True`):
            Whether the model returns the decoder's key/value cache for fast generation.

    Example:

    ```python
    >>> from transformers import BertConfig, GPT2Config
    >>> from lmforge.models.latent_reasoner import LatentReasonerConfig, LatentReasonerForConditionalGeneration
    >>> encoder = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...                      intermediate_size=64)
    >>> decoder = GPT2Config(vocab_size=100, n_embd=48, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2)
    >>> config = LatentReasonerConfig(encoder=encoder, decoder=decoder, idea_size=16, compression_hidden_size=32,
    ...                               middle_hidden_size=32, num_prefix_tokens=4)
    >>> model = LatentReasonerForConditionalGeneration(config)
    >>> model.model.prefix_adapter.proj.out_features  # num_prefix_tokens x decoder width
    192
    ```
    """

    model_type = "latent_reasoner"
    keys_to_ignore_at_inference = ["cache", "past_key_values", "encoder_last_hidden_state", "idea_vectors"]
    sub_configs_defaults = {
        "encoder": SubConfigSpec(config_class=AutoConfig, model_type="modernbert"),
        "decoder": SubConfigSpec(config_class=AutoConfig, model_type="gpt2"),
    }

    encoder: PreTrainedConfig | dict | None = None
    decoder: PreTrainedConfig | dict | None = None
    idea_size: int = interval(min=1)(default=256)
    compression_hidden_size: int = interval(min=1)(default=512)
    middle_hidden_size: int = interval(min=1)(default=512)
    num_prefix_tokens: int = interval(min=1)(default=10)
    hidden_act: str = activation_fn_key(default="gelu")
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    initializer_range: float = interval(min=0.0, max=1.0)(default=0.02)
    freeze_encoder: bool = True
    freeze_decoder: bool = True
    decoder_start_token_id: int | None = None
    pad_token_id: int | None = None
    is_encoder_decoder: bool = True
    use_cache: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        # The base class sets the attention implementation of every sub-config to the composite's (None unless
        # `attn_implementation=` is passed); keep the one a given sub-config (e.g. of a loaded module) already has.
        given = {
            name: sub_config._attn_implementation
            for name in ("encoder", "decoder")
            if isinstance(sub_config := getattr(self, name), PreTrainedConfig)
        }
        super().__post_init__(**kwargs)
        if kwargs.get("attn_implementation") is None:
            for name, attn_implementation in given.items():
                getattr(self, name)._attn_implementation = attn_implementation

    def validate_architecture(self) -> None:
        """Cross-field rules, checked when the config is built."""
        for name in ("encoder", "decoder"):
            sub_config = getattr(self, name)
            if not isinstance(getattr(sub_config, "hidden_size", None), int):
                raise ValueError(
                    f"The {name} config ({type(sub_config).__name__}) has no integer `hidden_size`; LatentReasoner "
                    f"needs it to size the MLPs, so pick a {name} whose config defines it."
                )
            if getattr(sub_config, "is_encoder_decoder", False):
                raise ValueError(
                    f"The {name} config ({type(sub_config).__name__}) is an encoder-decoder model; LatentReasoner "
                    "needs a single-stack encoder (loaded with AutoModel) and a decoder-only causal language model "
                    "(loaded with AutoModelForCausalLM)."
                )
        vocab_size = getattr(self.decoder, "vocab_size", None)
        if not isinstance(vocab_size, int):
            raise ValueError(
                f"The decoder config ({type(self.decoder).__name__}) has no integer `vocab_size`; the decoder must be "
                "a causal language model."
            )
        for name in ("decoder_start_token_id", "pad_token_id"):
            token_id = getattr(self, name)
            if token_id is not None and not 0 <= token_id < vocab_size:
                raise ValueError(
                    f"{name} ({token_id}) is not a token of the decoder, whose vocabulary has {vocab_size} ids; give "
                    f"an id in [0, {vocab_size - 1}] or leave it unset to use the decoder's own."
                )
        context = getattr(self.decoder, "max_position_embeddings", None) or getattr(self.decoder, "n_positions", None)
        if isinstance(context, int) and self.num_prefix_tokens >= context:
            raise ValueError(
                f"num_prefix_tokens ({self.num_prefix_tokens}) leaves no room in the decoder's context of {context} "
                "positions; use fewer prefix tokens or a decoder with a longer context."
            )

    @property
    def resolved_decoder_start_token_id(self) -> int | None:
        """`decoder_start_token_id`, or the decoder's `bos_token_id` when it is unset."""
        if self.decoder_start_token_id is not None:
            return self.decoder_start_token_id
        return getattr(self.decoder, "bos_token_id", None)

    @property
    def resolved_pad_token_id(self) -> int | None:
        """`pad_token_id`, or the decoder's `pad_token_id`, or the decoder's first `eos_token_id`."""
        for token_id in (self.pad_token_id, getattr(self.decoder, "pad_token_id", None)):
            if token_id is not None:
                return token_id
        eos = getattr(self.decoder, "eos_token_id", None)
        return eos[0] if isinstance(eos, list) and eos else eos if isinstance(eos, int) else None


__all__ = ["LatentReasonerConfig"]
