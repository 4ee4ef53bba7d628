"""AE-LLM model configuration."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils.type_validators import interval


@strict
class AELLMConfig(PreTrainedConfig):
    r"""
    Configuration of an AE-LLM model: a recurrent sequence-to-sequence autoencoder (text -> one latent vector -> text)
    with a transition network, the "Thinking Net", that maps the latent of a question to the latent of its answer.

    The encoder is a GRU over token embeddings whose last state is projected to a latent vector. The decoder is a GRU
    started from the latent and fed the latent next to every input embedding. The Thinking Net reads a learned
    key-value memory, mixes a sparse set of experts (top-k routing with a load-balancing loss) and refines the result
    with gated (GLU) blocks; its hyper-adapter predicts the bag of answer words from the answer latent.

    The defaults are the reference size: embeddings of 64, GRU width 32, latent of 124, a byte-level BPE vocabulary of
    1,800 tokens (4 special tokens included: pad 0, unk 1, bos 2, eos 3), and the seed's design. Five additions to
    that design are off by default: `decoder_attention` (the decoder attends over the encoder's states), `copy_head`
    (a pointer-generator that copies input tokens), `bidirectional_encoder`, `encoder_self_attention` (the encoder's
    states attend over each other) and `copy_loss_coef` (copy supervision: the copy head is told which input
    positions hold the answer). Two loss weights pick the objective:
    `lm_loss_coef` (decoder cross-entropy) and `latent_loss_coef` (the Thinking Net's answer latent against the
    encoder's latent of the answer).

    Args:
        vocab_size (`int`, defaults to 1800):
            Number of tokens in the vocabulary, special tokens included (set it to `len(tokenizer)`).
        embedding_size (`int`, defaults to 64):
            Width of the token embeddings of the encoder and of the decoder.
        hidden_size (`int`, defaults to 32):
            Width of the GRU states of the encoder and of the decoder.
        num_hidden_layers (`int`, defaults to 1):
            Number of stacked GRU layers in the encoder and in the decoder.
        latent_size (`int`, defaults to 124):
            Width of the latent vector a text is encoded to (and the Thinking Net works in).
        intermediate_size (`int`, defaults to 128):
            Inner width of the gated blocks and of each expert of the Thinking Net.
        max_position_embeddings (`int`, defaults to 64):
            Longest sequence, in tokens, the encoder reads and the decoder writes (the GRUs have no position table;
            longer inputs are refused with an error, so truncate to this length).
        teacher_forcing_ratio (`float`, defaults to 0.5):
            Scheduled sampling during training: at each decoder step, each sequence is fed the gold previous token
            with this probability and the model's own previous argmax prediction otherwise. 1.0 is pure teacher
            forcing (one parallel GRU call); evaluation and generation never use it.
        dropout (`float`, defaults to 0.1):
            Dropout on the embeddings, the GRU outputs and the Thinking Net blocks.
        num_experts (`int`, defaults to 4):
            Number of experts of the sparse mixture of experts in the Thinking Net.
        num_experts_per_tok (`int`, defaults to 2):
            Number of experts each latent is routed to (top-k); at most `num_experts`.
        router_aux_loss_coef (`float`, defaults to 0.01):
            Weight of the Switch/Mixtral load-balancing loss of the router in the total loss.
        memory_slots (`int`, defaults to 32):
            Number of learned key-value slots of the Thinking Net memory, read by attention from the latent.
        num_gated_blocks (`int`, defaults to 2):
            Number of residual gated (GLU) blocks of the Thinking Net.
        hyper_adapter_size (`int`, defaults to 64):
            Bottleneck width of the hyper-adapter mapping the answer latent to bag-of-words logits over the vocabulary.
        bow_loss_coef (`float`, defaults to 0.1):
            Weight of the bag-of-words loss (predict the set of answer tokens from the answer latent) in the total loss.
        lm_loss_coef (`float`, defaults to 1.0):
            Weight of the decoder's token cross-entropy against `labels` in the total loss (0 leaves the decoder out of
            the objective, e.g. when the Thinking Net learns from the latent loss alone).
        latent_loss_coef (`float`, defaults to 0.0):
            Weight of the latent loss in "answer" mode: the mean squared error between the Thinking Net's answer latent
            and the encoder's latent of the labels (the answer text encoded as the autoencoder reads it: eval mode, no
            gradient), i.e. the seed's transition objective, question latent -> answer latent. The target is computed
            by the encoder itself, so train the encoder at the same time only next to the decoder loss (a trainable
            encoder could otherwise make every latent alike).
        decoder_attention (`bool`, defaults to `False`):
            Addition to the seed's design: attention from every decoder output over the encoder's top-layer states
            (Luong's "general" score, plus a score of the token just written against the input token before each
            position, so that a copied span goes on where it left off; the output layer reads
            tanh(W [output; context])). The latent still starts the decoder and feeds every step; the attention adds
            no state between tokens, so the cache stays the GRU states.
        copy_head (`bool`, defaults to `False`):
            Addition to the seed's design (needs `decoder_attention`): a pointer-generator head. A gate mixes the
            output layer's distribution with a copy of the input tokens weighted by the attention, so the decoder can
            write words of the input it has no good embedding for (names, numbers of an unseen article).
        copy_loss_coef (`float`, defaults to 0.0):
            Addition to the seed's design (needs `copy_head`): weight of a copy supervision loss in the total loss.
            Each label token is aligned to the input positions it can be copied from: the positions of the labels'
            whole token span where it occurs in the input (every occurrence), else the positions holding the same
            token; special tokens and tokens found nowhere in the input are not aligned. The loss is the mean, over
            aligned label tokens, of -log((1 - p_gen) * attention weight on the aligned positions): it points the
            attention at the answer span and the gate at copying. 0 (the default) leaves it out.
        bidirectional_encoder (`bool`, defaults to `False`):
            Addition to the seed's design: bidirectional encoder GRUs (each state reads the tokens on both sides;
            the latent comes from both directions' last states), for the decoder to attend to.
        encoder_self_attention (`bool`, defaults to `False`):
            Addition to the seed's design (needs `decoder_attention`): one residual multi-head self-attention layer
            (a head per 64 channels) over the encoder's top-layer states, before the decoder attends to them, so that
            each input position reads the others (a word of the sentence the words of the question). Its output
            projection starts at zero: switched on for a model trained without it, the model starts unchanged. The
            latent still comes from the GRUs' last states.
        mode (`str`, defaults to `"answer"`):
            `"answer"`: the decoder decodes from the Thinking Net output (question -> answer). `"reconstruct"`: the
            decoder decodes from the encoder latent itself (autoencoder training). `forward` can override it per call.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of the linear and embedding weights.
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of the LayerNorms of the Thinking Net.
        use_cache (`bool`, defaults to `True`):
            Whether the model returns the decoder GRU state as its cache for fast generation.
        pad_token_id / unk_token_id / bos_token_id / eos_token_id (`int`, defaults to 0 / 1 / 2 / 3):
            Ids of the special tokens of the AE-LLM tokenizer.
        decoder_start_token_id (`int`, defaults to 2):
            Token the decoder starts from (the bos token); labels are shifted right behind it.
        is_encoder_decoder (`bool`, defaults to `True`):
            AE-LLM is an encoder-decoder: `generate()` encodes once and decodes from the latent.
        tie_word_embeddings (`bool`, defaults to `False`):
            The output layer (`hidden_size` wide) cannot share the embedding (`embedding_size` wide).

    Example:

    ```python
    >>> from lmforge.models.ae_llm import AELLMConfig, AELLMForConditionalGeneration
    >>> config = AELLMConfig(vocab_size=300, embedding_size=16, hidden_size=16, latent_size=24, memory_slots=8)
    >>> model = AELLMForConditionalGeneration(config)
    >>> model.config.latent_size
    24
    ```
    """

    model_type = "ae_llm"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]

    vocab_size: int = interval(min=1)(default=1800)
    embedding_size: int = interval(min=1)(default=64)
    hidden_size: int = interval(min=1)(default=32)
    num_hidden_layers: int = interval(min=1)(default=1)
    latent_size: int = interval(min=1)(default=124)
    intermediate_size: int = interval(min=1)(default=128)
    max_position_embeddings: int = interval(min=1)(default=64)
    teacher_forcing_ratio: float | int = interval(min=0.0, max=1.0)(default=0.5)
    dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    num_experts: int = interval(min=1)(default=4)
    num_experts_per_tok: int = interval(min=1)(default=2)
    router_aux_loss_coef: float | int = interval(min=0.0)(default=0.01)
    memory_slots: int = interval(min=1)(default=32)
    num_gated_blocks: int = interval(min=0)(default=2)
    hyper_adapter_size: int = interval(min=1)(default=64)
    bow_loss_coef: float | int = interval(min=0.0)(default=0.1)
    lm_loss_coef: float | int = interval(min=0.0)(default=1.0)
    latent_loss_coef: float | int = interval(min=0.0)(default=0.0)
    decoder_attention: bool = False
    copy_head: bool = False
    copy_loss_coef: float | int = interval(min=0.0)(default=0.0)
    bidirectional_encoder: bool = False
    encoder_self_attention: bool = False
    mode: Literal["answer", "reconstruct"] = "answer"
    initializer_range: float = interval(min=0.0, max=1.0)(default=0.02)
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    pad_token_id: int | None = 0
    unk_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 3
    decoder_start_token_id: int | None = 2
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = False

    def validate_architecture(self) -> None:
        """Cross-field rules, checked when the config is built."""
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(
                f"num_experts_per_tok ({self.num_experts_per_tok}) cannot exceed num_experts ({self.num_experts}); "
                "route each latent to at most every expert."
            )
        if self.copy_head and not self.decoder_attention:
            raise ValueError("copy_head needs decoder_attention: the copy head copies with the attention weights.")
        if self.encoder_self_attention and not self.decoder_attention:
            raise ValueError(
                "encoder_self_attention needs decoder_attention: it changes the encoder states the decoder attends to."
            )
        if self.copy_loss_coef > 0 and not self.copy_head:
            raise ValueError("copy_loss_coef needs copy_head: the copy loss supervises the copy head.")
        if self.mode not in ("answer", "reconstruct"):
            raise ValueError(f"mode must be 'answer' or 'reconstruct', got {self.mode!r}.")
        if self.decoder_start_token_id is None:
            raise ValueError("decoder_start_token_id must be set: the decoder needs a token to start from.")
        if not self.is_encoder_decoder:
            raise ValueError("is_encoder_decoder must stay True: AE-LLM always encodes, then decodes.")
        if self.tie_word_embeddings:
            raise ValueError(
                "tie_word_embeddings must be False: the output layer is hidden_size wide, the embedding "
                "embedding_size wide."
            )
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        special = {
            "pad_token_id": [self.pad_token_id],
            "unk_token_id": [self.unk_token_id],
            "bos_token_id": [self.bos_token_id],
            "eos_token_id": eos_ids,
            "decoder_start_token_id": [self.decoder_start_token_id],
        }
        for name, ids in special.items():
            for token_id in ids:
                if token_id is not None and not 0 <= token_id < self.vocab_size:
                    raise ValueError(
                        f"{name} ({token_id}) must be a token id below vocab_size ({self.vocab_size}); "
                        "set vocab_size to len(tokenizer)."
                    )


__all__ = ["AELLMConfig"]
