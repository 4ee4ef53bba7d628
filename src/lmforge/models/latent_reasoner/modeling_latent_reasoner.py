"""LatentReasoner: a frozen encoder and a frozen causal decoder joined through one trainable idea vector per text.

Read top to bottom: the MLP and the prefix adapter, the helpers (mean pooling, right shift), the output class, the
pre-trained base class and the model. The data flow of `forward`:

    input_ids -> encoder -> mean-pool (mask aware) -> compression MLP -> idea (B, I)
    idea -> middle MLP -> prefix adapter -> prefix (B, P, D)
    [prefix ; decoder token embeddings] -> decoder -> logits of the decoder tokens (B, T, V)

Shapes use B = batch, S = encoder tokens, H = encoder width, I = idea_size, P = num_prefix_tokens, T = decoder tokens,
D = decoder width, V = decoder vocabulary.

Labels follow the sequence-to-sequence convention of BART, T5 and `EncoderDecoderModel`: `labels[:, t]` is the token
the decoder should write after reading `decoder_input_ids[:, : t + 1]`, so `decoder_input_ids` is `labels` shifted one
step right behind `decoder_start_token_id` (the model builds it when only `labels` are given). -100 marks positions
without a loss (padding, or a decoder prompt). The prefix never receives a loss.

The model needs two tokenizers: the encoder's, to turn input text into `input_ids`, and the decoder's, to build
`labels` and to decode what `generate` writes. Methods that take text accept the encoder tokenizer as `tokenizer=`.
A saved model keeps the decoder tokenizer at the top level of the folder and the encoder tokenizer in the
`encoder_tokenizer/` subfolder (see `tokenization_latent_reasoner.py`), so without lmforge:
`AutoTokenizer.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path, subfolder="encoder_tokenizer")`.
"""

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

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
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils.generic import can_return_tuple

from .configuration_latent_reasoner import LatentReasonerConfig

# Cache implementations `generate` may use: the prefix sits in front of the decoder tokens, which a static cache
# (sized in decoder tokens, with masks built without the prefix) does not account for.
SUPPORTED_CACHE_IMPLEMENTATIONS = (None, "dynamic", "offloaded")


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


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """`decoder_input_ids` from `labels`: one step right behind the start token, -100 replaced by the pad token."""
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


@dataclass
class LatentReasonerSeq2SeqLMOutput(Seq2SeqLMOutput):
    r"""
    The sequence-to-sequence output, with the idea vectors the decoder was conditioned on.

    `logits` cover the decoder tokens only (the prefix positions are dropped); `decoder_hidden_states` and
    `decoder_attentions`, when asked for, are the decoder's own and do include the prefix positions.

    idea_vectors (`torch.FloatTensor` of shape `(B, idea_size)`, *optional*):
        The idea vectors (before the middle MLP); `None` on generation steps that reuse a cache holding the prefix.
    """

    idea_vectors: torch.Tensor | None = None


class LatentReasonerPreTrainedModel(PreTrainedModel):
    config_class = LatentReasonerConfig
    config: LatentReasonerConfig
    base_model_prefix = "latent_reasoner"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) weights and zero biases for the MLP layers; the backbones init themselves."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class LatentReasonerForConditionalGeneration(LatentReasonerPreTrainedModel, GenerationMixin):
    r"""
    Encoder -> idea vector -> prefix -> causal decoder. Only the three MLPs (`compression`, `middle`,
    `prefix_adapter`) train by default; the encoder and the decoder are frozen per `config.freeze_encoder` /
    `config.freeze_decoder`, and stay frozen after `from_pretrained`.

    Build it in one of three ways:

    - `LatentReasonerForConditionalGeneration(config)`: randomly initialised backbones from `config.encoder` and
      `config.decoder` (`AutoModel.from_config`, `AutoModelForCausalLM.from_config`);
    - `LatentReasonerForConditionalGeneration(config, encoder=..., decoder=...)`, or without `config` (it is then built
      from the two modules' configs): existing modules;
    - [`~LatentReasonerForConditionalGeneration.from_encoder_decoder_pretrained`]: pretrained backbones.

    A saved model (`save_pretrained`, safetensors only) holds the backbone weights too and loads with
    `AutoModelForSeq2SeqLM.from_pretrained(path)` (with `trust_remote_code=True` where lmforge is not installed).

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
            A causal language model accepting `inputs_embeds`; created from `config.decoder` when omitted.
        """
        if config is None:
            if encoder is None or decoder is None:
                raise ValueError(
                    "Pass a LatentReasonerConfig, or both an encoder and a decoder module to build the config from."
                )
            config = LatentReasonerConfig(encoder=encoder.config, decoder=decoder.config)
        elif getattr(config, "model_type", None) != LatentReasonerConfig.model_type:
            # (compared by model_type: with trust_remote_code the config class may come from another module copy)
            raise TypeError(f"config must be a LatentReasonerConfig, got {type(config).__name__}.")
        super().__init__(config)
        encoder_config, decoder_config = config.encoder, config.decoder
        if not isinstance(encoder_config, PreTrainedConfig) or not isinstance(decoder_config, PreTrainedConfig):
            raise TypeError("config.encoder and config.decoder must be configs; build the config with its class.")

        if encoder is None:
            encoder = AutoModel.from_config(encoder_config)
        if decoder is None:
            decoder = AutoModelForCausalLM.from_config(decoder_config)
        if decoder.get_output_embeddings() is None:
            raise ValueError(
                f"The decoder ({type(decoder).__name__}) has no language-modelling head; load it with "
                "AutoModelForCausalLM."
            )
        self.encoder = encoder
        self.decoder = decoder
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
        self._decoder_forward_parameters = set(inspect.signature(self.decoder.forward).parameters)
        self.post_init()
        self.apply_freezing()

    # ----------------------------------------------------------------------------------------------------------------
    # Construction, freezing, loading

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
        """Freeze the encoder / decoder as the config says (`requires_grad=False`; the training mode is untouched, so
        dropout and gradient checkpointing behave as usual, as with PEFT adapters on a frozen base model)."""
        if self.config.freeze_encoder:
            self.encoder.requires_grad_(False)
        if self.config.freeze_decoder:
            self.decoder.requires_grad_(False)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module | None:
        return self.decoder.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.decoder.set_output_embeddings(new_embeddings)

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "The encoder and the decoder have separate vocabularies; resize one of them directly, e.g. "
            "`model.decoder.resize_token_embeddings(n)`."
        )

    # ----------------------------------------------------------------------------------------------------------------
    # The pieces of the forward pass

    def _encoder_is_trainable(self) -> bool:
        return any(parameter.requires_grad for parameter in self.encoder.parameters())

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
        outputs: BaseModelOutput
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("Pass input_ids (the text to read), encoder_outputs or idea_vectors.")
            with torch.set_grad_enabled(torch.is_grad_enabled() and self._encoder_is_trainable()):
                outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        elif isinstance(encoder_outputs, tuple):
            outputs = BaseModelOutput(*encoder_outputs)
        else:
            outputs = encoder_outputs
        if outputs.last_hidden_state is None:
            raise ValueError("The encoder output has no last_hidden_state; use a bare encoder (AutoModel).")
        pooled = mean_pool(outputs.last_hidden_state, attention_mask)  # (B, S, H) -> (B, H)
        idea_vectors = self.compression(pooled.to(self.compression.dtype))  # (B, H) -> (B, I)
        return idea_vectors, outputs

    def get_prefix_embeddings(self, idea_vectors: torch.Tensor) -> torch.Tensor:
        """Middle MLP -> prefix adapter: idea vectors (B, I) -> prefix embeddings (B, P, D)."""
        return self.prefix_adapter(self.middle(idea_vectors))

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

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        idea_vectors: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> LatentReasonerSeq2SeqLMOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(B, S)`, *optional*):
            The text to read, in the encoder's vocabulary.
        attention_mask (`torch.Tensor` of shape `(B, S)`, *optional*):
            Encoder mask (1 = token, 0 = padding); the mean pooling skips padding.
        decoder_input_ids (`torch.LongTensor` of shape `(B, T)`, *optional*):
            Decoder tokens written after the prefix, starting with `decoder_start_token_id`; built from `labels`
            when omitted. With a cache that already holds the prefix, only the new tokens.
        decoder_attention_mask (`torch.Tensor` of shape `(B, T_total)`, *optional*):
            Mask over all decoder tokens so far (prefix excluded, it is always attended); positions follow it.
        encoder_outputs (`BaseModelOutput`, *optional*):
            Precomputed encoder outputs (what `generate` passes); `input_ids` are then not needed.
        idea_vectors (`torch.Tensor` of shape `(B, idea_size)`, *optional*):
            Condition on these idea vectors instead of reading a text (encoder and compression MLP skipped).
        past_key_values (`Cache`, *optional*):
            The decoder's cache. While it is empty the prefix is computed and put in front of the decoder tokens;
            once it holds the prefix, only the new decoder tokens are fed.
        labels (`torch.LongTensor` of shape `(B, T)`, *optional*):
            `labels[:, t]` is the target after `decoder_input_ids[:, : t + 1]`; -100 is ignored (padding, prompt).
            Turns `use_cache` off.
        logits_to_keep (`int`, defaults to 0):
            Compute logits for the last `logits_to_keep` decoder positions only (0 keeps all); generation uses 1.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        output_kwargs: dict[str, Any] = {
            key: kwargs[key] for key in ("output_attentions", "output_hidden_states") if key in kwargs
        }
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)  # type: ignore[assignment]
        if decoder_input_ids is None:
            raise ValueError("Pass decoder_input_ids (the decoder tokens after the prefix) or labels to build them.")

        # `generate` wraps the decoder cache in an EncoderDecoderCache; the decoder only needs the self-attention part.
        if isinstance(past_key_values, EncoderDecoderCache):
            decoder_cache: Cache | None = past_key_values.self_attention_cache
        else:
            decoder_cache = past_key_values
        past_length = decoder_cache.get_seq_length() if decoder_cache is not None else 0

        inputs_embeds = self.decoder.get_input_embeddings()(decoder_input_ids)  # (B, T) -> (B, T, D)
        num_prefix = 0
        if past_length == 0:  # the prefix is not in a cache yet: compute it and put it in front of the tokens
            if idea_vectors is None:
                idea_vectors, encoder_outputs = self.encode(
                    input_ids, attention_mask, encoder_outputs, **output_kwargs
                )
            else:
                encoder_outputs = None
            if idea_vectors.shape[0] != inputs_embeds.shape[0]:
                raise ValueError(
                    f"The encoder side has batch size {idea_vectors.shape[0]} but decoder_input_ids have "
                    f"{inputs_embeds.shape[0]}; pass one decoder row per input text."
                )
            prefix_embeds = self.get_prefix_embeddings(idea_vectors).to(inputs_embeds.dtype)  # (B, P, D)
            inputs_embeds = torch.cat([prefix_embeds, inputs_embeds], dim=1)  # (B, P + T, D)
            num_prefix = prefix_embeds.shape[1]
        else:
            idea_vectors, encoder_outputs = None, None

        decoder_kwargs: dict[str, Any] = dict(output_kwargs)
        if decoder_attention_mask is not None:
            full_length = past_length + inputs_embeds.shape[1]
            num_prefix_tokens = self.config.num_prefix_tokens
            if decoder_attention_mask.shape[1] != full_length - num_prefix_tokens:
                raise ValueError(
                    f"decoder_attention_mask covers {decoder_attention_mask.shape[1]} tokens but the decoder has seen "
                    f"{full_length - num_prefix_tokens} (cached and new, prefix excluded); pass the mask of all "
                    "decoder tokens so far."
                )
            prefix_mask = decoder_attention_mask.new_ones(decoder_attention_mask.shape[0], num_prefix_tokens)
            full_mask = torch.cat([prefix_mask, decoder_attention_mask], dim=1)  # (B, P + T_total)
            position_ids = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -inputs_embeds.shape[1] :]
            decoder_kwargs.update(attention_mask=full_mask, position_ids=position_ids)
        if logits_to_keep and "logits_to_keep" in self._decoder_forward_parameters:
            decoder_kwargs["logits_to_keep"] = logits_to_keep

        decoder_outputs = self.decoder(
            inputs_embeds=inputs_embeds, past_key_values=decoder_cache, use_cache=use_cache, **decoder_kwargs
        )
        # (B, P + T, V) -> (B, T, V): logits of the decoder tokens only
        logits = (
            decoder_outputs.logits[:, -logits_to_keep:] if logits_to_keep else decoder_outputs.logits[:, num_prefix:]
        )

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

        # The decoder updates its cache in place; hand it back in the EncoderDecoderCache of a seq2seq output.
        returned_cache = past_key_values if isinstance(past_key_values, EncoderDecoderCache) else None
        new_decoder_cache = getattr(decoder_outputs, "past_key_values", None)
        if returned_cache is None and new_decoder_cache is not None:
            returned_cache = EncoderDecoderCache(new_decoder_cache, DynamicCache())
        return LatentReasonerSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=returned_cache,
            decoder_hidden_states=getattr(decoder_outputs, "hidden_states", None),
            decoder_attentions=getattr(decoder_outputs, "attentions", None),
            encoder_last_hidden_state=encoder_outputs.last_hidden_state if encoder_outputs is not None else None,
            encoder_hidden_states=encoder_outputs.hidden_states if encoder_outputs is not None else None,
            encoder_attentions=encoder_outputs.attentions if encoder_outputs is not None else None,
            idea_vectors=idea_vectors,
        )

    # ----------------------------------------------------------------------------------------------------------------
    # Generation and the latent-space helpers

    def generate(  # type: ignore[override]
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        *args: Any,
        idea_vectors: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        r"""
        `GenerationMixin.generate` (greedy, sampling, beam search; the decoder's KV cache holds the prefix after the
        first step), plus `idea_vectors=` to decode from given idea vectors instead of reading a text.

        The encoder runs once; the decoder starts with `decoder_start_token_id` after the prefix, so the returned
        ids start with it (decode with `skip_special_tokens=True`). Dynamic caches only (the default).

        Args:
            inputs / input_ids (`torch.LongTensor` of shape `(B, S)`, *optional*):
                The text to read, in the encoder's vocabulary (with its `attention_mask`).
            idea_vectors (`torch.Tensor` of shape `(B, idea_size)`, *optional*):
                Decode from these idea vectors (e.g. from `get_latent_vector`); excludes `input_ids`.
            kwargs:
                Generation settings (`max_new_tokens`, `do_sample`, `temperature`, `top_p`, `num_beams`, ...) and
                model inputs (`attention_mask`, `decoder_input_ids` for a decoder prompt, ...).
        """
        config = generation_config if generation_config is not None else self.generation_config
        cache_implementation = kwargs.get("cache_implementation", config.cache_implementation)
        if cache_implementation not in SUPPORTED_CACHE_IMPLEMENTATIONS:
            raise ValueError(
                f"LatentReasoner generates with a dynamic cache (the prefix is not counted in a static cache); got "
                f"cache_implementation={cache_implementation!r}, use one of {SUPPORTED_CACHE_IMPLEMENTATIONS}."
            )
        if idea_vectors is not None:
            if inputs is not None or kwargs.get("input_ids") is not None or kwargs.get("encoder_outputs") is not None:
                raise ValueError("Pass either idea_vectors or a text to read (input_ids / encoder_outputs), not both.")
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
        device = self.encoder.device
        return input_ids.to(device), attention_mask.to(device) if attention_mask is not None else None

    @torch.no_grad()
    def get_latent_vector(
        self,
        texts_or_input_ids: str | Sequence[str] | torch.Tensor,
        tokenizer: PreTrainedTokenizerBase | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        The idea vectors (B, idea_size) of texts: encoder, mask-aware mean pooling, compression MLP.

        Args:
            texts_or_input_ids (`str`, list of `str`, or `torch.LongTensor` of shape `(B, S)` or `(S,)`):
                Texts (tokenised with `tokenizer`, padded) or encoder token ids.
            tokenizer (`PreTrainedTokenizerBase`, *optional*):
                The encoder tokenizer; required for texts.
            attention_mask (`torch.Tensor`, *optional*):
                Mask of the given token ids (ignored for texts).

        Runs without gradients in the model's current mode (call `model.eval()` to switch off dropout).
        """
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
        idea_a = self.get_latent_vector(text_a, tokenizer=tokenizer)  # (B, I)
        idea_b = self.get_latent_vector(text_b, tokenizer=tokenizer)  # (B, I)
        idea_vectors = (1.0 - alpha) * idea_a + alpha * idea_b
        return self.generate(idea_vectors=idea_vectors, **generate_kwargs)


__all__ = [
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerPreTrainedModel",
    "LatentReasonerSeq2SeqLMOutput",
]
