"""AE-LLM: a GRU sequence-to-sequence autoencoder with a "Thinking Net" between encoder and decoder.

    question --encoder--> latent --Thinking Net--> answer latent --decoder--> answer      (mode "answer")
    text     --encoder--> latent ------------------------------> --decoder--> text        (mode "reconstruct")

Read top to bottom: the decoder cache (the GRU states), the encoder, the decoder, the Thinking Net parts (memory,
gated MLP, sparse mixture of experts, gated block, hyper-adapter), the pre-trained base class, the bare encoder-decoder
model (`AELLMModel`, the `AutoModel` class) and the conditional-generation model (`AELLMModel` + output layer). Shapes
use B = batch, S = encoder tokens, T = decoder tokens, E = embedding_size, H = hidden_size, L = latent_size,
V = vocab_size, n = num_hidden_layers, X = num_experts, k = num_experts_per_tok, M = memory_slots.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn import functional as F
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPast,
    ModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_ae_llm import AELLMConfig

MODES = ("answer", "reconstruct")

# transformers 5.24 renamed the cache of `forward`, `generate()` and the model outputs from `past_key_values` to
# `cache`; lmforge supports 5.23 too. The model takes the new name, also accepts the old one, and fills the output field
# the installed release has.
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


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Labels -> decoder inputs: prepend the start token, drop the last token, replace -100 by the pad token."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def real_tokens_first(attention_mask: torch.Tensor | None, new_tokens: int) -> torch.Tensor | None:
    """The (B, T) order that puts the real tokens of the last `new_tokens` columns of a (B, >= T) mask first, in
    order; None when no padding comes before a real token (no mask, no padding, or right padding only)."""
    if attention_mask is None:
        return None
    mask = attention_mask[:, -new_tokens:]
    if bool((mask[:, 1:] > mask[:, :-1]).any()):  # a 0 followed by a 1: padding before a real token
        return torch.argsort((mask == 0).to(torch.int8), dim=1, stable=True)
    return None


def to_positions(tensor: torch.Tensor | None, order: torch.Tensor, dim: int) -> torch.Tensor | None:
    """Undo `gather(dim, order)`: the (..., T, ...) values computed in `order` put back at their positions."""
    if tensor is None:
        return None
    shape = [1] * tensor.dim()
    shape[0 if dim == 1 else 1], shape[dim] = order.shape  # (B, T) at the batch and time dimensions
    index = order.view(shape).expand_as(tensor)
    return torch.empty_like(tensor).scatter(dim, index, tensor)


def load_balancing_loss(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Switch/Mixtral load-balancing loss: X * sum_e f_e * P_e / k.

    f_e is the fraction of the B x k routing slots sent to expert e and P_e the mean router probability of e. It is 1.0
    for a balanced router (uniform probabilities) and grows up to X / k when the router collapses onto k experts.
    """
    num_experts = router_logits.shape[-1]
    probs = F.softmax(router_logits.float(), dim=-1)  # (B, X)
    _, selected = torch.topk(probs, top_k, dim=-1)  # (B, k)
    expert_mask = F.one_hot(selected, num_experts).float()  # (B, k, X)
    fraction_routed = expert_mask.mean(dim=0)  # (k, X)
    mean_prob = probs.mean(dim=0)  # (X,)
    return num_experts * (fraction_routed * mean_prob.unsqueeze(0)).sum() / top_k


def bag_of_words_loss(bow_logits: torch.Tensor, labels: torch.Tensor, ignore_ids: list[int]) -> torch.Tensor:
    """Mean negative log-likelihood of every answer token under one distribution predicted from the latent.

    Word order is ignored: the latent alone has to announce which tokens the answer contains. Positions at -100 and
    the special tokens in `ignore_ids` do not count.
    """
    log_probs = F.log_softmax(bow_logits.float(), dim=-1)  # (B, V)
    valid = labels != -100
    for token_id in ignore_ids:
        valid &= labels != token_id
    targets = labels.masked_fill(~valid, 0)  # (B, T)
    token_log_probs = log_probs.gather(1, targets)  # (B, V) -> (B, T)
    return -(token_log_probs * valid).sum() / valid.sum().clamp(min=1)


def copy_alignment(
    labels: torch.Tensor, source_ids: torch.Tensor, source_mask: torch.Tensor, ignore_ids: list[int]
) -> torch.Tensor:
    """Where each label token can be copied from: (B, T) labels (-100 ignored), (B, S) input tokens and mask ->
    (B, T, S) booleans. When the labels' tokens (the ones not in `ignore_ids`, i.e. the answer without its `</s>`)
    occur as one whole span of the input, label t is aligned to position start + t of every such span; otherwise to
    every input position holding the same token. Ignored label tokens are aligned nowhere."""
    valid = labels != -100
    for token_id in ignore_ids:
        valid &= labels != token_id
    same = (labels.unsqueeze(-1) == source_ids.unsqueeze(1)) & valid.unsqueeze(-1) & source_mask.bool().unsqueeze(1)
    batch_size, seq_len, src_len = same.shape
    # span[b, s]: the valid labels of row b, in order, are the input tokens s, s + 1, ... (labels ignored at t skip
    # nothing: the answer's tokens come first, then </s> and padding)
    span = valid.any(dim=1, keepdim=True).expand(-1, src_len).clone()  # (B, S)
    for t in range(seq_len):
        shifted = torch.zeros_like(span)
        if t < src_len:
            shifted[:, : src_len - t] = same[:, t, t:]
        span &= shifted | ~valid[:, t : t + 1]
    aligned = torch.zeros_like(same)
    for t in range(min(seq_len, src_len)):
        aligned[:, t, t:] = span[:, : src_len - t] & valid[:, t : t + 1]
    has_span = span.any(dim=1).view(batch_size, 1, 1)
    return torch.where(has_span, aligned, same)


def copy_supervision_loss(attention: torch.Tensor, copy_gate: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
    """The copy loss: the mean over aligned label tokens of -log((1 - p_gen) * sum of the attention weights on their
    aligned positions), the log-probability that the copy head copies the token from where it stands in the input.
    (B, T, S) attention, (B, T, 1) p_gen and (B, T, S) alignment ([`copy_alignment`]) -> a scalar (0 with no aligned
    token)."""
    targets = aligned.any(dim=-1)  # (B, T)
    mass = (attention.float() * aligned).sum(dim=-1)  # (B, T)
    log_prob = torch.log(((1.0 - copy_gate.float().squeeze(-1)) * mass).clamp(min=1e-12))
    return -(log_prob * targets).sum() / targets.sum().clamp(min=1)


class AELLMRecurrentCache(Cache):
    """The decoder cache: the state of every decoder GRU layer after each token decoded so far, `states` (n, B, T, H).

    A GRU goes on from its last state alone (`hidden_state`, (n, B, H), fixed in size), so there are no key/value
    layers. The states after the earlier tokens are kept as well (n, B, T and H are small) so that `crop` can roll the
    decoder back to an earlier token: assisted decoding and prompt lookup need that after rejecting draft tokens.
    Beam search reorders the batch rows with `reorder_cache`. There is nothing to make static or to compile: see
    `AELLMForConditionalGeneration`.
    """

    def __init__(self, config: AELLMConfig | None = None) -> None:
        super().__init__(layers=[])
        self.states: torch.Tensor | None = None  # (n, B, T, H)

    def __len__(self) -> int:
        """The number of decoder layers held (0 before the first token), like `DynamicCache`."""
        return 0 if self.states is None else self.states.shape[0]

    @property
    def hidden_state(self) -> torch.Tensor | None:
        """The state after the last cached token, (n, B, H); None for an empty cache."""
        return None if self.states is None else self.states[:, :, -1].contiguous()

    def update_states(self, states: torch.Tensor) -> None:
        """Append the (n, B, T_new, H) states of newly decoded tokens."""
        self.states = states if self.states is None else torch.cat([self.states, states], dim=2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.states is None else self.states.shape[2]

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.states is not None:
            self.states = self.states.index_select(1, beam_idx.to(self.states.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.states is not None:
            self.states = self.states.repeat_interleave(repeats, dim=1)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.states is not None:
            self.states = self.states[:, indices]

    def reset(self) -> None:
        self.states = None

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last `-tokens_to_remove` tokens: the decoder goes on from the state before them. As in
        transformers' caches the count is negative (or 0, which keeps everything)."""
        if tokens_to_remove > 0:
            raise ValueError(
                f"Calling `crop` with a positive value (`{tokens_to_remove}`) is not supported; pass minus the number "
                "of tokens to remove."
            )
        if tokens_to_remove == 0 or self.states is None:
            return
        keep = self.get_seq_length() + tokens_to_remove
        self.states = self.states[:, :, :keep] if keep > 0 else None

    def activate_past_recording(self) -> None:
        """Nothing to switch on: the states after every token are always kept, so `crop` always works."""

    @property
    def is_croppable(self) -> bool:
        return True

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def batch_size(self) -> int:
        return -1 if self.states is None else self.states.shape[1]


@dataclass
class AELLMEncoderOutput(BaseModelOutput):
    r"""
    The encoder's output: `last_hidden_state` is the latent (B, 1, L); `hidden_states` (with `output_hidden_states`)
    the input embeddings and each GRU layer's outputs. With `decoder_attention`, what the decoder attends to as well:

    states (`torch.FloatTensor` of shape `(B, S, D)`):
        The top GRU layer's outputs, zero at padded positions (D = hidden_size, twice that with
        `bidirectional_encoder`).
    source_ids (`torch.LongTensor` of shape `(B, S)`):
        The input tokens (what the copy head copies; from `inputs_embeds`, the nearest rows of the embedding table).
    source_mask (`torch.LongTensor` of shape `(B, S)`):
        1 on real tokens, 0 on padding.
    previous_embeds (`torch.FloatTensor` of shape `(B, S, E)`):
        At each input position, the embedding of the input token before it (zeros where there is none).
    """

    states: torch.Tensor | None = None
    source_ids: torch.Tensor | None = None
    source_mask: torch.Tensor | None = None
    previous_embeds: torch.Tensor | None = None


class AELLMEncoderSelfAttention(nn.Module):
    """Self-attention over the encoder's top-layer states (`encoder_self_attention`), so that each input position reads
    the others, a sentence word the question's words: states + W_o MultiHead(LayerNorm(states)), one head per 64
    channels (at least one), padding neither attended to nor returned (zeros). W_o starts at zero, so the layer starts
    as the identity: added to a trained model, it changes nothing until it learns."""

    def __init__(self, config: AELLMConfig, size: int) -> None:
        super().__init__()
        heads = max(1, size // 64)
        self.num_heads = heads if size % heads == 0 else 1
        self.norm = nn.LayerNorm(size, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(size, 3 * size)
        self.out_proj = nn.Linear(size, size)
        self.out_proj.zero_init = True  # type: ignore[assignment]  # read by _init_weights: the layer starts as identity
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, states: torch.Tensor, mask: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, S, D) states and (B, S) mask -> (B, S, D) states that read every real input position, and with
        `output_attentions` the (B, heads, S, S) attention weights (computed in the open; SDPA otherwise)."""
        batch_size, seq_len, size = states.shape
        qkv = self.qkv(self.norm(states)).view(batch_size, seq_len, 3, self.num_heads, size // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, heads, S, D / heads)
        keep = mask.bool()[:, None, None, :]  # (B, 1, 1, S): attend to real tokens only
        weights = None
        if output_attentions:
            scores = (query @ key.transpose(-1, -2)) * query.shape[-1] ** -0.5  # (B, heads, S, S)
            weights = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(dim=-1)
            read = weights @ value  # (B, heads, S, D / heads)
        else:
            read = F.scaled_dot_product_attention(query, key, value, attn_mask=keep)  # (B, heads, S, D / heads)
        read = read.transpose(1, 2).reshape(batch_size, seq_len, size)
        return (states + self.dropout(self.out_proj(read))) * mask.unsqueeze(-1).to(states.dtype), weights


class AELLMEncoder(nn.Module):
    """Token embedding and `num_hidden_layers` stacked GRU layers (one `nn.GRU` each, so that every layer's outputs
    can be returned; bidirectional with `bidirectional_encoder`); the last state of the top layer (both directions')
    is projected to the latent vector."""

    main_input_name = "input_ids"

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional_encoder else 1
        self.output_size = directions * config.hidden_size  # D
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            nn.GRU(
                config.embedding_size if idx == 0 else self.output_size,
                config.hidden_size,
                batch_first=True,
                bidirectional=config.bidirectional_encoder,
            )
            for idx in range(config.num_hidden_layers)
        )
        self.to_latent = nn.Linear(self.output_size, config.latent_size)
        self.self_attention = (
            AELLMEncoderSelfAttention(config, self.output_size) if config.encoder_self_attention else None
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Any,
    ) -> AELLMEncoderOutput:
        r"""
        Returns an [`AELLMEncoderOutput`] whose `last_hidden_state` is the latent, shape (B, 1, L). Padding may sit on
        either side: the real tokens are moved to the front and the GRUs read exactly `attention_mask.sum(-1)` of
        them. With `output_hidden_states`, `hidden_states` holds n + 1 tensors: the input embeddings (B, S, E), then
        the outputs of each GRU layer (B, S, D), zero at padded positions. With `decoder_attention`, `states`,
        `source_ids` and `source_mask` hold what the decoder attends to. With `encoder_self_attention` and
        `output_attentions`, `attentions` holds the self-attention's (B, heads, S, S) weights; the GRUs have none.
        The other extra keyword arguments `generate()` sends are ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds to the AE-LLM encoder.")
        if output_hidden_states is None:
            output_hidden_states = bool(self.config.output_hidden_states)
        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, S) -> (B, S, E)
        batch_size, seq_len, _ = inputs_embeds.shape
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"The input has {seq_len} tokens, more than the {self.config.max_position_embeddings} the encoder "
                "reads (max_position_embeddings); truncate it."
            )
        embeds, order = inputs_embeds, None
        if attention_mask is None:
            lengths = torch.full((batch_size,), seq_len, dtype=torch.long)
        else:
            # Stable sort puts the real tokens first, in order, whatever the padding side.
            order = torch.argsort((attention_mask == 0).to(torch.int8), dim=1, stable=True)  # (B, S)
            embeds = embeds.gather(1, order.unsqueeze(-1).expand_as(embeds))
            lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(embeds), lengths, batch_first=True, enforce_sorted=False
        )
        hidden_states: tuple[torch.Tensor, ...] | None = (inputs_embeds,) if output_hidden_states else None
        attend = self.config.decoder_attention
        final_state, top = None, None
        for idx, layer in enumerate(self.layers):
            if idx > 0:  # dropout between layers
                packed = nn.utils.rnn.PackedSequence(
                    self.dropout(packed.data), packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
                )
            packed, final_state = layer(packed)  # final state (directions, B, H), in the input batch order
            if hidden_states is not None or (attend and idx == len(self.layers) - 1):
                top = self._unpack(packed, order, seq_len)  # (B, S, D)
                if hidden_states is not None:
                    hidden_states += (top,)
        assert final_state is not None
        last = torch.cat(list(final_state[-2:]), dim=-1) if self.config.bidirectional_encoder else final_state[-1]
        latent = self.to_latent(self.dropout(last))  # (B, D) -> (B, L)
        if not attend:
            return AELLMEncoderOutput(last_hidden_state=latent.unsqueeze(1), hidden_states=hidden_states)
        if input_ids is None:  # the nearest embedding row of each input vector: its token when it came from the table
            table = self.embed_tokens.weight  # (V, E)
            input_ids = (inputs_embeds @ table.T - 0.5 * (table**2).sum(-1)).argmax(dim=-1)  # (B, S)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.dtype)
        follows = torch.roll(mask, 1, dims=1)  # position i has a real token before it
        follows[:, 0] = 0
        previous = torch.roll(inputs_embeds, 1, dims=1) * (follows * mask).unsqueeze(-1).to(inputs_embeds.dtype)
        attentions = None
        if self.self_attention is not None and top is not None:
            top, weights = self.self_attention(top, mask, output_attentions=output_attentions)
            attentions = (weights,) if weights is not None else None
        return AELLMEncoderOutput(
            last_hidden_state=latent.unsqueeze(1),  # (B, 1, L)
            hidden_states=hidden_states,
            attentions=attentions,  # (B, heads, S, S), with encoder_self_attention and output_attentions
            states=top,
            source_ids=input_ids,
            source_mask=mask,
            previous_embeds=previous,  # (B, S, E)
        )

    @staticmethod
    def _unpack(packed: nn.utils.rnn.PackedSequence, order: torch.Tensor | None, seq_len: int) -> torch.Tensor:
        """A layer's packed outputs -> (B, S, D) at the positions of their tokens, zeros at padded positions."""
        outputs, _ = nn.utils.rnn.pad_packed_sequence(packed, batch_first=True, total_length=seq_len)
        if order is None:
            return outputs
        return torch.zeros_like(outputs).scatter(1, order.unsqueeze(-1).expand_as(outputs), outputs)


class AELLMDecoderAttention(nn.Module):
    """Attention from each decoder output h over the encoder's states, and the attentional output tanh(W_c [h; c])
    that the output layer reads, c being the attended context. The score of input position i adds two terms: Luong's
    "general" score of h against the state at i (scaled), and the embedding x of the token the decoder just read (the
    one it wrote before) against the embedding of the input token before i, so that a span being copied goes on where
    it left off. With the copy head, the gate p_gen = sigmoid(w [tanh(W_c [h; c]); c; x]): the share of the output
    layer's distribution in the answer's, the rest copying input tokens with the attention weights (a
    pointer-generator). There is no state from one token to the next (no input feeding), so the decoder cache stays
    the GRU states."""

    def __init__(self, config: AELLMConfig, encoder_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(config.hidden_size, encoder_size, bias=False)
        self.follow = nn.Linear(config.embedding_size, config.embedding_size, bias=False)
        self.combine = nn.Linear(config.hidden_size + encoder_size, config.hidden_size)
        self.copy_gate = (
            nn.Linear(config.hidden_size + encoder_size + config.embedding_size, 1) if config.copy_head else None
        )
        self.scaling = encoder_size**-0.5
        self.follow_scaling = config.embedding_size**-0.5

    def forward(
        self,
        outputs: torch.Tensor,
        inputs_embeds: torch.Tensor,
        states: torch.Tensor,
        mask: torch.Tensor,
        previous_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(B, T, H) decoder outputs, (B, T, E) their input embeddings, (B, S, D) encoder states, (B, S) mask and
        (B, S, E) embeddings of the input token before each position -> the (B, T, H) attentional outputs, the
        (B, T, S) attention weights and the (B, T, 1) copy gate (or None)."""
        scores = (self.query(outputs) @ states.transpose(1, 2)) * self.scaling  # (B, T, D) @ (B, D, S) -> (B, T, S)
        if previous_embeds is not None:  # (B, T, E) @ (B, E, S) -> (B, T, S)
            scores = scores + (self.follow(inputs_embeds) @ previous_embeds.transpose(1, 2)) * self.follow_scaling
        scores = scores.masked_fill(mask.unsqueeze(1) == 0, torch.finfo(scores.dtype).min)
        weights = F.softmax(scores.float(), dim=-1).to(states.dtype)
        context = weights @ states  # (B, T, S) @ (B, S, D) -> (B, T, D)
        combined = torch.tanh(self.combine(torch.cat([outputs, context], dim=-1)))  # (B, T, H)
        gate = None
        if self.copy_gate is not None:
            gate = torch.sigmoid(self.copy_gate(torch.cat([combined, context, inputs_embeds], dim=-1)))  # (B, T, 1)
        return combined, weights, gate


@dataclass
class AELLMDecoderOutput(ModelOutput):
    r"""
    What [`AELLMDecoder`] returns for T new tokens.

    outputs (`torch.FloatTensor` of shape `(B, T, H)`):
        What the output layer reads: the top GRU layer's outputs, or the attentional outputs with `decoder_attention`.
    states (`torch.FloatTensor` of shape `(n, B, T, H)`):
        Every GRU layer's state after each token (the cache).
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        The embeddings (B, T, E), the outputs of each GRU layer below the top, then `outputs`.
    attention (`torch.FloatTensor` of shape `(B, T, S)`, *optional*):
        The attention weights over the encoder's states (`decoder_attention`).
    copy_gate (`torch.FloatTensor` of shape `(B, T, 1)`, *optional*):
        p_gen of the copy head (`copy_head`).
    """

    outputs: torch.Tensor | None = None
    states: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attention: torch.Tensor | None = None
    copy_gate: torch.Tensor | None = None


class AELLMDecoder(nn.Module):
    """`num_hidden_layers` stacked GRU layers conditioned on a latent: the initial states come from the latent and the
    latent is concatenated to every input embedding. The token embedding is the encoder's (passed in as
    `inputs_embeds`). With `decoder_attention`, the top layer's outputs attend over the encoder's states
    ([`AELLMDecoderAttention`])."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.config = config
        self.latent_to_state = nn.Linear(config.latent_size, config.num_hidden_layers * config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            nn.GRU(
                config.embedding_size + config.latent_size if idx == 0 else config.hidden_size,
                config.hidden_size,
                batch_first=True,
            )
            for idx in range(config.num_hidden_layers)
        )
        encoder_size = (2 if config.bidirectional_encoder else 1) * config.hidden_size
        self.attention = AELLMDecoderAttention(config, encoder_size) if config.decoder_attention else None

    def initial_state(self, latent: torch.Tensor) -> torch.Tensor:
        state = torch.tanh(self.latent_to_state(latent))  # (B, L) -> (B, n * H)
        state = state.view(latent.shape[0], self.config.num_hidden_layers, self.config.hidden_size)
        return state.transpose(0, 1).contiguous()  # (n, B, H)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        latent: torch.Tensor,
        hidden_state: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        encoded: AELLMEncoderOutput | None = None,
    ) -> AELLMDecoderOutput:
        """(B, T, E) embeddings, (B, L) latent, optional (n, B, H) state to go on from and, with `decoder_attention`,
        the encoder's output `encoded` (its `states` and `source_mask`) -> an [`AELLMDecoderOutput`]: the (B, T, H)
        outputs, the (n, B, T, H) states of every layer after each token (a GRU layer's outputs are its states) and,
        with `output_hidden_states`, n + 1 hidden states: the embeddings (B, T, E), then the outputs of each layer
        below the top (B, T, H), then the returned outputs."""
        if hidden_state is None:
            hidden_state = self.initial_state(latent)
        steps = latent.unsqueeze(1).expand(-1, inputs_embeds.shape[1], -1)  # (B, L) -> (B, T, L)
        layer_input = torch.cat([self.dropout(inputs_embeds), steps], dim=-1)  # (B, T, E + L)
        states = []
        for idx, layer in enumerate(self.layers):
            if idx > 0:  # dropout between layers
                layer_input = self.dropout(layer_input)
            layer_input, _ = layer(layer_input, hidden_state[idx : idx + 1].contiguous())  # (B, T, H)
            states.append(layer_input)
        outputs, attention, gate = layer_input, None, None
        if self.attention is not None:
            if encoded is None or encoded.states is None or encoded.source_mask is None:
                raise ValueError(
                    "This AE-LLM decoder attends over the encoder's states (decoder_attention): pass the encoder "
                    "output of this model (its states, source_ids and source_mask), not only the latent."
                )
            outputs, attention, gate = self.attention(
                layer_input, inputs_embeds, encoded.states, encoded.source_mask, encoded.previous_embeds
            )
        outputs = self.dropout(outputs)
        hidden_states = (inputs_embeds, *states[:-1], outputs) if output_hidden_states else None
        return AELLMDecoderOutput(
            outputs=outputs,
            states=torch.stack(states),
            hidden_states=hidden_states,
            attention=attention,
            copy_gate=gate,
        )


class AELLMMemory(nn.Module):
    """Learned key-value memory read by attention with a query from the latent: z + W_o softmax(q K^T / sqrt(L)) V."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.latent_size, eps=config.layer_norm_eps)
        self.query = nn.Linear(config.latent_size, config.latent_size, bias=False)
        self.keys = nn.Parameter(torch.empty(config.memory_slots, config.latent_size))
        self.values = nn.Parameter(torch.empty(config.memory_slots, config.latent_size))
        self.out_proj = nn.Linear(config.latent_size, config.latent_size)
        self.dropout = nn.Dropout(config.dropout)
        self.scaling = config.latent_size**-0.5

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        query = self.query(self.norm(latent))  # (B, L)
        weights = F.softmax(query @ self.keys.T * self.scaling, dim=-1)  # (B, M)
        read = weights @ self.values  # (B, M) @ (M, L) -> (B, L)
        return latent + self.dropout(self.out_proj(read))


class AELLMGatedMLP(nn.Module):
    """GLU feed-forward: down(silu(gate(x)) * up(x)), L -> intermediate_size -> L."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.latent_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.latent_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.latent_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))


class AELLMSparseMoE(nn.Module):
    """Sparse mixture of GLU experts: each latent goes through its top-k experts, mixed by the renormalised router
    probabilities, and is added back to the residual."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.norm = nn.LayerNorm(config.latent_size, eps=config.layer_norm_eps)
        self.router = nn.Linear(config.latent_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(AELLMGatedMLP(config) for _ in range(config.num_experts))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L) -> (B, L) output, (B, X) router logits, (B, k) selected experts."""
        hidden_states = self.norm(latent)
        router_logits = self.router(hidden_states)  # (B, X)
        probs = F.softmax(router_logits, dim=-1, dtype=torch.float32)
        top_weights, selected = torch.topk(probs, self.top_k, dim=-1)  # (B, k)
        top_weights = (top_weights / top_weights.sum(dim=-1, keepdim=True)).to(hidden_states.dtype)
        mixed = torch.zeros_like(hidden_states)
        for expert_idx, expert in enumerate(self.experts):
            rows, slots = torch.where(selected == expert_idx)  # the latents routed to this expert
            if rows.numel() == 0:
                continue
            expert_out = expert(hidden_states[rows]) * top_weights[rows, slots].unsqueeze(-1)  # (R, L)
            mixed = mixed.index_add(0, rows, expert_out)
        return latent + self.dropout(mixed), router_logits, selected


class AELLMGatedBlock(nn.Module):
    """Pre-norm residual gated block: x + GLU(LN(x))."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.latent_size, eps=config.layer_norm_eps)
        self.mlp = AELLMGatedMLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.dropout(self.mlp(self.norm(hidden_states)))


class AELLMHyperAdapter(nn.Module):
    """Bottleneck adapter from the answer latent to bag-of-words logits over the vocabulary: L -> adapter -> V."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.latent_size, eps=config.layer_norm_eps)
        self.down_proj = nn.Linear(config.latent_size, config.hyper_adapter_size)
        self.up_proj = nn.Linear(config.hyper_adapter_size, config.vocab_size)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.up_proj(F.gelu(self.down_proj(self.norm(latent))))  # (B, L) -> (B, V)

    @torch.no_grad()
    def resize_vocabulary(self, vocab_size: int) -> None:
        """V -> `vocab_size` outputs: the kept tokens keep their rows, new tokens start at the mean row."""
        old = self.up_proj
        kept = min(old.out_features, vocab_size)
        new = nn.Linear(old.in_features, vocab_size, device=old.weight.device, dtype=old.weight.dtype)
        new.weight[:kept] = old.weight[:kept]
        new.weight[kept:] = old.weight.mean(dim=0)
        new.bias[:kept] = old.bias[:kept]
        new.bias[kept:] = old.bias.mean()
        self.up_proj = new


@dataclass
class AELLMThinkingOutput(ModelOutput):
    r"""
    answer_latent (`torch.FloatTensor` of shape `(B, L)`):
        The latent the decoder decodes the answer from.
    router_logits (`torch.FloatTensor` of shape `(B, X)`):
        Router logits of the mixture of experts (input of the load-balancing loss).
    selected_experts (`torch.LongTensor` of shape `(B, k)`):
        The experts each latent was routed to.
    bow_logits (`torch.FloatTensor` of shape `(B, V)`):
        Bag-of-words logits of the hyper-adapter.
    """

    answer_latent: torch.Tensor | None = None
    router_logits: torch.Tensor | None = None
    selected_experts: torch.Tensor | None = None
    bow_logits: torch.Tensor | None = None


class AELLMThinkingNet(nn.Module):
    """Transition network, question latent -> answer latent: memory read, sparse mixture of experts, gated blocks;
    the hyper-adapter reads the answer latent out as a bag of words."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.memory = AELLMMemory(config)
        self.moe = AELLMSparseMoE(config)
        self.blocks = nn.ModuleList(AELLMGatedBlock(config) for _ in range(config.num_gated_blocks))
        self.hyper_adapter = AELLMHyperAdapter(config)

    def forward(self, latent: torch.Tensor) -> AELLMThinkingOutput:
        hidden_states = self.memory(latent)  # (B, L)
        hidden_states, router_logits, selected = self.moe(hidden_states)
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return AELLMThinkingOutput(
            answer_latent=hidden_states,
            router_logits=router_logits,
            selected_experts=selected,
            bow_logits=self.hyper_adapter(hidden_states),
        )


class AELLMPreTrainedModel(PreTrainedModel):
    config_class = AELLMConfig
    config: AELLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["AELLMEncoder", "AELLMDecoder", "AELLMThinkingNet"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    # The loss holds per-batch terms (router balance, bag of words), so the Trainer must not rescale it by token count.
    accepts_loss_kwargs = False
    # The classes a saved folder names in `auto_map`, so it loads as the base model or with its head
    _auto_map_classes = {"AutoModel": "AELLMModel", "AutoModelForSeq2SeqLM": "AELLMForConditionalGeneration"}
    # No `_can_record_outputs`: the forward passes collect the hidden states themselves (`output_hidden_states`). Hooks
    # would see `PackedSequence`s in the encoder, and `capture_outputs` would put the encoder's `last_hidden_state`,
    # the latent, in place of its top GRU layer's outputs. A GRU has no attention weights to record.

    # Copied from lmforge.models.aksis.modeling_aksis.AksisPreTrainedModel.save_pretrained with AutoModelForCausalLM->AutoModelForSeq2SeqLM
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

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """`PreTrainedModel.resize_token_embeddings`, and the Thinking Net's bag-of-words output (one logit per
        token) resized with the token embedding."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        for module in self.modules():
            if isinstance(module, AELLMHyperAdapter):
                module.resize_vocabulary(embeddings.num_embeddings)
        return embeddings

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """N(0, initializer_range) for linear and embedding weights (library default), Xavier/orthogonal GRU weights,
        N(0, initializer_range) memory slots."""
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                elif name.startswith("weight_hh"):
                    init.orthogonal_(param)
                else:
                    init.zeros_(param)
        elif isinstance(module, AELLMMemory):
            init.normal_(module.keys, mean=0.0, std=std)
            init.normal_(module.values, mean=0.0, std=std)
        elif isinstance(module, nn.Linear) and getattr(module, "zero_init", False):  # a residual branch off at start
            init.zeros_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)


@dataclass
class AELLMSeq2SeqModelOutput(Seq2SeqModelOutput):
    r"""
    The output of [`AELLMModel`]: a `Seq2SeqModelOutput` whose `last_hidden_state` is the (B, T, H) output of the top
    decoder GRU layer (the attentional output with `decoder_attention`), whose cache is an [`AELLMRecurrentCache`] and
    whose `encoder_last_hidden_state` is the (B, 1, L) encoder latent. The GRUs have no attention weights: the decoder
    attention field stays None; `encoder_attentions` holds one (B, heads, S, S) tensor when `encoder_self_attention`
    is on and `output_attentions` asked, and `cross_attentions` one (B, 1, T, S) tensor (one layer, one head) when
    `decoder_attention` is on and `output_attentions` asked. Then:

    latent (`torch.FloatTensor` of shape `(B, L)`):
        The latent the decoder decoded from (encoder latent, or Thinking Net output in "answer" mode).
    router_logits (`torch.FloatTensor` of shape `(B, X)`):
        Router logits of the Thinking Net ("answer" mode).
    bow_logits (`torch.FloatTensor` of shape `(B, V)`):
        Bag-of-words logits of the hyper-adapter ("answer" mode).
    copy_gate (`torch.FloatTensor` of shape `(B, T, 1)`):
        With `copy_head`: p_gen, the share of the output layer's distribution in the answer's.
    copy_attention (`torch.FloatTensor` of shape `(B, T, S)`):
        With `copy_head`: the attention weights the copied tokens are drawn with.
    source_ids (`torch.LongTensor` of shape `(B, S)`):
        With `copy_head`: the input tokens that can be copied.
    """

    latent: torch.Tensor | None = None
    router_logits: torch.Tensor | None = None
    bow_logits: torch.Tensor | None = None
    copy_gate: torch.Tensor | None = None
    copy_attention: torch.Tensor | None = None
    source_ids: torch.Tensor | None = None


@dataclass
class AELLMSeq2SeqLMOutput(Seq2SeqLMOutput):
    r"""
    A `Seq2SeqLMOutput` with the parts of the loss and the latent. `loss == lm_loss_coef * lm_loss +
    latent_loss_coef * latent_loss + router_aux_loss + bow_loss + copy_loss` (latent, router and bag-of-words losses
    only in "answer" mode, the last three already multiplied by their coefficients). The cache is an [`AELLMRecurrentCache`]; the attention fields hold
    the weights of the optional attention layers only (a GRU has no attention).

    lm_loss (`torch.FloatTensor` of shape `()`):
        Token cross-entropy of the decoder against `labels` (reconstruction or answer).
    latent_loss (`torch.FloatTensor` of shape `()`):
        Mean squared error between the answer latent and the encoder's latent of `labels` ("answer" mode, when
        `latent_loss_coef` > 0).
    router_aux_loss (`torch.FloatTensor` of shape `()`):
        `router_aux_loss_coef` x the load-balancing loss of the Thinking Net router.
    bow_loss (`torch.FloatTensor` of shape `()`):
        `bow_loss_coef` x the bag-of-words loss of the hyper-adapter.
    copy_loss (`torch.FloatTensor` of shape `()`):
        `copy_loss_coef` x the copy supervision loss ([`copy_supervision_loss`]), when `copy_loss_coef` > 0.
    latent (`torch.FloatTensor` of shape `(B, L)`):
        The latent the decoder decoded from (encoder latent, or Thinking Net output in "answer" mode).
    router_logits (`torch.FloatTensor` of shape `(B, X)`):
        Router logits of the Thinking Net ("answer" mode).
    bow_logits (`torch.FloatTensor` of shape `(B, V)`):
        Bag-of-words logits of the hyper-adapter ("answer" mode).
    """

    lm_loss: torch.Tensor | None = None
    router_aux_loss: torch.Tensor | None = None
    bow_loss: torch.Tensor | None = None
    latent_loss: torch.Tensor | None = None
    copy_loss: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    router_logits: torch.Tensor | None = None
    bow_logits: torch.Tensor | None = None


class AELLMModel(AELLMPreTrainedModel):
    """The bare AE-LLM encoder-decoder (the `AutoModel` class): encoder -> latent -> (Thinking Net in "answer" mode)
    -> decoder GRUs, returning an [`AELLMSeq2SeqModelOutput`] without the output layer.

    With `output_hidden_states=True`, `encoder_hidden_states` holds the encoder's input embeddings (B, S, E) and the
    outputs of each encoder GRU layer (B, S, H), zero at padded positions; `decoder_hidden_states` the decoder's token
    embeddings (B, T, E) and the outputs of each decoder GRU layer (B, T, H), the last one equal to
    `last_hidden_state`. Each holds num_hidden_layers + 1 tensors, the first of another width (E) than the others (H).
    The attention fields are always None. See [`AELLMForConditionalGeneration`] for the whole model contract.
    """

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__(config)
        self.encoder = AELLMEncoder(config)
        self.transition = AELLMThinkingNet(config)
        self.decoder = AELLMDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"The AE-LLM token embedding must be an nn.Embedding, got {type(value).__name__}.")
        self.encoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> AELLMEncoder:
        return self.encoder

    def get_decoder(self) -> AELLMDecoder:
        return self.decoder

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[Any, ...] | None = None,
        cache: AELLMRecurrentCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        mode: str | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Any,
    ) -> AELLMSeq2SeqModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(B, S)`):
            The text to encode (the question in "answer" mode). Not needed when `encoder_outputs` or `inputs_embeds`
            is given.
        decoder_input_ids (`torch.LongTensor` of shape `(B, T)`):
            Decoder inputs, starting with `decoder_start_token_id` (see [`shift_tokens_right`]); with a `cache`, only
            the tokens it has not seen. `decoder_inputs_embeds` (B, T, E) can stand in for them.
        decoder_attention_mask (`torch.Tensor`, *optional*):
            (B, T) or, with a cache, (B, seen + T): 1 for real decoder tokens, 0 for padding. Padding may sit on either
            side: the real tokens go through the GRUs first, in order, so a left-padded row gives the same outputs at
            its real positions (and the same cache) as the row without its padding. Right padding needs no mask (the
            decoder is causal, and padded labels are -100).
        encoder_outputs (`AELLMEncoderOutput`, *optional*):
            Output of `get_encoder()`; its `last_hidden_state` (B, 1, L) is the latent (and, with `decoder_attention`,
            its `states`, `source_ids` and `source_mask` are what the decoder attends to).
        cache (`AELLMRecurrentCache`, *optional*):
            The decoder GRU states after the tokens already decoded (`past_key_values=` is accepted too).
        use_cache (`bool`, *optional*):
            Return the cache, updated with the new tokens (defaults to `config.use_cache`).
        mode (`str`, *optional*):
            "answer" or "reconstruct"; defaults to `config.mode`.
        output_attentions (`bool`, *optional*):
            With `decoder_attention`, return the decoder's attention over the encoder states as `cross_attentions`
            (defaults to `config.output_attentions`); the GRUs have no other attention weights.
        Extra keyword arguments sent by `generate()` are ignored.
        """
        mode = mode if mode is not None else self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be 'answer' or 'reconstruct', got {mode!r}.")
        if (decoder_input_ids is None) == (decoder_inputs_embeds is None):
            raise ValueError("Pass exactly one of decoder_input_ids or decoder_inputs_embeds to AE-LLM.")
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else bool(self.config.output_hidden_states)
        )
        if cache is not None and not isinstance(cache, AELLMRecurrentCache):
            raise TypeError(
                f"AE-LLM keeps its decoder state in an AELLMRecurrentCache, got {type(cache).__name__}; pass no cache "
                "to start a new one."
            )

        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        if encoder_outputs is None:
            encoded = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                return_dict=True,
            )
        else:
            encoded = self.as_encoder_output(encoder_outputs)
        encoder_latent: torch.Tensor = encoded.last_hidden_state  # (B, 1, L)
        latent = encoder_latent[:, 0]  # (B, 1, L) -> (B, L)
        thought = self.transition(latent) if mode == "answer" else None
        if thought is not None:
            latent = thought.answer_latent

        if decoder_inputs_embeds is None:
            decoder_inputs_embeds = self.encoder.embed_tokens(decoder_input_ids)  # (B, T) -> (B, T, E)
        assert decoder_inputs_embeds is not None
        seen = cache.get_seq_length() if cache is not None else 0
        if seen + decoder_inputs_embeds.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"The decoder would reach {seen + decoder_inputs_embeds.shape[1]} tokens, past the "
                f"{self.config.max_position_embeddings} it writes (max_position_embeddings); lower max_new_tokens."
            )
        hidden_state = cache.hidden_state if cache is not None else None
        order = real_tokens_first(decoder_attention_mask, decoder_inputs_embeds.shape[1])
        if order is not None:  # padding before real tokens: the GRUs read the real tokens first, then the padding
            decoder_inputs_embeds = decoder_inputs_embeds.gather(
                1, order.unsqueeze(-1).expand_as(decoder_inputs_embeds)
            )
        decoded = self.decoder(
            decoder_inputs_embeds, latent, hidden_state, output_hidden_states=output_hidden_states, encoded=encoded
        )
        if order is not None:  # every per-token output back at its token's position
            decoded = AELLMDecoderOutput(
                outputs=to_positions(decoded.outputs, order, dim=1),
                states=to_positions(decoded.states, order, dim=2),
                hidden_states=tuple(to_positions(state, order, dim=1) for state in decoded.hidden_states)
                if decoded.hidden_states is not None
                else None,
                attention=to_positions(decoded.attention, order, dim=1),
                copy_gate=to_positions(decoded.copy_gate, order, dim=1),
            )
        if use_cache:
            if cache is None:
                cache = AELLMRecurrentCache(self.config)
            assert decoded.states is not None
            cache.update_states(decoded.states)
        cache_output: dict[str, Any] = {CACHE_FIELD: cache if use_cache else None}
        copy = self.config.copy_head
        return AELLMSeq2SeqModelOutput(
            last_hidden_state=decoded.outputs,
            decoder_hidden_states=decoded.hidden_states,
            cross_attentions=(decoded.attention.unsqueeze(1),)
            if output_attentions and decoded.attention is not None
            else None,
            encoder_last_hidden_state=encoder_latent,
            encoder_hidden_states=encoded.hidden_states,
            encoder_attentions=encoded.attentions if output_attentions else None,
            latent=latent,
            router_logits=thought.router_logits if thought is not None else None,
            bow_logits=thought.bow_logits if thought is not None else None,
            copy_gate=decoded.copy_gate if copy else None,
            copy_attention=decoded.attention if copy else None,
            source_ids=encoded.source_ids if copy else None,
            **cache_output,
        )

    def as_encoder_output(self, encoder_outputs: BaseModelOutput | tuple[Any, ...]) -> AELLMEncoderOutput:
        """`encoder_outputs` as an [`AELLMEncoderOutput`]: from the encoder's dict, a plain `BaseModelOutput` (the
        latent, its hidden states and attentions) or the encoder's tuple: (latent, hidden states if any, attentions if
        any, and with `decoder_attention` states, source_ids, source_mask, previous_embeds)."""
        if isinstance(encoder_outputs, AELLMEncoderOutput):
            return encoder_outputs
        if isinstance(encoder_outputs, BaseModelOutput):
            return AELLMEncoderOutput(
                last_hidden_state=encoder_outputs.last_hidden_state,
                hidden_states=encoder_outputs.hidden_states,
                attentions=encoder_outputs.attentions,
            )
        parts = tuple(encoder_outputs)
        extra: dict[str, Any] = {}
        if self.config.decoder_attention and len(parts) >= 5:
            parts, (states, source_ids, source_mask, previous) = parts[:-4], parts[-4:]
            extra = {
                "states": states,
                "source_ids": source_ids,
                "source_mask": source_mask,
                "previous_embeds": previous,
            }
        # After the latent: hidden states ((B, S, *) tensors), then attentions ((B, heads, S, S) tensors), if any
        hidden = next((part for part in parts[1:] if part[0].dim() == 3), None)
        attentions = next((part for part in parts[1:] if part[0].dim() == 4), None)
        return AELLMEncoderOutput(last_hidden_state=parts[0], hidden_states=hidden, attentions=attentions, **extra)


class AELLMForConditionalGeneration(AELLMPreTrainedModel, GenerationMixin):
    """AE-LLM: [`AELLMModel`] (encoder -> Thinking Net in "answer" mode -> decoder) and the output layer, usable with
    `generate()`.

    The transformers model contract, group by group:

    - Hidden states: `output_hidden_states=True` (argument or config) returns `encoder_hidden_states` (input embeddings
      (B, S, E), then each encoder GRU layer's outputs (B, S, H), zero on padding) and `decoder_hidden_states` (token
      embeddings (B, T, E), then each decoder GRU layer's outputs (B, T, H)): num_hidden_layers + 1 tensors each, the
      first narrower or wider than the others, as E and H differ. The encoder's `last_hidden_state` is the latent
      (B, 1, L), returned as `encoder_last_hidden_state`.
    - Attentions: a GRU has none, so `decoder_attentions` stays None. With `output_attentions=True` (argument or
      config), `encoder_attentions` holds the weights of the encoder's self-attention layer (`encoder_self_attention`)
      and `cross_attentions` those of the decoder's attention over the encoder states (`decoder_attention`), in
      `forward` and in `generate()` outputs; without those layers they stay None.
    - Tuple outputs: `return_dict=False` (argument or config) returns the tuple of the non-None fields.
    - `generate()`: greedy, sampling, beam search and beam sampling, with `return_dict_in_generate` and scores,
      logits and hidden states (encoder hidden states once, decoder hidden states per step).
    - Cache: an [`AELLMRecurrentCache`] with the GRU states; tokens are the same with and without it, and
      generation continues from a returned cache (pass it with the whole decoder sequence as `decoder_input_ids`).
    - Static cache and `torch.compile`: do not apply. The GRU state is already fixed in size, so there is no
      key/value cache to make static: `cache_implementation` other than "dynamic" is refused with an error rather
      than silently giving a non-compiled run the user did not ask for. `torch.compile(fullgraph=True)` does not apply
      either: TorchDynamo traces neither `nn.GRU` nor packed sequences; without `fullgraph` they run eagerly between
      compiled parts.
    - `inputs_embeds`: encoder input embeddings work in `forward` and `generate()`; `decoder_inputs_embeds` in
      `forward`.
    - Assisted decoding (`assistant_model=...`) and prompt lookup (`prompt_lookup_num_tokens=...`) work: the cache
      keeps the state after every token, so rejected draft tokens are cropped away; the tokens are those of greedy
      decoding.

    Example:

    ```python
    >>> import torch
    >>> from lmforge.models.ae_llm import AELLMConfig, AELLMForConditionalGeneration
    >>> config = AELLMConfig(vocab_size=300, embedding_size=16, hidden_size=16, latent_size=24, memory_slots=8)
    >>> model = AELLMForConditionalGeneration(config).eval()
    >>> model.generate(torch.tensor([[5, 6, 7, 3]]), max_new_tokens=4, min_new_tokens=4).shape
    torch.Size([1, 5])
    ```
    """

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__(config)
        self.model = AELLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> AELLMEncoder:
        return self.model.get_encoder()

    def get_decoder(self) -> AELLMDecoder:
        return self.model.get_decoder()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def autoencoder_modules(self) -> list[nn.Module]:
        """The autoencoder: encoder (with the shared token embedding), decoder and output layer."""
        return [self.model.encoder, self.model.decoder, self.lm_head]

    def freeze_autoencoder(self) -> None:
        """Stop training the autoencoder, so that only the Thinking Net learns (stage 2: question -> answer)."""
        for module in self.autoencoder_modules():
            module.requires_grad_(False)

    def unfreeze_autoencoder(self) -> None:
        for module in self.autoencoder_modules():
            module.requires_grad_(True)

    @torch.no_grad()
    def encode_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The encoder's latent of each row of `labels` (B, T), -100 as padding: the text read as the autoencoder
        reads it (its closing `</s>` included), in eval mode (no dropout) and without gradient. (B, T) -> (B, L): the
        target of the latent loss, the latent the decoder reconstructs the answer from."""
        encoder = self.model.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            mask = labels != -100
            ids = labels.masked_fill(~mask, self.config.pad_token_id or 0)
            encoded = encoder(input_ids=ids, attention_mask=mask.long(), return_dict=True)
        finally:
            encoder.train(was_training)
        return encoded.last_hidden_state[:, 0]

    def _prepare_cache_for_generation(
        self,
        generation_config: GenerationConfig,
        model_kwargs: dict[Any, Any],
        generation_mode: Any,
        batch_size: int,
        max_cache_length: int,
    ) -> bool:
        """The `generate()` hook that sets up the cache: an [`AELLMRecurrentCache`] (the one passed in, if any),
        none with `use_cache=False`; returns whether there is one. There is no key/value cache to choose, so a
        `cache_implementation` other than "dynamic" is an error."""
        implementation = generation_config.cache_implementation
        if implementation not in (None, "dynamic"):
            raise ValueError(
                f"AE-LLM decodes with GRUs: its cache (AELLMRecurrentCache) holds their states, already fixed in size, "
                f"so there is no key/value cache to make {implementation!r} (and torch.compile cannot trace a GRU); "
                "leave cache_implementation unset."
            )
        cache = model_kwargs.get(CACHE_FIELD)
        if cache is not None:
            if not isinstance(cache, AELLMRecurrentCache):
                raise TypeError(
                    f"AE-LLM keeps its decoder state in an AELLMRecurrentCache, got {type(cache).__name__}; pass no "
                    "cache to start a new one."
                )
            return True
        if generation_config.use_cache:
            model_kwargs[CACHE_FIELD] = AELLMRecurrentCache(self.config)
        return CACHE_FIELD in model_kwargs

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        next_sequence_length: int | None = None,
        cache: AELLMRecurrentCache | None = None,
        past_key_values: AELLMRecurrentCache | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """`GenerationMixin.prepare_inputs_for_generation`, where the decoder reads only the tokens its cache has not
        seen: generation continued from a returned cache (and an assistant's next draft) passes the whole decoder
        sequence, which transformers does not cut for an encoder-decoder model without a decoder attention mask. The
        cache comes as `cache` (transformers >= 5.24) or `past_key_values` (5.23)."""
        cache = cache if cache is not None else past_key_values
        if isinstance(cache, AELLMRecurrentCache):
            seen = cache.get_seq_length()
            if 0 < seen < input_ids.shape[1]:
                next_sequence_length = input_ids.shape[1] - seen
        cache_input: dict[str, Any] = {CACHE_FIELD: cache}
        return dict(
            super().prepare_inputs_for_generation(
                input_ids, next_sequence_length=next_sequence_length, **cache_input, **kwargs
            )
        )

    def output_logits(
        self,
        hidden: torch.Tensor,
        copy_gate: torch.Tensor | None = None,
        copy_attention: torch.Tensor | None = None,
        source_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, H) decoder outputs -> (B, T, V) logits: the output layer's, or with the copy head the log of the
        pointer-generator mixture p_gen * softmax(lm_head(h)) + (1 - p_gen) * (attention weights summed per input
        token), a normalised distribution (so `generate()` and the cross-entropy treat it like logits)."""
        logits = self.lm_head(hidden)  # (B, T, H) -> (B, T, V)
        if copy_gate is None or copy_attention is None or source_ids is None:
            return logits
        vocab = F.softmax(logits.float(), dim=-1)
        index = source_ids.unsqueeze(1).expand(-1, hidden.shape[1], -1)  # (B, S) -> (B, T, S)
        copied = torch.zeros_like(vocab).scatter_add(-1, index, copy_attention.float())  # (B, T, V)
        gate = copy_gate.float()
        return torch.log((gate * vocab + (1.0 - gate) * copied).clamp(min=1e-12)).to(logits.dtype)

    def _decode_scheduled(
        self,
        first: AELLMSeq2SeqModelOutput,
        decoder_input_ids: torch.Tensor,
        encoded: AELLMEncoderOutput,
        output_attentions: bool,
    ) -> tuple[
        torch.Tensor,
        tuple[torch.Tensor, ...] | None,
        torch.Tensor | None,
        tuple[torch.Tensor, torch.Tensor] | None,
    ]:
        """Scheduled sampling, one step at a time, from the base model's output `first` for step 0 (the start token,
        with its cache): step t > 0 reads the gold token `decoder_input_ids[:, t]` with probability
        `teacher_forcing_ratio` (drawn per sequence and step from torch's RNG) and otherwise the model's own argmax at
        step t - 1. Returns (B, T, V) logits, the decoder hidden states over the T steps (if `first` has them),
        with `output_attentions` and `decoder_attention` the (B, T, S) attention weights, and with `copy_head` the
        copy head's (B, T, S) attention weights and (B, T, 1) gate (for the copy loss)."""
        batch_size, seq_len = decoder_input_ids.shape
        latent, cache = first.latent, getattr(first, CACHE_FIELD)
        assert latent is not None and isinstance(cache, AELLMRecurrentCache)
        hidden_state = cache.hidden_state
        assert first.last_hidden_state is not None
        step_logits = [
            self.output_logits(first.last_hidden_state, first.copy_gate, first.copy_attention, first.source_ids)[:, 0]
        ]  # (B, V)
        step_hidden = [first.decoder_hidden_states] if first.decoder_hidden_states is not None else None
        step_attention = [first.cross_attentions[0][:, 0, 0]] if output_attentions and first.cross_attentions else None
        copy_steps = None
        if first.copy_attention is not None and first.copy_gate is not None:
            copy_steps = ([first.copy_attention[:, 0]], [first.copy_gate[:, 0]])  # (B, S), (B, 1)
        for t in range(1, seq_len):
            use_gold = torch.rand(batch_size, device=latent.device) < self.config.teacher_forcing_ratio
            predicted = step_logits[-1].argmax(dim=-1)  # (B,)
            step_ids = torch.where(use_gold, decoder_input_ids[:, t], predicted)
            embeds = self.model.get_input_embeddings()(step_ids.unsqueeze(1))  # (B, 1, E)
            step = self.model.decoder(
                embeds, latent, hidden_state, output_hidden_states=step_hidden is not None, encoded=encoded
            )
            assert step.states is not None and step.outputs is not None
            hidden_state = step.states[:, :, -1]
            copy = self.config.copy_head
            step_logits.append(
                self.output_logits(
                    step.outputs,
                    step.copy_gate if copy else None,
                    step.attention if copy else None,
                    encoded.source_ids if copy else None,
                )[:, 0]
            )
            if step_hidden is not None and step.hidden_states is not None:
                step_hidden.append(step.hidden_states)
            if step_attention is not None and step.attention is not None:
                step_attention.append(step.attention[:, 0])
            if copy_steps is not None and step.attention is not None and step.copy_gate is not None:
                copy_steps[0].append(step.attention[:, 0])
                copy_steps[1].append(step.copy_gate[:, 0])
        hidden_states = None
        if step_hidden is not None:
            hidden_states = tuple(torch.cat(parts, dim=1) for parts in zip(*step_hidden, strict=True))
        attention = torch.stack(step_attention, dim=1) if step_attention is not None else None
        copied = None
        if copy_steps is not None:
            copied = (torch.stack(copy_steps[0], dim=1), torch.stack(copy_steps[1], dim=1))
        return torch.stack(step_logits, dim=1), hidden_states, attention, copied

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[Any, ...] | None = None,
        cache: AELLMRecurrentCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        mode: str | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Any,
    ) -> AELLMSeq2SeqLMOutput:
        r"""
        The arguments of [`AELLMModel.forward`], and:

        labels (`torch.LongTensor` of shape `(B, T)`, *optional*):
            Target tokens (-100 is ignored); `decoder_input_ids` are built from them with [`shift_tokens_right`] when
            omitted. With labels there is no cache, and training uses scheduled sampling
            (`config.teacher_forcing_ratio`).
        """
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id or 0, self.config.decoder_start_token_id or 0
                )
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("Pass decoder_input_ids (or decoder_inputs_embeds) or labels to AE-LLM.")
        scheduled = (
            self.training
            and labels is not None
            and self.config.teacher_forcing_ratio < 1.0
            and decoder_input_ids is not None
            and decoder_input_ids.shape[1] > 1
        )
        if output_attentions is None:
            output_attentions = bool(self.config.output_attentions)
        if scheduled and encoder_outputs is None:  # the steps after the first need the encoder's output too
            encoder_outputs = self.model.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                return_dict=True,
            )
        outputs: AELLMSeq2SeqModelOutput = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids[:, :1]
            if scheduled and decoder_input_ids is not None
            else decoder_input_ids,
            decoder_attention_mask=None if scheduled else decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=True if scheduled else use_cache,
            mode=mode,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,  # the head builds its own output (a tuple too, when asked) from the base model's
            **kwargs,
        )
        decoder_hidden_states = outputs.decoder_hidden_states
        cross_attentions = outputs.cross_attentions
        if scheduled:
            assert decoder_input_ids is not None and encoder_outputs is not None
            logits, decoder_hidden_states, attention, copied = self._decode_scheduled(
                outputs, decoder_input_ids, self.model.as_encoder_output(encoder_outputs), output_attentions
            )
            cross_attentions = (attention.unsqueeze(1),) if attention is not None else None
            cache_output: dict[str, Any] = {CACHE_FIELD: None}
        else:
            assert outputs.last_hidden_state is not None
            logits = self.output_logits(
                outputs.last_hidden_state, outputs.copy_gate, outputs.copy_attention, outputs.source_ids
            )  # (B, T, H) -> (B, T, V)
            cache_output = {CACHE_FIELD: getattr(outputs, CACHE_FIELD)}
            copied = None
            if outputs.copy_attention is not None and outputs.copy_gate is not None:
                copied = (outputs.copy_attention, outputs.copy_gate)

        loss = lm_loss = router_aux_loss = bow_loss = latent_loss = copy_loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            lm_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
            loss = lm_loss if self.config.lm_loss_coef == 1 else self.config.lm_loss_coef * lm_loss
            if self.config.latent_loss_coef > 0 and outputs.router_logits is not None and outputs.latent is not None:
                # "answer" mode: the Thinking Net's answer latent against the encoder's latent of the answer text
                latent_loss = F.mse_loss(outputs.latent.float(), self.encode_labels(labels).float())
                loss = loss + self.config.latent_loss_coef * latent_loss
            if outputs.router_logits is not None and outputs.bow_logits is not None:
                balance = load_balancing_loss(outputs.router_logits, self.config.num_experts_per_tok)
                router_aux_loss = self.config.router_aux_loss_coef * balance
                ignore_ids = [
                    token_id
                    for token_id in (self.config.pad_token_id, self.config.bos_token_id, self.config.eos_token_id)
                    if isinstance(token_id, int)
                ]
                bow_loss = self.config.bow_loss_coef * bag_of_words_loss(outputs.bow_logits, labels, ignore_ids)
                loss = loss + router_aux_loss + bow_loss
            if self.config.copy_loss_coef > 0 and copied is not None and outputs.source_ids is not None:
                source_mask = (
                    attention_mask if attention_mask is not None else torch.ones_like(outputs.source_ids)
                ).to(outputs.source_ids.device)
                special = [
                    token_id
                    for token_id in (self.config.pad_token_id, self.config.bos_token_id, self.config.eos_token_id)
                    if isinstance(token_id, int)
                ]
                aligned = copy_alignment(labels, outputs.source_ids, source_mask, special)
                copy_loss = self.config.copy_loss_coef * copy_supervision_loss(copied[0], copied[1], aligned)
                loss = loss + copy_loss

        return AELLMSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            decoder_hidden_states=decoder_hidden_states,
            cross_attentions=cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
            lm_loss=lm_loss,
            router_aux_loss=router_aux_loss,
            bow_loss=bow_loss,
            latent_loss=latent_loss,
            copy_loss=copy_loss,
            latent=outputs.latent,
            router_logits=outputs.router_logits,
            bow_logits=outputs.bow_logits,
            **cache_output,
        )

    @torch.no_grad()
    def answer_question(self, question: str, tokenizer: Any, max_new_tokens: int = 32, **generate_kwargs: Any) -> str:
        """The answer to `question`, through this folder's `text2text-generation` pipeline (the model's one text
        path): encoded with its closing `</s>` and truncated to `max_position_embeddings`, answered by `generate()`
        in "answer" mode (greedy unless told otherwise) and decoded without special tokens. `generate_kwargs` go to
        `generate()` (e.g. `num_beams=4`)."""
        from .pipeline_ae_llm import AELLMText2TextGenerationPipeline

        generate_kwargs.setdefault("mode", "answer")
        answerer = AELLMText2TextGenerationPipeline(model=self, tokenizer=tokenizer, device=self.device)
        [answer] = answerer(question, max_new_tokens=max_new_tokens, **generate_kwargs)
        return str(answer["generated_text"])


__all__ = [
    "AELLMDecoder",
    "AELLMDecoderAttention",
    "AELLMEncoder",
    "AELLMEncoderOutput",
    "AELLMEncoderSelfAttention",
    "AELLMForConditionalGeneration",
    "AELLMModel",
    "AELLMPreTrainedModel",
    "AELLMRecurrentCache",
    "AELLMSeq2SeqLMOutput",
    "AELLMSeq2SeqModelOutput",
    "AELLMThinkingNet",
    "shift_tokens_right",
]
