"""AE-LLM: a GRU sequence-to-sequence autoencoder with a "Thinking Net" between encoder and decoder.

    question --encoder--> latent --Thinking Net--> answer latent --decoder--> answer      (mode "answer")
    text     --encoder--> latent ------------------------------> --decoder--> text        (mode "reconstruct")

Read top to bottom: the decoder cache (the GRU state), the encoder, the decoder, the Thinking Net parts (memory,
gated MLP, sparse mixture of experts, gated block, hyper-adapter), the pre-trained base class and the
conditional-generation model. Shapes use B = batch, T = tokens, E = embedding_size, H = hidden_size,
L = latent_size, V = vocab_size, n = num_hidden_layers, X = num_experts, k = num_experts_per_tok, M = memory_slots.
"""

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutput, ModelOutput, Seq2SeqLMOutput

from .configuration_ae_llm import AELLMConfig

MODES = ("answer", "reconstruct")


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Labels -> decoder inputs: prepend the start token, drop the last token, replace -100 by the pad token."""
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


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


class AELLMRecurrentCache(Cache):
    """The decoder cache: the GRU state after the tokens decoded so far, shape (n, B, H).

    A GRU needs nothing else to go on, so there are no key/value layers. Beam search reorders the batch rows with
    `reorder_cache`. The state cannot be rolled back, so the cache is not croppable (no assisted decoding).
    """

    def __init__(self) -> None:
        super().__init__(layers=[])
        self.hidden_state: torch.Tensor | None = None
        self.seen_tokens = 0

    def update_hidden_state(self, hidden_state: torch.Tensor, num_new_tokens: int) -> None:
        self.hidden_state = hidden_state
        self.seen_tokens += num_new_tokens

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.hidden_state is not None:
            self.hidden_state = self.hidden_state.index_select(1, beam_idx.to(self.hidden_state.device))

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.hidden_state is not None:
            self.hidden_state = self.hidden_state.repeat_interleave(repeats, dim=1)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.hidden_state is not None:
            self.hidden_state = self.hidden_state[:, indices]

    def reset(self) -> None:
        self.hidden_state = None
        self.seen_tokens = 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove != 0:
            raise ValueError("The GRU state of AE-LLM cannot be rolled back to an earlier token.")

    @property
    def is_croppable(self) -> bool:
        return False

    @property
    def batch_size(self) -> int:
        return -1 if self.hidden_state is None else self.hidden_state.shape[1]


class AELLMEncoder(nn.Module):
    """Token embedding + GRU; the last state of the top GRU layer is projected to the latent vector."""

    main_input_name = "input_ids"

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.embedding_size,
            config.hidden_size,
            config.num_hidden_layers,
            batch_first=True,
            dropout=config.dropout if config.num_hidden_layers > 1 else 0.0,
        )
        self.to_latent = nn.Linear(config.hidden_size, config.latent_size)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> BaseModelOutput:
        r"""
        Returns a `BaseModelOutput` whose `last_hidden_state` is the latent, shape (B, 1, L). Padding may sit on
        either side: the real tokens are moved to the front and the GRU reads exactly `attention_mask.sum(-1)` of
        them. Extra keyword arguments (`output_attentions`, `return_dict`, ... sent by `generate()`) are ignored.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds to the AE-LLM encoder.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T) -> (B, T, E)
        batch_size, seq_len, _ = inputs_embeds.shape
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"The input has {seq_len} tokens, more than the {self.config.max_position_embeddings} the encoder "
                "reads (max_position_embeddings); truncate it."
            )
        if attention_mask is None:
            lengths = torch.full((batch_size,), seq_len, dtype=torch.long)
        else:
            # Stable sort puts the real tokens first, in order, whatever the padding side.
            order = torch.argsort((attention_mask == 0).to(torch.int8), dim=1, stable=True)  # (B, T)
            inputs_embeds = inputs_embeds.gather(1, order.unsqueeze(-1).expand_as(inputs_embeds))
            lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.dropout(inputs_embeds), lengths, batch_first=True, enforce_sorted=False
        )
        _, final_state = self.gru(packed)  # (n, B, H), in the input batch order
        latent = self.to_latent(self.dropout(final_state[-1]))  # (B, H) -> (B, L)
        return BaseModelOutput(last_hidden_state=latent.unsqueeze(1))  # (B, 1, L)


class AELLMDecoder(nn.Module):
    """GRU conditioned on a latent: the initial state comes from the latent and the latent is concatenated to every
    input embedding. The token embedding is the encoder's (passed in as `inputs_embeds`)."""

    def __init__(self, config: AELLMConfig) -> None:
        super().__init__()
        self.config = config
        self.latent_to_state = nn.Linear(config.latent_size, config.num_hidden_layers * config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(
            config.embedding_size + config.latent_size,
            config.hidden_size,
            config.num_hidden_layers,
            batch_first=True,
            dropout=config.dropout if config.num_hidden_layers > 1 else 0.0,
        )

    def initial_state(self, latent: torch.Tensor) -> torch.Tensor:
        state = torch.tanh(self.latent_to_state(latent))  # (B, L) -> (B, n * H)
        state = state.view(latent.shape[0], self.config.num_hidden_layers, self.config.hidden_size)
        return state.transpose(0, 1).contiguous()  # (n, B, H)

    def forward(
        self, inputs_embeds: torch.Tensor, latent: torch.Tensor, hidden_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, E) embeddings, (B, L) latent, optional (n, B, H) state -> (B, T, H) outputs, (n, B, H) state."""
        if hidden_state is None:
            hidden_state = self.initial_state(latent)
        steps = latent.unsqueeze(1).expand(-1, inputs_embeds.shape[1], -1)  # (B, L) -> (B, T, L)
        gru_inputs = torch.cat([self.dropout(inputs_embeds), steps], dim=-1)  # (B, T, E + L)
        outputs, hidden_state = self.gru(gru_inputs, hidden_state)  # (B, T, H), (n, B, H)
        return self.dropout(outputs), hidden_state


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
    # One flat network (no separate bare model): `base_model` is the model itself.
    base_model_prefix = "ae_llm"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["AELLMEncoder", "AELLMDecoder", "AELLMThinkingNet"]
    _skip_keys_device_placement = ["past_key_values"]
    # The decoder state cannot be rolled back: no assisted / speculative decoding.
    _is_stateful = True
    # The loss holds per-batch terms (router balance, bag of words), so the Trainer must not rescale it by token count.
    accepts_loss_kwargs = False

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


@dataclass
class AELLMSeq2SeqLMOutput(Seq2SeqLMOutput):
    r"""
    A `Seq2SeqLMOutput` with the parts of the loss and the latent. `loss == lm_loss + router_aux_loss + bow_loss`
    (the last two only in "answer" mode, already multiplied by their coefficients).

    lm_loss (`torch.FloatTensor` of shape `()`):
        Token cross-entropy of the decoder against `labels` (reconstruction or answer).
    router_aux_loss (`torch.FloatTensor` of shape `()`):
        `router_aux_loss_coef` x the load-balancing loss of the Thinking Net router.
    bow_loss (`torch.FloatTensor` of shape `()`):
        `bow_loss_coef` x the bag-of-words loss of the hyper-adapter.
    latent (`torch.FloatTensor` of shape `(B, L)`):
        The latent the decoder decoded from (encoder latent, or Thinking Net output in "answer" mode).
    router_logits (`torch.FloatTensor` of shape `(B, X)`):
        Router logits of the Thinking Net ("answer" mode).
    bow_logits (`torch.FloatTensor` of shape `(B, V)`):
        Bag-of-words logits of the hyper-adapter ("answer" mode).
    """

    # The GRU state cache (an `AELLMRecurrentCache`), not the attention `EncoderDecoderCache` of the parent class.
    past_key_values: Cache | None = None  # type: ignore[assignment]
    lm_loss: torch.Tensor | None = None
    router_aux_loss: torch.Tensor | None = None
    bow_loss: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    router_logits: torch.Tensor | None = None
    bow_logits: torch.Tensor | None = None


class AELLMForConditionalGeneration(AELLMPreTrainedModel, GenerationMixin):
    """AE-LLM: encoder -> (Thinking Net in "answer" mode) -> decoder -> output layer, usable with `generate()`.

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
        self.encoder = AELLMEncoder(config)
        self.transition = AELLMThinkingNet(config)
        self.decoder = AELLMDecoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    # The decoder keeps its own `AELLMRecurrentCache`; generate() must not build a key/value cache for it.
    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False

    def get_encoder(self, modality: str | None = None) -> AELLMEncoder:
        return self.encoder

    def get_decoder(self) -> AELLMDecoder:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        if not isinstance(value, nn.Embedding):
            raise TypeError(f"The AE-LLM token embedding must be an nn.Embedding, got {type(value).__name__}.")
        self.encoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def autoencoder_modules(self) -> list[nn.Module]:
        """The autoencoder: encoder (with the shared token embedding), decoder and output layer."""
        return [self.encoder, self.decoder, self.lm_head]

    def freeze_autoencoder(self) -> None:
        """Stop training the autoencoder, so that only the Thinking Net learns (stage 2: question -> answer)."""
        for module in self.autoencoder_modules():
            module.requires_grad_(False)

    def unfreeze_autoencoder(self) -> None:
        for module in self.autoencoder_modules():
            module.requires_grad_(True)

    def _decode_scheduled(
        self, decoder_input_ids: torch.Tensor, latent: torch.Tensor, hidden_state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scheduled sampling, one step at a time: step t > 0 reads the gold token `decoder_input_ids[:, t]` with
        probability `teacher_forcing_ratio` (drawn per sequence and step from torch's RNG) and otherwise the model's
        own argmax at step t - 1. Returns (B, T, V) logits and the (n, B, H) final state."""
        batch_size, seq_len = decoder_input_ids.shape
        step_ids = decoder_input_ids[:, 0]  # (B,) the start token
        step_logits: list[torch.Tensor] = []
        for t in range(seq_len):
            if t > 0:
                use_gold = torch.rand(batch_size, device=latent.device) < self.config.teacher_forcing_ratio
                predicted = step_logits[-1].argmax(dim=-1)  # (B,)
                step_ids = torch.where(use_gold, decoder_input_ids[:, t], predicted)
            embeds = self.encoder.embed_tokens(step_ids.unsqueeze(1))  # (B, 1, E)
            outputs, hidden_state = self.decoder(embeds, latent, hidden_state)  # (B, 1, H)
            step_logits.append(self.lm_head(outputs[:, 0]))  # (B, V)
        assert hidden_state is not None
        return torch.stack(step_logits, dim=1), hidden_state  # (B, T, V)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple[torch.Tensor, ...] | None = None,
        past_key_values: AELLMRecurrentCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> AELLMSeq2SeqLMOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(B, S)`):
            The text to encode (the question in "answer" mode). Not needed when `encoder_outputs` is given.
        decoder_input_ids (`torch.LongTensor` of shape `(B, T)`, *optional*):
            Decoder inputs; built from `labels` with [`shift_tokens_right`] when omitted.
        decoder_attention_mask (`torch.Tensor`, *optional*):
            Accepted for API compatibility; the decoder is causal by construction and padding positions carry -100
            labels, so it is not needed.
        encoder_outputs (`BaseModelOutput`, *optional*):
            Output of `get_encoder()`; its `last_hidden_state` (B, 1, L) is the latent.
        past_key_values (`AELLMRecurrentCache`, *optional*):
            The decoder GRU state after the tokens already decoded; then `decoder_input_ids` holds only new tokens.
        labels (`torch.LongTensor` of shape `(B, T)`, *optional*):
            Target tokens (-100 is ignored). With labels, training uses scheduled sampling
            (`config.teacher_forcing_ratio`) and no cache.
        mode (`str`, *optional*):
            "answer" or "reconstruct"; defaults to `config.mode`.
        Extra keyword arguments sent by `generate()` (`return_dict`, `output_attentions`, ...) are ignored.
        """
        mode = mode if mode is not None else self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be 'answer' or 'reconstruct', got {mode!r}.")
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id or 0, self.config.decoder_start_token_id or 0
                )
        if decoder_input_ids is None:
            raise ValueError("Pass decoder_input_ids or labels to AE-LLM.")
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if past_key_values is not None and not isinstance(past_key_values, AELLMRecurrentCache):
            raise TypeError(
                f"AE-LLM keeps its decoder state in an AELLMRecurrentCache, got {type(past_key_values).__name__}; "
                "pass past_key_values=None to start a new one."
            )

        if encoder_outputs is None:
            encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds)
        elif isinstance(encoder_outputs, BaseModelOutput):
            encoded = encoder_outputs
        else:
            encoded = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        encoder_latent: torch.Tensor = encoded.last_hidden_state  # (B, 1, L)
        latent = encoder_latent[:, 0]  # (B, 1, L) -> (B, L)

        thought = self.transition(latent) if mode == "answer" else None
        if thought is not None:
            latent = thought.answer_latent

        hidden_state = past_key_values.hidden_state if past_key_values is not None else None
        seen = past_key_values.get_seq_length() if past_key_values is not None else 0
        if seen + decoder_input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"The decoder would reach {seen + decoder_input_ids.shape[1]} tokens, past the "
                f"{self.config.max_position_embeddings} it writes (max_position_embeddings); lower max_new_tokens."
            )
        if self.training and labels is not None and self.config.teacher_forcing_ratio < 1.0:
            logits, hidden_state = self._decode_scheduled(decoder_input_ids, latent, hidden_state)
        else:
            embeds = self.encoder.embed_tokens(decoder_input_ids)  # (B, T) -> (B, T, E)
            outputs, hidden_state = self.decoder(embeds, latent, hidden_state)  # (B, T, H)
            logits = self.lm_head(outputs)  # (B, T, H) -> (B, T, V)

        if use_cache:
            if past_key_values is None:
                past_key_values = AELLMRecurrentCache()
            past_key_values.update_hidden_state(hidden_state, decoder_input_ids.shape[1])
        else:
            past_key_values = None

        loss = lm_loss = router_aux_loss = bow_loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            lm_loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
            loss = lm_loss
            if thought is not None and thought.router_logits is not None and thought.bow_logits is not None:
                balance = load_balancing_loss(thought.router_logits, self.config.num_experts_per_tok)
                router_aux_loss = self.config.router_aux_loss_coef * balance
                ignore_ids = [
                    token_id
                    for token_id in (self.config.pad_token_id, self.config.bos_token_id, self.config.eos_token_id)
                    if isinstance(token_id, int)
                ]
                bow_loss = self.config.bow_loss_coef * bag_of_words_loss(thought.bow_logits, labels, ignore_ids)
                loss = loss + router_aux_loss + bow_loss

        return AELLMSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=past_key_values,
            encoder_last_hidden_state=encoder_latent,
            lm_loss=lm_loss,
            router_aux_loss=router_aux_loss,
            bow_loss=bow_loss,
            latent=latent,
            router_logits=thought.router_logits if thought is not None else None,
            bow_logits=thought.bow_logits if thought is not None else None,
        )

    @torch.no_grad()
    def answer_question(self, question: str, tokenizer: Any, max_new_tokens: int = 32, **generate_kwargs: Any) -> str:
        """Encode `question`, decode its answer latent with `generate()` (greedy unless told otherwise) and return
        the answer text without special tokens. `generate_kwargs` go to `generate()` (e.g. `num_beams=4`)."""
        inputs = tokenizer(
            question, return_tensors="pt", truncation=True, max_length=self.config.max_position_embeddings
        )
        inputs = {
            key: value.to(self.device) for key, value in inputs.items() if key in ("input_ids", "attention_mask")
        }
        generate_kwargs.setdefault("mode", "answer")
        output = self.generate(**inputs, max_new_tokens=max_new_tokens, **generate_kwargs)
        return str(tokenizer.decode(output[0], skip_special_tokens=True)).strip()


__all__ = [
    "AELLMDecoder",
    "AELLMEncoder",
    "AELLMForConditionalGeneration",
    "AELLMPreTrainedModel",
    "AELLMRecurrentCache",
    "AELLMSeq2SeqLMOutput",
    "AELLMThinkingNet",
    "shift_tokens_right",
]
