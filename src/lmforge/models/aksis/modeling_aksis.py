"""Aksis: a GPT-style decoder (learned absolute positions, pre-norm blocks, tied output head).

Read top to bottom: the linear layer, MLP, eager attention, attention, decoder layer, pre-trained base class, the bare
model and the causal language model. Shapes use B = batch, T = new tokens, S = cached + new tokens, C = hidden_size,
nh = heads, hs = head size.
"""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_aksis import AksisConfig

# transformers 5.24 renamed the cache of `forward`, `generate()` and the model outputs from `past_key_values` to
# `cache`. lmforge's transformers range still holds 5.23 (README, "Supported versions"), so the model takes the new
# name, also accepts the old one, and fills the output field the installed release has. Delete `CACHE_FIELD` and
# `accepts_past_key_values` when the lower bound reaches 5.24.
CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
ForwardFn = TypeVar("ForwardFn", bound=Callable[..., Any])


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


@functools.cache
def mkl_products_stream_on_every_core(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether torch's CPU matrix products run on MKL on an Intel CPU, where its matrix-vector product streams an
    (out, in) weight on every core. Read once per process from `cpuinfo` (False where there is none)."""
    if not torch.backends.mkl.is_available():
        return False
    try:
        with open(cpuinfo, encoding="utf-8") as lines:
            return any(line.startswith("vendor_id") and "GenuineIntel" in line for line in lines)
    except OSError:
        return False


class AksisLinear(nn.Linear):
    """`nn.Linear`, with faster paths for decoding one token at a time on the CPU.

    Unless MKL runs it on an Intel CPU (`mkl_products_stream_on_every_core`), torch's CPU matrix-vector product reads
    an (out, in) weight slowly, and on one core (an AMD EPYC: under half the speed of the paths below). So there, while
    `generate()` runs (it calls `start_decoding`), an input of at most `max_transposed_rows` rows takes a decoding path:
    - in eager decoding, it is multiplied by an (in, out) copy of the weight, made at its first use: the layout of
      GPT-2's `Conv1D`, which that product streams faster (`bench/profile_step.py`);
    - inside a compiled graph (transformers' compiled decoding step: static cache + `torch.compile`), one row is a
      multiply-and-sum over the (out, in) weight itself, which Inductor fuses into one vectorized reduction that
      streams the weight on every core: about 2x `torch.mm` over the reference size's weights, with no copy.
    The copy is dropped when `generate()` returns, so it costs memory only during eager generation and never outlives
    a change of the weight; it is not a parameter and is never saved. Everything else (training, gradients, wider
    inputs, any call outside `generate()`, and every call where MKL streams on every core: there the plain product is
    1.08x the copy in eager decoding and 1.07x the reductions in a compiled one) takes the plain `nn.Linear` path.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, max_transposed_rows: int = 1) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.max_transposed_rows = max_transposed_rows
        self._decoding = False  # `generate()` is running
        self._transposed: torch.Tensor | None = None  # the (in, out) copy, while `generate()` runs
        self._plain_products = mkl_products_stream_on_every_core()  # read here, not in a traced graph

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if (
            not self._decoding
            or self._plain_products
            or hidden_states.device.type != "cpu"
            or hidden_states.numel() > self.max_transposed_rows * self.in_features
            or torch.is_grad_enabled()
        ):
            return super().forward(hidden_states)
        rows = hidden_states.reshape(-1, self.in_features)  # (B, T, in) -> (B*T, in)
        if torch.compiler.is_compiling():
            if rows.shape[0] != 1:
                return super().forward(hidden_states)
            # Inductor would otherwise fuse the op that made `rows` (a LayerNorm, a GELU) into the reduction and
            # recompute it for every weight element; a view of it by strides makes Inductor store it once first
            rows = torch.as_strided(rows, rows.shape, rows.stride())
            out = (rows * self.weight).sum(-1)  # (1, in) * (out, in) -> (out,), one fused reduction
            if self.bias is not None:
                out = out + self.bias
        else:
            if self._transposed is None:
                self._transposed = self.weight.detach().t().contiguous()  # (out, in) -> (in, out)
            transposed = self._transposed
            out = rows @ transposed if self.bias is None else torch.addmm(self.bias, rows, transposed)
        return out.view(*hidden_states.shape[:-1], self.out_features)  # (B, T, out)

    def start_decoding(self) -> None:
        """The decoding paths on, until `end_decoding`."""
        self._decoding = True

    def end_decoding(self) -> None:
        self._decoding = False
        self._transposed = None


def dropout_from_random_bits(hidden_states: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`nn.functional.dropout`, with its keep-mask drawn from 32 random bits per element on the CPU.

    On the CPU, `nn.functional.dropout` draws its mask with `bernoulli_`, which (without the MKL path torch takes on
    Intel CPUs only) draws a uniform double, two Mersenne Twister words, for one element at a time. Here an element is
    kept when one 32-bit word of the same generator is at least p * 2**32, so with probability 1 - p (to 2**-32), and
    the kept ones are scaled by 1 / (1 - p) in the input's dtype, as `nn.functional.dropout` does: the same dropout at
    twice the speed, forward + backward (`bench/train_throughput.py --only dropout`). Seeded runs repeat exactly (and
    gradient checkpointing replays the mask), but the mask is not the one `nn.functional.dropout` draws for the same
    seed. Other devices, compiled graphs (which fuse their own) and p outside (0, 1) take `nn.functional.dropout`.
    """
    if not training or not 0.0 < p < 1.0 or hidden_states.device.type != "cpu" or torch.compiler.is_compiling():
        return nn.functional.dropout(hidden_states, p=p, training=training)
    numel = hidden_states.numel()
    words = torch.empty((numel + 1) // 2, dtype=torch.int64).random_(-(2**63), None)  # 64 random bits per 2 elements
    keep = words.view(torch.int32)[:numel].view(hidden_states.shape) >= round(p * 2**32) - 2**31  # P = 1 - p
    return hidden_states * keep.to(hidden_states.dtype).div_(1 - p)


class AksisDropout(nn.Dropout):
    """`nn.Dropout` with `dropout_from_random_bits`: the same module (`p`, train / eval), a faster mask on the CPU."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return dropout_from_random_bits(hidden_states, self.p, self.training)


class AksisMLP(nn.Module):
    """Position-wise feed-forward: C -> intermediate_size -> C."""

    def __init__(self, config: AksisConfig) -> None:
        super().__init__()
        self.up_proj = AksisLinear(config.hidden_size, config.intermediate_size, bias=config.use_bias)
        self.act_fn = ACT2FN[config.hidden_act]
        self.down_proj = AksisLinear(config.intermediate_size, config.hidden_size, bias=config.use_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(hidden_states)))  # (B, T, C) -> (B, T, C)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention; `attention_mask` is the additive 4D mask built by `create_causal_mask`."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nh, T, S)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask[:, :, :, : key.shape[-2]]
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = dropout_from_random_bits(attn_weights, dropout, module.training)
    attn_output = torch.matmul(attn_weights, value)  # (B, nh, T, hs)
    attn_output = attn_output.transpose(1, 2).contiguous()  # (B, T, nh, hs)
    return attn_output, attn_weights


def causal_attention_in_blocks(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    block_size: int = 128,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """Causal softmax attention with dropout on the probabilities, `block_size` queries at a time, for the training
    step on the CPU (no padding mask, no cache: queries and keys are the same T positions).

    SDPA's fused CPU kernel takes no dropout, so with dropout it falls back to its math path, which scores every query
    against every key, then masks, normalises, drops out and multiplies by the values all of the (B, nh, T, T) matrix,
    half of it above the diagonal and zero. Here the queries of one block only meet the keys up to the block's own
    end: the same softmax, the same Bernoulli(1 - dropout) mask scaled by 1 / (1 - dropout) on every probability that
    can be non-zero, the same sums, on (n + 1) / 2n of the matrix for n blocks (5/8 at T = 512).
    """
    seq_len = query.shape[-2]
    query = (query * scaling).contiguous()  # (B, nh, T, hs)
    key, value = key.contiguous(), value.contiguous()
    above_diagonal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=query.device).triu(1)  # (T, T)
    blocks = []
    for start in range(0, seq_len, block_size):
        end = min(start + block_size, seq_len)
        scores = torch.matmul(query[:, :, start:end], key[:, :, :end].transpose(2, 3))  # (B, nh, rows, end)
        scores = scores.masked_fill(above_diagonal[start:end, :end], float("-inf"))
        probs = nn.functional.softmax(scores, dim=-1)
        probs = dropout_from_random_bits(probs, dropout, module.training)
        blocks.append(torch.matmul(probs, value[:, :, :end]).transpose(1, 2))  # (B, rows, nh, hs)
    return torch.cat(blocks, dim=1), None  # (B, T, nh, hs)


def one_query_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """SDPA for one query per row, written out for a compiled decoding step: Inductor fuses it with the ops around it,
    where SDPA is a call of its own that splits the step's graph at every layer (1.04x the step with SDPA, paired;
    `bench/RESULTS.md`). `attention_mask` is the boolean (B, 1, 1, S) mask of `create_causal_mask`; the
    scores and their softmax are in float32, as SDPA's CPU kernel keeps them. No dropout: it serves decoding only."""
    scores = (query.float() * key.float()).sum(-1) * scaling  # (B, nh, 1, hs) * (B, nh, S, hs) -> (B, nh, S)
    scores = scores.masked_fill(~attention_mask[:, :, 0, : key.shape[-2]], float("-inf"))  # mask: (B, 1, S)
    probs = nn.functional.softmax(scores, dim=-1)
    attn_output = (probs.unsqueeze(-1) * value.float()).sum(-2)  # (B, nh, S, 1) * (B, nh, S, hs) -> (B, nh, hs)
    return attn_output.to(query.dtype).unsqueeze(1), None  # (B, T = 1, nh, hs)


class AksisAttention(nn.Module):
    """Causal multi-head self-attention with one fused query/key/value projection."""

    def __init__(self, config: AksisConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        self.qkv_proj = AksisLinear(config.hidden_size, 3 * config.hidden_size, bias=config.use_bias)
        self.o_proj = AksisLinear(config.hidden_size, config.hidden_size, bias=config.use_bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, seq_len, _ = hidden_states.shape
        # (B, T, 3C) -> 3 x (B, nh, T, hs)
        qkv = self.qkv_proj(hidden_states).view(batch_size, seq_len, 3, -1, self.head_dim)
        query_states, key_states, value_states = qkv.permute(2, 0, 3, 1, 4).unbind(0)

        if cache is not None:
            # (B, nh, T, hs) -> (B, nh, S, hs)
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        if (
            self.training
            and self.attention_dropout > 0
            and self.config._attn_implementation == "sdpa"
            and query_states.device.type == "cpu"
            and attention_mask is None
            and cache is None
        ):
            # SDPA would take its math path (no fused CPU kernel with dropout): skip the blocks above the diagonal
            attention_interface = causal_attention_in_blocks
        elif (
            seq_len == 1
            and torch.compiler.is_compiling()
            and not self.training
            and self.config._attn_implementation == "sdpa"
            and isinstance(attention_mask, torch.Tensor)
            and attention_mask.dtype == torch.bool
        ):
            # one new token per row in a compiled graph: attention that Inductor fuses with the products around it
            attention_interface = one_query_attention
        attn_output, attn_weights = attention_interface(
            self,
            query_states,
            key_states,
            value_states,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch_size, seq_len, -1)  # (B, T, nh, hs) -> (B, T, C)
        return self.o_proj(attn_output), attn_weights


class AksisDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: AksisConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = AksisAttention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = AksisMLP(config)
        self.dropout = AksisDropout(config.hidden_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        attn_output, _ = self.self_attn(
            self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = hidden_states + self.dropout(attn_output)
        hidden_states = hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states  # (B, T, C)


class AksisCacheLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values live in buffers that double when full, instead of a `torch.cat` of the
    whole cache at every step: appending a token copies one token, so decoding stops paying O(cache length) per step.

    `keys` / `values` stay what `DynamicLayer` promises, (B, nh, S, hs) tensors (views of the buffers), so every
    `Cache` method works unchanged; when one of them replaces the tensors (beam reordering, batch selection), the next
    `update` sees it and starts new buffers from them.
    """

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self.keys is not None and self.values is not None
        cached = self.keys.shape[-2] if self.keys.numel() else 0
        total = cached + key_states.shape[-2]
        buffers = self._buffers
        if (
            buffers is None
            or buffers[0].shape[-2] < total
            or self.keys.data_ptr() != buffers[0].data_ptr()
            or self.values.data_ptr() != buffers[1].data_ptr()
            or buffers[0].shape[:2] != key_states.shape[:2]
        ):
            capacity = max(2 * total, 64)
            key_buffer = key_states.new_empty((*key_states.shape[:2], capacity, key_states.shape[-1]))
            value_buffer = value_states.new_empty((*value_states.shape[:2], capacity, value_states.shape[-1]))
            if cached:
                key_buffer[:, :, :cached] = self.keys
                value_buffer[:, :, :cached] = self.values
            buffers = self._buffers = (key_buffer, value_buffer)
        buffers[0][:, :, cached:total] = key_states
        buffers[1][:, :, cached:total] = value_states
        self.keys, self.values = buffers[0][:, :, :total], buffers[1][:, :, :total]  # (B, nh, S, hs)
        return self.keys, self.values


class AksisCache(DynamicCache):
    """The `DynamicCache` of Aksis: one `AksisCacheLayer` per decoder layer."""

    def __init__(self, config: AksisConfig | None = None) -> None:
        Cache.__init__(self, layer_class_to_replicate=AksisCacheLayer)


class AksisPreTrainedModel(PreTrainedModel):
    config_class = AksisConfig
    config: AksisConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["AksisDecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    # What `output_hidden_states` / `output_attentions` collect (hooks installed by `capture_outputs`): the input of
    # the first layer and the output of every layer, and the attention probabilities of every layer.
    _can_record_outputs = {"hidden_states": AksisDecoderLayer, "attentions": AksisAttention}
    # The classes a saved folder names in `auto_map`, so it loads as the base model or with its head
    _auto_map_classes = {"AutoModel": "AksisModel", "AutoModelForCausalLM": "AksisForCausalLM"}

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained`. A model saved with its code (its class registered for an Auto class, as
        `import lmforge` or loading with `trust_remote_code=True` does) names both classes of `_auto_map_classes` in
        `auto_map`, so the folder loads with `AutoModel` and with `AutoModelForCausalLM` where lmforge is absent."""
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({auto: f"{module}.{name}" for auto, name in self._auto_map_classes.items()})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 style initialisation: N(0, initializer_range) for weights, zeros for biases, LayerNorm at 1/0; the
        padding token's embedding row at zero (it gets no gradient, as in Llama)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class AksisModel(AksisPreTrainedModel):
    """Token + learned position embeddings, the decoder blocks and a final LayerNorm."""

    def __init__(self, config: AksisConfig) -> None:
        super().__init__(config)
        self.embed_tokens: nn.Module = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = AksisDropout(config.hidden_dropout)
        self.layers = nn.ModuleList(AksisDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    @accepts_past_key_values
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T) -> (B, T, C)
        if use_cache is None:  # a training step has no use for a cache: building one would only copy keys and values
            use_cache = self.config.use_cache and not self.training
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and cache is None:
            # what in-library models return; generate() uses AksisCache
            cache = DynamicCache(config=self.config)

        if position_ids is None:
            past_seen = cache.get_seq_length() if cache is not None else 0
            # an offset added to arange (as Llama does), not arange's start: a static cache's length is a tensor,
            # and this keeps it one, so that torch.export traces the step (no `.item()`)
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen
            position_ids = position_ids.unsqueeze(0)  # (1, T)
        if not torch.compiler.is_compiling() and int(position_ids.max()) >= self.config.max_position_embeddings:
            raise ValueError(
                f"The sequence reaches position {int(position_ids.max())}, past the context length of "
                f"{self.config.max_position_embeddings} (max_position_embeddings); shorten the prompt or "
                "max_new_tokens."
            )

        # the cache goes by position: its keyword is `past_key_values` before transformers 5.24, `cache` from 5.24
        causal_mask = create_causal_mask(self.config, inputs_embeds, attention_mask, cache, position_ids=position_ids)
        hidden_states = self.dropout(inputs_embeds + self.embed_positions(position_ids))  # (B, T, C)
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                attention_mask=causal_mask,
                cache=cache,
                **kwargs,
            )
        hidden_states = self.norm(hidden_states)
        cache_output: dict[str, Any] = {CACHE_FIELD: cache if use_cache else None}
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, **cache_output)


def causal_lm_loss_without_logits(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    chunk_rows: int = 256,
    **kwargs: Any,
) -> torch.Tensor:
    """transformers' `ForCausalLMLoss` of the logits `hidden_states @ weight.T`, without holding them: torch's
    chunked `linear_cross_entropy` computes the loss and its gradients `chunk_rows` positions at a time (a 256 x 10,004
    block of fp32 logits is 10 MB, which stays in cache). The same labels (shifted inside, `ignore_index` ignored), the
    same reduction (the mean, or the sum over `num_items_in_batch`). Under autocast the product runs in the autocast
    dtype, as the head's would."""
    device = hidden_states.device
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]  # (B, T): token t predicts t+1
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else hidden_states.dtype
    rows = hidden_states.reshape(-1, hidden_states.shape[-1]).to(dtype)  # (B, T, C) -> (B*T, C)
    loss = nn.functional.linear_cross_entropy(
        rows,
        weight.to(dtype),
        shift_labels.reshape(-1).to(device),  # (B*T,)
        ignore_index=ignore_index,
        reduction="mean" if num_items_in_batch is None else "sum",
        options=nn.LinearCrossEntropyOptions(batch_chunk_size=chunk_rows),
    ).float()
    if num_items_in_batch is not None:
        loss = loss / (num_items_in_batch.to(device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch)
    return loss


class AksisForCausalLM(AksisPreTrainedModel, GenerationMixin):
    """Aksis with a language-modelling head tied to the token embedding."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    # The head of the parallel plans (the config's `base_model_tp_plan` / `base_model_pp_plan`): the vocabulary split
    # by columns and gathered, the last pipeline stage turning hidden states into logits.
    _tp_plan = {"lm_head": "colwise_rep"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}  # type: ignore[dict-item]  # as LlamaForCausalLM

    def __init__(self, config: AksisConfig) -> None:
        super().__init__(config)
        self.model = AksisModel(config)
        self.lm_head = AksisLinear(config.hidden_size, config.vocab_size, bias=False, max_transposed_rows=4)
        if config.tie_word_embeddings:
            # A tied head is not saved. Named here, the Trainer's load of the best checkpoint (load_best_model_at_end)
            # ties it again instead of warning that it is missing.
            self._keys_to_ignore_on_save = {"lm_head.weight"}
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """`GenerationMixin.generate`, with an `AksisCache` (unless another cache is asked for) and the decoding path
        of every `AksisLinear` on for the length of the call."""
        positional = dict(zip(("inputs", "generation_config"), args, strict=False))  # generate(inputs, config)
        generation_config = kwargs.get("generation_config") or positional.get("generation_config")
        generation_config = generation_config or self.generation_config
        if (
            kwargs.get("cache") is None
            and kwargs.get("past_key_values") is None
            and kwargs.get("use_cache", generation_config.use_cache) is not False
            and kwargs.get("cache_implementation", generation_config.cache_implementation) in (None, "dynamic")
        ):
            kwargs[CACHE_FIELD] = AksisCache(self.config)
        linears = [module for module in self.modules() if isinstance(module, AksisLinear)]
        self._generate_calls = getattr(self, "_generate_calls", 0) + 1
        for linear in linears:
            linear.start_decoding()
        try:
            return super().generate(*args, **kwargs)
        finally:
            self._generate_calls -= 1
            if self._generate_calls == 0:  # the last of concurrent calls drops the copies
                for linear in linears:
                    linear.end_decoding()

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        skip_logits: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(B, T)`, *optional*):
            Targets for the next-token loss; they are shifted inside, -100 is ignored.
        logits_to_keep (`int` or `torch.Tensor`, defaults to 0):
            Compute logits for the last `logits_to_keep` positions only (0 keeps all); generation uses 1.
        skip_logits (`bool`, *optional*):
            Compute the loss without the logits, which are returned as None (`causal_lm_loss_without_logits`: the
            (B, T, vocab) logits and their gradient are never held whole). Needs `labels`. The keyword transformers'
            Trainer passes for a fused loss; the training argument `skip_logits: true` passes it wherever only the loss is needed.
        """
        outputs: BaseModelOutputWithPast = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,  # the head builds its own output (a tuple too, when asked) from the base model's
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs[0], logits_to_keep)  # (B, T, C) -> the positions to score

        logits, loss = None, None
        if skip_logits:
            if labels is None:
                raise ValueError("skip_logits=True computes the loss without the logits: pass labels too.")
            loss = causal_lm_loss_without_logits(hidden_states, self.lm_head.weight, labels, **kwargs)
        else:
            logits = self.lm_head(hidden_states)  # (B, T, C) -> (B, T, vocab)
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        cache_output: dict[str, Any] = {CACHE_FIELD: getattr(outputs, CACHE_FIELD)}
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **cache_output,
        )


__all__ = ["AksisForCausalLM", "AksisModel", "AksisPreTrainedModel"]
