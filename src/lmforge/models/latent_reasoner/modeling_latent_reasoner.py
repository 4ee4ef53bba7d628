"""LatentReasoner: a frozen encoder and a frozen causal decoder joined through one trainable idea vector per text.

Read top to bottom: the cache-name compatibility helpers, the MLP and the prefix adapter, the helpers (mean pooling,
right shift, splitting a causal LM into base model and head), the output classes, the pre-trained base class, the
base model (`LatentReasonerModel`, BART's encoder-decoder pattern) and the model with the language-modelling head
(`LatentReasonerForConditionalGeneration`). The data flow of `forward`:

    input_ids -> encoder -> mean-pool (mask aware) -> compression MLP -> idea (B, I)
    idea -> middle MLP -> prefix adapter -> prefix (B, P, D)
    [prefix ; decoder token embeddings] -> decoder base model -> hidden states of the decoder tokens (B, T, D)
    -> the decoder's own LM head -> logits (B, T, V)

Shapes use B = batch, S = encoder tokens, H = encoder width, I = idea_size, P = num_prefix_tokens, T = decoder tokens,
D = decoder width, V = decoder vocabulary.

Labels follow the sequence-to-sequence convention of BART, T5 and `EncoderDecoderModel`: `labels[:, t]` is the token
the decoder should write after reading `decoder_input_ids[:, : t + 1]`, so `decoder_input_ids` is `labels` shifted one
step right behind `decoder_start_token_id` (the model builds it when only `labels` are given). -100 marks positions
without a loss (padding, or a decoder prompt). The prefix never receives a loss.

The decoder's key/value cache holds the prefix: after the first forward pass it has P + (decoder tokens seen)
positions. `generate()` is taught that (`prepare_inputs_for_generation` feeds the decoder tokens the cache has not
seen, a static cache is sized for the prefix too).

The model needs two tokenizers: the encoder's, to turn input text into `input_ids`, and the decoder's, to build
`labels` and to decode what `generate` writes. Methods that take text accept the encoder tokenizer as `tokenizer=`.
A saved model keeps the decoder tokenizer at the top level of the folder and the encoder tokenizer in the
`encoder_tokenizer/` subfolder (see `tokenization_latent_reasoner.py`), so without lmforge:
`AutoTokenizer.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path, subfolder="encoder_tokenizer")`.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    GenerationConfig,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPast, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_latent_reasoner import LatentReasonerConfig

# Copied from lmforge.models.aksis.modeling_aksis.CACHE_FIELD
CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
# Copied from lmforge.models.aksis.modeling_aksis.ForwardFn
ForwardFn = TypeVar("ForwardFn", bound=Callable[..., Any])


# Copied from lmforge.models.aksis.modeling_aksis.accepts_past_key_values
def accepts_past_key_values(forward: ForwardFn) -> ForwardFn:
    """Let `forward` also take its `cache` as `past_key_values=`: from transformers 5.24 with the library's own
    deprecation warning (as its in-library models do), before 5.24 silently (the name `generate()` passes there)."""
    if CACHE_FIELD == "cache":
        return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")(forward)

    @functools.wraps(forward)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if "past_key_values" in kwargs:
            legacy = kwargs.pop("past_key_values")
            if kwargs.get("cache") is None:
                kwargs["cache"] = legacy
        return forward(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# Config attributes of causal LMs whose head does more than the output embedding (soft-capping, scaling the logits):
# LatentReasoner applies the output embedding alone, so such a decoder would give other logits than on its own.
LOGIT_TRANSFORM_ATTRIBUTES = {"final_logit_softcapping": None, "logit_scale": 1.0, "logits_scaling": 1.0}


class LatentReasonerMLP(nn.Module):
    """Linear layers of the given widths with an activation and dropout between them (not after the last)."""

    def __init__(self, sizes: Sequence[int], hidden_act: str, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in pairwise(sizes))
        self.act_fn = ACT2FN[hidden_act]
        self.dropout = nn.Dropout(dropout)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            hidden_states = self.dropout(self.act_fn(layer(hidden_states)))
        return self.layers[-1](hidden_states)  # (B, sizes[0]) -> (B, sizes[-1])


class LatentReasonerPrefixAdapter(nn.Module):
    """One linear map from the idea vector to `num_prefix_tokens` decoder input embeddings."""

    def __init__(self, idea_size: int, num_prefix_tokens: int, decoder_hidden_size: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.decoder_hidden_size = decoder_hidden_size
        self.proj = nn.Linear(idea_size, num_prefix_tokens * decoder_hidden_size)

    def forward(self, idea_vectors: torch.Tensor) -> torch.Tensor:
        prefix = self.proj(idea_vectors)  # (B, I) -> (B, P * D)
        return prefix.view(-1, self.num_prefix_tokens, self.decoder_hidden_size)  # (B, P, D)


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the hidden states over the positions the attention mask keeps: (B, S, H) -> (B, H)."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (B, S, 1)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


# Copied from lmforge.models.ae_llm.modeling_ae_llm.shift_tokens_right
def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Labels -> decoder inputs: prepend the start token, drop the last token, replace -100 by the pad token."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def split_causal_lm(causal_lm: PreTrainedModel) -> tuple[PreTrainedModel, nn.Module, dict[str, str]]:
    """The base model (the causal LM without its head) and the LM head of a causal LM, and the weights the head
    shares with the base model as `{"lm_head.<name>": "model.decoder.<name>"}` (the names in a LatentReasoner).

    Refuses a causal LM with parameters outside its base model and head, or whose head transforms the logits further
    (see `LOGIT_TRANSFORM_ATTRIBUTES`): applying the output embedding to the base model's output must give its logits.
    """
    name = type(causal_lm).__name__
    head = causal_lm.get_output_embeddings()
    base: Any = causal_lm.base_model
    if head is None or base is causal_lm:
        raise ValueError(
            f"The decoder ({name}) is not a causal language model with a base model and a language-modelling head; "
            "load it with AutoModelForCausalLM."
        )
    base_name = causal_lm.base_model_prefix
    head_name = next(module_name for module_name, module in causal_lm.named_modules() if module is head)
    others = [
        parameter_name
        for parameter_name, _ in causal_lm.named_parameters()
        if not parameter_name.startswith((f"{base_name}.", f"{head_name}."))
    ]
    if others:
        raise ValueError(
            f"The decoder ({name}) has parameters outside its base model and its head ({others[:3]}); LatentReasoner "
            "runs the base model and applies the head, so it cannot use this decoder."
        )
    for attribute, neutral in LOGIT_TRANSFORM_ATTRIBUTES.items():
        value = getattr(causal_lm.config, attribute, neutral)
        if value is not None and value != neutral:
            raise ValueError(
                f"The decoder ({name}) transforms its logits beyond the output embedding ({attribute}={value}); "
                "LatentReasoner applies the output embedding alone, so it cannot use this decoder."
            )
    tied: dict[str, str] = {}
    for target, source in causal_lm.get_expanded_tied_weights_keys(all_submodels=False).items():
        if target.startswith(f"{head_name}.") and source.startswith(f"{base_name}."):
            tied["lm_head" + target[len(head_name) :]] = "model.decoder" + source[len(base_name) :]
    return base, head, tied


@dataclass
class LatentReasonerSeq2SeqModelOutput(Seq2SeqModelOutput):
    r"""
    The output of `LatentReasonerModel`, with the idea vectors the decoder was conditioned on.

    `last_hidden_state` covers the decoder tokens only (the prefix positions are dropped); `decoder_hidden_states`
    and `decoder_attentions`, when asked for, are the decoder's own and include the prefix positions;
    `cross_attentions` is always `None` (the prefix stands in for cross-attention).

    idea_vectors (`torch.FloatTensor` of shape `(B, idea_size)`, *optional*):
        The idea vectors (before the middle MLP); `None` when the cache already held the prefix.
    """

    idea_vectors: torch.Tensor | None = None


@dataclass
class LatentReasonerSeq2SeqLMOutput(Seq2SeqLMOutput):
    r"""
    The sequence-to-sequence output, with the idea vectors the decoder was conditioned on.

    `logits` cover the decoder tokens only (the prefix positions are dropped); `decoder_hidden_states` and
    `decoder_attentions`, when asked for, are the decoder's own and include the prefix positions;
    `cross_attentions` is always `None` (the prefix stands in for cross-attention).

    idea_vectors (`torch.FloatTensor` of shape `(B, idea_size)`, *optional*):
        The idea vectors (before the middle MLP); `None` on generation steps that reuse a cache holding the prefix.
    """

    idea_vectors: torch.Tensor | None = None


class LatentReasonerPreTrainedModel(PreTrainedModel):
    config_class = LatentReasonerConfig
    config: LatentReasonerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    # `forward` compiles with fullgraph=True (static cache) when the decoder does: see `LatentReasonerModel.__init__`
    _can_compile_fullgraph = True
    # The classes a saved folder names in `auto_map`, so it loads as the base model or with its head
    _auto_map_classes = {
        "AutoModel": "LatentReasonerModel",
        "AutoModelForSeq2SeqLM": "LatentReasonerForConditionalGeneration",
    }

    # Copied from lmforge.models.aksis.modeling_aksis.AksisPreTrainedModel.save_pretrained with Aksis->LatentReasoner, AutoModelForCausalLM->AutoModelForSeq2SeqLM
    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained`. A model saved with its code (its class registered for an Auto class, as
        `import lmforge` or loading with `trust_remote_code=True` does) names both classes of `_auto_map_classes` in
        `auto_map`, so the folder loads with `AutoModel` and with `AutoModelForSeq2SeqLM` where lmforge is absent."""
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({auto: f"{module}.{name}" for auto, name in self._auto_map_classes.items()})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, then the freezing of `config.freeze_encoder` / `freeze_decoder` again.

        Loading replaces every parameter with a new `requires_grad=True` one, so the freezing done in `__init__` has
        to be re-applied.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.apply_freezing()
        return loaded

    def apply_freezing(self) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) weights and zero biases for the MLP layers; the backbones (and the decoder's LM
        head) keep their own initialisation."""
        if isinstance(module, nn.Linear) and module is not getattr(self, "lm_head", None):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _check_config(config: Any) -> None:
    if getattr(config, "model_type", None) != LatentReasonerConfig.model_type:
        # (compared by model_type: with trust_remote_code the config class may come from another module copy)
        raise TypeError(f"config must be a LatentReasonerConfig, got {type(config).__name__}.")
    if not isinstance(config.encoder, PreTrainedConfig) or not isinstance(config.decoder, PreTrainedConfig):
        raise TypeError("config.encoder and config.decoder must be configs; build the config with its class.")


class LatentReasonerModel(LatentReasonerPreTrainedModel):
    r"""
    The bare LatentReasoner (the `AutoModel` class): encoder -> mean pool -> compression MLP (idea vector) -> middle
    MLP -> prefix adapter -> the decoder's base model (the causal LM without its head). Returns the decoder's hidden
    states of the decoder tokens as `last_hidden_state`, with the cache, the encoder outputs and the idea vectors
    (`LatentReasonerSeq2SeqModelOutput`). See `LatentReasonerForConditionalGeneration` for the contract groups.
    """

    def __init__(
        self,
        config: LatentReasonerConfig,
        encoder: PreTrainedModel | None = None,
        decoder: PreTrainedModel | None = None,
    ) -> None:
        r"""
        config (`LatentReasonerConfig`):
            The configuration.
        encoder (`PreTrainedModel`, *optional*):
            A bare encoder (returns `last_hidden_state`); created from `config.encoder` when omitted.
        decoder (`PreTrainedModel`, *optional*):
            The base model of a causal LM (e.g. `GPT2Model`, `LlamaModel`; takes `inputs_embeds` and a cache);
            created from `config.decoder` with `AutoModel` when omitted.
        """
        _check_config(config)
        super().__init__(config)
        encoder_config: Any = config.encoder
        decoder_config: Any = config.decoder
        if encoder is None:
            encoder = AutoModel.from_config(encoder_config)
        if decoder is None:
            decoder = AutoModel.from_config(decoder_config)
        self.encoder = encoder
        self.decoder = decoder
        self._can_compile_fullgraph = bool(getattr(decoder, "_can_compile_fullgraph", False))
        # The sub-models share the composite config's sub-configs, so a change to one is seen by both.
        encoder_config._attn_implementation = encoder.config._attn_implementation
        decoder_config._attn_implementation = decoder.config._attn_implementation
        self.encoder.config = encoder_config
        self.decoder.config = decoder_config

        self.compression = LatentReasonerMLP(
            [encoder_config.hidden_size, config.compression_hidden_size, config.idea_size],
            config.hidden_act,
            config.dropout,
        )
        self.middle = LatentReasonerMLP(
            [config.idea_size, config.middle_hidden_size, config.middle_hidden_size, config.idea_size],
            config.hidden_act,
            config.dropout,
        )
        self.prefix_adapter = LatentReasonerPrefixAdapter(
            config.idea_size, config.num_prefix_tokens, decoder_config.hidden_size
        )
        self.post_init()
        self.apply_freezing()

    def apply_freezing(self) -> None:
        """Freeze the encoder / decoder as the config says (`requires_grad=False`; the training mode is untouched, so
        dropout and gradient checkpointing behave as usual, as with PEFT adapters on a frozen base model)."""
        if self.config.freeze_encoder:
            self.encoder.requires_grad_(False)
        if self.config.freeze_decoder:
            self.decoder.requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "The encoder and the decoder have separate vocabularies; resize one of them directly, e.g. "
            "`model.model.encoder.resize_token_embeddings(n)`."
        )

    def _encoder_is_trainable(self) -> bool:
        return any(parameter.requires_grad for parameter in self.encoder.parameters())

    def run_encoder(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, BaseModelOutput]:
        """Encoder (unless `encoder_outputs` are given) -> mask-aware mean pool: the pooled encoder output (B, H)
        and the encoder outputs. A frozen encoder runs without autograd. `kwargs` (`output_attentions`,
        `output_hidden_states`) go to the encoder."""
        outputs: BaseModelOutput
        if encoder_outputs is None:
            if input_ids is None and inputs_embeds is None:
                raise ValueError(
                    "Pass input_ids (the text to read), inputs_embeds, encoder_outputs, pooled_encoder_output or "
                    "idea_vectors."
                )
            with torch.set_grad_enabled(torch.is_grad_enabled() and self._encoder_is_trainable()):
                outputs = self.encoder(
                    input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
                )
        elif isinstance(encoder_outputs, tuple):
            outputs = BaseModelOutput(*encoder_outputs)
        else:
            outputs = encoder_outputs
        if outputs.last_hidden_state is None:
            raise ValueError("The encoder output has no last_hidden_state; use a bare encoder (AutoModel).")
        return mean_pool(outputs.last_hidden_state, attention_mask), outputs  # (B, S, H) -> (B, H)

    def pool_encoder_output(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder -> mask-aware mean pool: the pooled encoder output (B, H) that `pooled_encoder_output=` takes.

        It is everything before the first trained layer: with a frozen encoder it is a fixed feature of the text, so
        a training set can be encoded once (in eval mode, without dropout) and `forward` then skips the encoder.
        """
        pooled, _ = self.run_encoder(input_ids, attention_mask, inputs_embeds=inputs_embeds)
        return pooled

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pooled_encoder_output: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, BaseModelOutput]:
        """Encoder (unless `encoder_outputs` are given) -> mean-pool -> compression MLP: the idea vectors (B, I).

        Returns the idea vectors and the encoder outputs. A frozen encoder runs without autograd. `kwargs`
        (`output_attentions`, `output_hidden_states`) go to the encoder. `pooled_encoder_output` (B, H), what
        `pool_encoder_output` returns, skips the encoder and the pooling (the returned encoder outputs are empty).
        """
        if pooled_encoder_output is None:
            pooled, outputs = self.run_encoder(input_ids, attention_mask, encoder_outputs, inputs_embeds, **kwargs)
        else:
            if any(value is not None for value in (input_ids, inputs_embeds, encoder_outputs)):
                raise ValueError(
                    "Pass either pooled_encoder_output or a text to read (input_ids / inputs_embeds / "
                    "encoder_outputs), not both."
                )
            if pooled_encoder_output.dim() != 2:
                raise ValueError(
                    "pooled_encoder_output must have shape (batch, encoder hidden size), got "
                    f"{tuple(pooled_encoder_output.shape)}."
                )
            pooled, outputs = pooled_encoder_output, BaseModelOutput()
        idea_vectors = self.compression(pooled.to(self.compression.dtype))  # (B, H) -> (B, I)
        return idea_vectors, outputs

    def get_prefix_embeddings(self, idea_vectors: torch.Tensor) -> torch.Tensor:
        """Middle MLP -> prefix adapter: idea vectors (B, I) -> prefix embeddings (B, P, D)."""
        return self.prefix_adapter(self.middle(idea_vectors))

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        idea_vectors: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        pooled_encoder_output: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> LatentReasonerSeq2SeqModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(B, S)`, *optional*):
            The text to read, in the encoder's vocabulary.
        attention_mask (`torch.Tensor` of shape `(B, S)`, *optional*):
            Encoder mask (1 = token, 0 = padding); the mean pooling skips padding.
        decoder_input_ids (`torch.LongTensor` of shape `(B, T)`, *optional*):
            Decoder tokens written after the prefix, starting with `decoder_start_token_id`. With a cache that already
            holds the prefix, only the tokens the cache has not seen.
        decoder_attention_mask (`torch.Tensor` of shape `(B, T_total)`, *optional*):
            Mask over all decoder tokens so far (prefix excluded, it is always attended); positions follow it.
        encoder_outputs (`BaseModelOutput` or `tuple`, *optional*):
            Precomputed encoder outputs (what `generate` passes); `input_ids` are then not needed.
        idea_vectors (`torch.Tensor` of shape `(B, idea_size)`, *optional*):
            Condition on these idea vectors instead of reading a text (encoder and compression MLP skipped).
        cache (`Cache`, *optional*, also accepted as `past_key_values`):
            The decoder's cache (or an `EncoderDecoderCache` holding it as its self-attention cache). While it is
            empty the prefix is computed and put in front of the decoder tokens; once it holds the prefix, only the
            new decoder tokens are fed and the encoder side is ignored. Under `torch.compile` its length is not read:
            the prefix is computed exactly when the encoder side (`input_ids`, `inputs_embeds`, `encoder_outputs` or
            `idea_vectors`) is given.
        inputs_embeds (`torch.Tensor` of shape `(B, S, H)`, *optional*):
            The encoder's input embeddings, in place of `input_ids`.
        decoder_inputs_embeds (`torch.Tensor` of shape `(B, T, D)`, *optional*):
            The decoder token embeddings, in place of `decoder_input_ids`.
        use_cache (`bool`, *optional*):
            Return the decoder's cache (`config.use_cache` when unset).
        pooled_encoder_output (`torch.Tensor` of shape `(B, H)`, *optional*):
            The encoder's mean-pooled output (`pool_encoder_output`), e.g. computed once per dataset for a frozen
            encoder: the encoder is skipped and the compression MLP reads it. Excludes `input_ids`, `inputs_embeds`
            and `encoder_outputs`; the encoder fields of the output are then `None`.
        """
        output_attentions = kwargs.pop("output_attentions", None)
        output_hidden_states = kwargs.pop("output_hidden_states", None)
        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if use_cache is None:
            use_cache = bool(self.config.use_cache)
        if (decoder_input_ids is None) == (decoder_inputs_embeds is None):
            raise ValueError(
                "Pass exactly one of decoder_input_ids (the decoder tokens after the prefix) or decoder_inputs_embeds; "
                "the model with its head also builds them from labels."
            )
        if decoder_inputs_embeds is None:
            decoder_inputs_embeds = self.decoder.get_input_embeddings()(decoder_input_ids)  # (B, T) -> (B, T, D)
        hidden_states: torch.Tensor = decoder_inputs_embeds

        # `generate` wraps the decoder cache in an EncoderDecoderCache; the decoder only needs the self-attention part.
        decoder_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        encoder_side = any(
            value is not None
            for value in (input_ids, inputs_embeds, encoder_outputs, idea_vectors, pooled_encoder_output)
        )
        if torch.compiler.is_compiling():
            past_length: Any = None  # not read: a static cache's length is a tensor, a branch on it breaks the graph
            needs_prefix = encoder_side
        else:
            past_length = int(decoder_cache.get_seq_length()) if decoder_cache is not None else 0
            needs_prefix = past_length == 0
            if needs_prefix and not encoder_side:
                raise ValueError(
                    "Pass input_ids (the text to read), inputs_embeds, encoder_outputs, pooled_encoder_output or "
                    "idea_vectors: the cache does not hold the prefix yet."
                )

        num_prefix = self.config.num_prefix_tokens
        encoder_output: BaseModelOutput | None = None
        if needs_prefix:  # the prefix is not in the cache yet: compute it and put it in front of the tokens
            if idea_vectors is None:
                idea_vectors, encoder_output = self.encode(
                    input_ids,
                    attention_mask,
                    encoder_outputs,
                    inputs_embeds,
                    pooled_encoder_output,
                    output_attentions=output_attentions,
                    output_hidden_states=output_hidden_states,
                )
            if idea_vectors.shape[0] != hidden_states.shape[0]:
                raise ValueError(
                    f"The encoder side has batch size {idea_vectors.shape[0]} but the decoder tokens have "
                    f"{hidden_states.shape[0]}; pass one decoder row per input text."
                )
            prefix_embeds = self.get_prefix_embeddings(idea_vectors).to(hidden_states.dtype)  # (B, P, D)
            hidden_states = torch.cat([prefix_embeds, hidden_states], dim=1)  # (B, P + T, D)
        else:
            idea_vectors = None

        decoder_kwargs: dict[str, Any] = {}
        if decoder_attention_mask is not None:
            seen = None if past_length is None else past_length + hidden_states.shape[1] - num_prefix
            if seen is not None and decoder_attention_mask.shape[1] != seen:
                raise ValueError(
                    f"decoder_attention_mask covers {decoder_attention_mask.shape[1]} tokens but the decoder has seen "
                    f"{seen} (cached and new, prefix excluded); pass the mask of all decoder tokens so far."
                )
            prefix_mask = decoder_attention_mask.new_ones(decoder_attention_mask.shape[0], num_prefix)
            full_mask = torch.cat([prefix_mask, decoder_attention_mask], dim=1)  # (B, P + T_total)
            position_ids = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -hidden_states.shape[1] :]
            decoder_kwargs.update(attention_mask=full_mask, position_ids=position_ids)
        decoder_kwargs[CACHE_FIELD] = decoder_cache

        decoder_outputs = self.decoder(
            inputs_embeds=hidden_states,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **decoder_kwargs,
        )
        # (B, P + T, D) -> (B, T, D): the hidden states of the decoder tokens only
        last_hidden_state = decoder_outputs.last_hidden_state[:, -decoder_inputs_embeds.shape[1] :]

        # The decoder updates its cache in place; hand it back in the EncoderDecoderCache of a seq2seq output.
        new_decoder_cache = getattr(decoder_outputs, CACHE_FIELD, None) if use_cache else None
        returned_cache = cache if isinstance(cache, EncoderDecoderCache) and use_cache else None
        if returned_cache is None and new_decoder_cache is not None:
            returned_cache = EncoderDecoderCache(new_decoder_cache, DynamicCache())
        cache_output: dict[str, Any] = {CACHE_FIELD: returned_cache}
        return LatentReasonerSeq2SeqModelOutput(
            last_hidden_state=last_hidden_state,
            decoder_hidden_states=getattr(decoder_outputs, "hidden_states", None),
            decoder_attentions=getattr(decoder_outputs, "attentions", None),
            encoder_last_hidden_state=encoder_output.last_hidden_state if encoder_output is not None else None,
            encoder_hidden_states=getattr(encoder_output, "hidden_states", None),
            encoder_attentions=getattr(encoder_output, "attentions", None),
            idea_vectors=idea_vectors,
            **cache_output,
        )


class LatentReasonerForConditionalGeneration(LatentReasonerPreTrainedModel, GenerationMixin):
    r"""
    Encoder -> idea vector -> prefix -> causal decoder: `LatentReasonerModel` (`self.model`) and the decoder's own
    language-modelling head (`self.lm_head`, tied to the decoder's token embeddings when the decoder ties them).
    Only the three MLPs (`model.compression`, `model.middle`, `model.prefix_adapter`) train by default; the encoder and
    the decoder (with its head) are frozen per `config.freeze_encoder` / `config.freeze_decoder`, and stay frozen
    after `from_pretrained`.

    Build it in one of three ways:

    - `LatentReasonerForConditionalGeneration(config)`: randomly initialised backbones from `config.encoder` and
      `config.decoder` (`AutoModel.from_config`, `AutoModelForCausalLM.from_config`);
    - `LatentReasonerForConditionalGeneration(config, encoder=..., decoder=...)`, or without `config` (it is then built
      from the two modules' configs): an existing bare encoder and causal LM (split into its base model, which goes
      to `model.decoder`, and its head, `lm_head`);
    - [`~LatentReasonerForConditionalGeneration.from_encoder_decoder_pretrained`]: pretrained backbones.

    A saved model (`save_pretrained`, safetensors only) holds the backbone weights too and loads with
    `AutoModelForSeq2SeqLM.from_pretrained(path)`, or as the bare `LatentReasonerModel` with
    `AutoModel.from_pretrained(path)` (with `trust_remote_code=True` where lmforge is not installed).

    The transformers model contract (checked by `tests/models/latent_reasoner/contract_latent_reasoner.py`, also on a
    folder loaded as remote code without lmforge):

    - hidden states: `encoder_hidden_states` are the encoder's (embeddings + one per layer);
      `decoder_hidden_states` are the decoder base model's and include the `num_prefix_tokens` prefix positions in
      front of the decoder tokens (on a generation step that reuses the cache, the new token only);
      `last_hidden_state` / `logits` cover the decoder tokens only.
    - attentions: `encoder_attentions` and `decoder_attentions` from the backbones (eager attention); the decoder's
      include the prefix positions as queries and keys. `cross_attentions` do not apply: there is no
      cross-attention, the prefix stands in for it (always `None`).
    - tuple outputs: `return_dict=False` (argument or config) gives `to_tuple()` of the dict output.
    - `generate(return_dict_in_generate=True, output_scores=True, output_logits=True, output_attentions=True,
      output_hidden_states=True)` is complete for greedy, sampling, beam search and beam sampling.
    - static cache: `cache_implementation="static"` sizes the cache for the prefix and the decoder tokens;
      `torch.compile(fullgraph=True)` of `forward` runs with a `StaticCache` (under compilation the prefix is computed
      exactly when the encoder side is given, see `LatentReasonerModel.forward`).
    - a cache returned by `generate` continues generation (its decoder tokens are `sequences`).
    - `inputs_embeds` (the encoder's input embeddings) in `forward` and `generate`.
    - assisted decoding (an assistant LatentReasoner with the same tokenizers, or prompt lookup) and greedy, seeded
      sampling and beam search give the same tokens with and without the cache.

    Example:

    ```python
    >>> from transformers import AutoTokenizer
    >>> model = LatentReasonerForConditionalGeneration.from_encoder_decoder_pretrained()  # ModernBERT-base + GPT-2
    >>> encoder_tokenizer = AutoTokenizer.from_pretrained("answerdotai/ModernBERT-base")
    >>> decoder_tokenizer = AutoTokenizer.from_pretrained("openai-community/gpt2")
    >>> inputs = encoder_tokenizer(["A long article ..."], return_tensors="pt")
    >>> summary_ids = model.generate(**inputs, max_new_tokens=40, num_beams=4)
    >>> decoder_tokenizer.batch_decode(summary_ids, skip_special_tokens=True)
    ```
    """

    def __init__(
        self,
        config: LatentReasonerConfig | None = None,
        encoder: PreTrainedModel | None = None,
        decoder: PreTrainedModel | None = None,
    ) -> None:
        r"""
        config (`LatentReasonerConfig`, *optional*):
            The configuration; built from `encoder.config` and `decoder.config` when omitted.
        encoder (`PreTrainedModel`, *optional*):
            A bare encoder (returns `last_hidden_state`); created from `config.encoder` when omitted.
        decoder (`PreTrainedModel`, *optional*):
            A causal language model (its base model must accept `inputs_embeds`); created from `config.decoder`
            when omitted.
        """
        if config is None:
            if encoder is None or decoder is None:
                raise ValueError(
                    "Pass a LatentReasonerConfig, or both an encoder and a decoder module to build the config from."
                )
            config = LatentReasonerConfig(encoder=encoder.config, decoder=decoder.config)
        _check_config(config)
        super().__init__(config)
        if decoder is None:
            decoder = AutoModelForCausalLM.from_config(config.decoder)
        decoder_base, lm_head, tied = split_causal_lm(decoder)
        self.model = LatentReasonerModel(config, encoder=encoder, decoder=decoder_base)
        self.lm_head = lm_head
        self._can_compile_fullgraph = self.model._can_compile_fullgraph
        # The head shares its weight with the decoder's token embeddings when the decoder ties them (GPT-2); the
        # composite config has no `tie_word_embeddings`, so `get_expanded_tied_weights_keys` adds the mapping.
        self._tied_weights_keys = tied
        self.post_init()
        self.apply_freezing()

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        tied = super().get_expanded_tied_weights_keys(all_submodels=all_submodels)
        if not all_submodels:
            tied.update(self._tied_weights_keys or {})
        return tied

    # ----------------------------------------------------------------------------------------------------------------
    # Construction, freezing, embeddings

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: str = "answerdotai/ModernBERT-base",
        decoder_pretrained_model_name_or_path: str = "openai-community/gpt2",
        **kwargs: Any,
    ) -> "LatentReasonerForConditionalGeneration":
        r"""
        Build a model from a pretrained encoder (`AutoModel`) and a pretrained causal decoder (`AutoModelForCausalLM`);
        the MLPs are randomly initialised.

        Args:
            encoder_pretrained_model_name_or_path (`str`, defaults to `"answerdotai/ModernBERT-base"`):
                Hub id or local folder of the encoder.
            decoder_pretrained_model_name_or_path (`str`, defaults to `"openai-community/gpt2"`):
                Hub id or local folder of the decoder.
            kwargs:
                `encoder_*` keyword arguments go to the encoder's `from_pretrained` without the prefix, `decoder_*`
                ones to the decoder's (e.g. `decoder_gguf_file=...`, `decoder_dtype=...`); `encoder_model=` /
                `decoder_model=` pass a ready module instead. The other keyword arguments (and
                `decoder_start_token_id`) are `LatentReasonerConfig` fields, e.g. `num_prefix_tokens=16`.
        """
        config_fields = set(LatentReasonerConfig.__dataclass_fields__)
        encoder_kwargs: dict[str, Any] = {}
        decoder_kwargs: dict[str, Any] = {}
        config_kwargs: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in config_fields:
                config_kwargs[key] = value
            elif key.startswith("encoder_"):
                encoder_kwargs[key[len("encoder_") :]] = value
            elif key.startswith("decoder_"):
                decoder_kwargs[key[len("decoder_") :]] = value
            else:
                config_kwargs[key] = value

        for backbone_kwargs in (encoder_kwargs, decoder_kwargs):
            if "gguf_file" not in backbone_kwargs:  # weights as safetensors only: never unpickle a `.bin`
                backbone_kwargs.setdefault("use_safetensors", True)
        encoder = encoder_kwargs.pop("model", None)
        if encoder is None:
            encoder = AutoModel.from_pretrained(encoder_pretrained_model_name_or_path, **encoder_kwargs)
        decoder = decoder_kwargs.pop("model", None)
        if decoder is None:
            decoder = AutoModelForCausalLM.from_pretrained(decoder_pretrained_model_name_or_path, **decoder_kwargs)
        config = LatentReasonerConfig(encoder=encoder.config, decoder=decoder.config, **config_kwargs)
        return cls(config, encoder=encoder, decoder=decoder)

    def apply_freezing(self) -> None:
        """Freeze the encoder / decoder (with its LM head) as the config says (`requires_grad=False`; the training
        mode is untouched, so dropout and gradient checkpointing behave as usual, as with PEFT adapters on a frozen
        base model)."""
        self.model.apply_freezing()
        if self.config.freeze_decoder:
            self.lm_head.requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.lm_head = new_embeddings

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "The encoder and the decoder have separate vocabularies; resize one of them directly, e.g. "
            "`model.model.encoder.resize_token_embeddings(n)`."
        )

    # ----------------------------------------------------------------------------------------------------------------
    # The pieces of the forward pass

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, BaseModelOutput]:
        """Encoder (unless `encoder_outputs` are given) -> mean-pool -> compression MLP: the idea vectors (B, I).

        Returns the idea vectors and the encoder outputs. A frozen encoder runs without autograd.
        """
        return self.model.encode(input_ids, attention_mask, encoder_outputs, **kwargs)

    def pool_encoder_output(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder -> mask-aware mean pool: the pooled encoder output (B, H) that `forward(pooled_encoder_output=)`
        takes in place of the text (see `LatentReasonerModel.pool_encoder_output`)."""
        return self.model.pool_encoder_output(input_ids, attention_mask, inputs_embeds)

    def get_prefix_embeddings(self, idea_vectors: torch.Tensor) -> torch.Tensor:
        """Middle MLP -> prefix adapter: idea vectors (B, I) -> prefix embeddings (B, P, D)."""
        return self.model.get_prefix_embeddings(idea_vectors)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`labels` shifted one step right behind the decoder start token (used by `DataCollatorForSeq2Seq` too)."""
        start = self.config.resolved_decoder_start_token_id
        pad = self.config.resolved_pad_token_id
        if start is None or pad is None:
            raise ValueError(
                "Building decoder_input_ids from labels needs a decoder start token and a pad token: set "
                "config.decoder_start_token_id and config.pad_token_id (or bos/pad/eos ids in the decoder config)."
            )
        return shift_tokens_right(labels, pad, start)

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        idea_vectors: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        pooled_encoder_output: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> LatentReasonerSeq2SeqLMOutput:
        r"""
        The arguments of `LatentReasonerModel.forward`, and:

        labels (`torch.LongTensor` of shape `(B, T)`, *optional*):
            `labels[:, t]` is the target after `decoder_input_ids[:, : t + 1]`; -100 is ignored (padding, prompt).
            Builds `decoder_input_ids` when they are not given, and turns `use_cache` off.
        logits_to_keep (`int` or `torch.Tensor`, defaults to 0):
            Compute logits for the last `logits_to_keep` decoder positions only (0 keeps all); generation uses 1.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)  # type: ignore[assignment]
        outputs: LatentReasonerSeq2SeqModelOutput = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            idea_vectors=idea_vectors,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            pooled_encoder_output=pooled_encoder_output,
            return_dict=True,  # the head builds its own output (a tuple too, when asked) from the base model's
            **kwargs,
        )
        hidden_states: Any = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])  # (B, T, D) -> (B, T, V)

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]),
                labels.to(logits.device).reshape(-1),
                ignore_index=-100,
                reduction="sum" if num_items_in_batch is not None else "mean",
            )
            if num_items_in_batch is not None:
                loss = loss / num_items_in_batch

        cache_output: dict[str, Any] = {CACHE_FIELD: getattr(outputs, CACHE_FIELD)}
        return LatentReasonerSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            idea_vectors=outputs.idea_vectors,
            **cache_output,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Generation and the latent-space helpers

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | None = None,
        idea_vectors: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The inputs of one `forward` call of `generate()`, from the decoder tokens so far (`input_ids`).

        The decoder cache holds the prefix, so its length is P + (decoder tokens it has seen): the tokens to feed are
        `input_ids` after those (`next_sequence_length`, which `generate()` computes in decoder tokens, is not used).
        The encoder side goes in only while the cache is empty (the first step, or every step without a cache). A
        cache cropped into the prefix (assisted decoding crops the assistant's cache counting decoder tokens only)
        is emptied, so the prefix and all decoder tokens are computed again.
        """
        cache = kwargs.pop("cache", None)
        legacy_cache = kwargs.pop("past_key_values", None)
        if cache is None:
            cache = legacy_cache
        past_length = int(cache.get_seq_length()) if cache is not None else 0
        num_prefix = self.config.num_prefix_tokens
        if 0 < past_length < num_prefix:
            cache.crop(-past_length)
            past_length = 0
        seen = past_length - num_prefix if past_length else 0
        model_inputs: dict[str, Any] = {
            "decoder_input_ids": input_ids[:, seen:].clone(memory_format=torch.contiguous_format)
        }
        if cache is not None:
            model_inputs["cache"] = cache
        if past_length == 0:
            model_inputs.update(
                attention_mask=attention_mask, encoder_outputs=encoder_outputs, idea_vectors=idea_vectors
            )
        for key, value in kwargs.items():
            if key not in ("labels", "decoder_position_ids", "position_ids", "inputs_embeds"):
                model_inputs.setdefault(key, value)
        return model_inputs

    def _prepare_cache_for_generation(
        self,
        generation_config: GenerationConfig,
        model_kwargs: dict,
        generation_mode: Any,
        batch_size: int,
        max_cache_length: int,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """`GenerationMixin._prepare_cache_for_generation`, with room for the prefix: `generate()` sizes a static
        cache in decoder tokens (`max_length - 1`), and the decoder's cache also holds the `num_prefix_tokens`
        prefix positions."""
        return super()._prepare_cache_for_generation(
            generation_config,
            model_kwargs,
            generation_mode,
            batch_size,
            max_cache_length + self.config.num_prefix_tokens,
            *args,
            **kwargs,
        )

    def generate(  # type: ignore[override]
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        *args: Any,
        idea_vectors: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        r"""
        `GenerationMixin.generate` (greedy, sampling, beam search, assisted decoding; the decoder's cache holds the
        prefix after the first step, dynamic or static), plus `idea_vectors=` to decode from given idea vectors
        instead of reading a text.

        The encoder runs once; the decoder starts with `decoder_start_token_id` after the prefix, so the returned
        ids start with it (decode with `skip_special_tokens=True`).

        Args:
            inputs / input_ids (`torch.LongTensor` of shape `(B, S)`, *optional*):
                The text to read, in the encoder's vocabulary (with its `attention_mask`); or `inputs_embeds=`, the
                encoder's input embeddings.
            idea_vectors (`torch.Tensor` of shape `(B, idea_size)`, *optional*):
                Decode from these idea vectors (e.g. from `get_latent_vector`); excludes `input_ids`.
            kwargs:
                Generation settings (`max_new_tokens`, `do_sample`, `temperature`, `top_p`, `num_beams`, ...) and
                model inputs (`attention_mask`, `decoder_input_ids` for a decoder prompt, a cache to continue, ...).
        """
        if idea_vectors is not None:
            if inputs is not None or any(
                kwargs.get(key) is not None for key in ("input_ids", "inputs_embeds", "encoder_outputs")
            ):
                raise ValueError(
                    "Pass either idea_vectors or a text to read (input_ids / inputs_embeds / encoder_outputs), not both."
                )
            # A one-step stand-in for the encoder output: `generate` then skips the encoder and reads the batch size
            # from it. `forward` conditions on `idea_vectors`, which `generate` expands for beams and passes each step.
            kwargs["encoder_outputs"] = BaseModelOutput(last_hidden_state=idea_vectors[:, None, :])
            kwargs["idea_vectors"] = idea_vectors
        return super().generate(inputs, generation_config, *args, **kwargs)

    def _encoder_inputs(
        self,
        texts_or_input_ids: str | Sequence[str] | torch.Tensor,
        tokenizer: PreTrainedTokenizerBase | None,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids (B, S) and mask for the encoder, from texts (with the encoder tokenizer) or from ids."""
        if isinstance(texts_or_input_ids, torch.Tensor):
            input_ids = texts_or_input_ids if texts_or_input_ids.dim() == 2 else texts_or_input_ids.unsqueeze(0)
            if attention_mask is not None and attention_mask.dim() == 1:
                attention_mask = attention_mask.unsqueeze(0)
        else:
            if tokenizer is None:
                raise ValueError("Reading text needs the encoder tokenizer: pass tokenizer=<encoder tokenizer>.")
            texts = [texts_or_input_ids] if isinstance(texts_or_input_ids, str) else list(texts_or_input_ids)
            encoded = tokenizer(texts, padding=True, return_tensors="pt")
            input_ids, attention_mask = encoded["input_ids"], encoded.get("attention_mask")
        device = self.model.encoder.device
        return input_ids.to(device), attention_mask.to(device) if attention_mask is not None else None

    @torch.no_grad()
    def get_latent_vector(
        self,
        texts_or_input_ids: str | Sequence[str] | torch.Tensor,
        tokenizer: PreTrainedTokenizerBase | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        The idea vectors of texts: encoder, mask-aware mean pooling, compression MLP. One text (a `str`, or token ids
        of shape `(S,)`) gives one vector of shape `(idea_size,)`, as the seed's `get_latent_vector`; a batch gives
        `(B, idea_size)`, which is what `generate(idea_vectors=...)` takes (`vector[None]` for one).

        Args:
            texts_or_input_ids (`str`, list of `str`, or `torch.LongTensor` of shape `(B, S)` or `(S,)`):
                Texts (tokenised with `tokenizer`, padded) or encoder token ids.
            tokenizer (`PreTrainedTokenizerBase`, *optional*):
                The encoder tokenizer; required for texts.
            attention_mask (`torch.Tensor`, *optional*):
                Mask of the given token ids (ignored for texts).

        Runs without gradients in the model's current mode (call `model.eval()` to switch off dropout).
        """
        idea_vectors = self._idea_vectors(texts_or_input_ids, tokenizer, attention_mask)  # (B, I)
        single = isinstance(texts_or_input_ids, str) or (
            isinstance(texts_or_input_ids, torch.Tensor) and texts_or_input_ids.dim() == 1
        )
        return idea_vectors[0] if single else idea_vectors

    def _idea_vectors(
        self,
        texts_or_input_ids: str | Sequence[str] | torch.Tensor,
        tokenizer: PreTrainedTokenizerBase | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The idea vectors (B, idea_size), one text included."""
        input_ids, attention_mask = self._encoder_inputs(texts_or_input_ids, tokenizer, attention_mask)
        idea_vectors, _ = self.encode(input_ids, attention_mask)
        return idea_vectors

    @torch.no_grad()
    def interpolate_and_generate(
        self,
        text_a: str | Sequence[str] | torch.Tensor,
        text_b: str | Sequence[str] | torch.Tensor,
        alpha: float,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        r"""
        Decode from `(1 - alpha) * idea_a + alpha * idea_b`: alpha 0 decodes from `text_a` alone, 1 from `text_b`
        (values outside [0, 1] extrapolate).

        Args:
            text_a, text_b (`str`, list of `str`, or `torch.LongTensor`):
                The two texts (or encoder token ids), each encoded on its own; lists of equal length interpolate row
                by row.
            alpha (`float`):
                Interpolation weight of `text_b`.
            tokenizer (`PreTrainedTokenizerBase`, *optional*):
                The encoder tokenizer; required for texts.
            generate_kwargs:
                Passed to `generate` (`max_new_tokens`, `num_beams`, `do_sample`, ...).

        Returns what `generate` returns: decoder token ids by default (decode them with the decoder tokenizer).
        """
        idea_a = self._idea_vectors(text_a, tokenizer=tokenizer)  # (B, I)
        idea_b = self._idea_vectors(text_b, tokenizer=tokenizer)  # (B, I)
        idea_vectors = (1.0 - alpha) * idea_a + alpha * idea_b
        return self.generate(idea_vectors=idea_vectors, **generate_kwargs)


__all__ = [
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerModel",
    "LatentReasonerPreTrainedModel",
    "LatentReasonerSeq2SeqLMOutput",
    "LatentReasonerSeq2SeqModelOutput",
]
