"""CharTransformer model configuration."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils.type_validators import interval


@strict
class CharTransformerConfig(PreTrainedConfig):
    r"""
    Configuration of a CharTransformer model: a character-level decoder-only transformer with learned absolute
    position embeddings and **post-norm** residual blocks, in the order of "Attention Is All You Need":

        x = LayerNorm(x + Attention(x))
        x = LayerNorm(x + FFN(x))

    This is unlike Aksis, whose blocks are pre-norm (x + Attention(LayerNorm(x))). Because every block ends with a
    LayerNorm there is no final LayerNorm before the output head. The feed-forward layer is Linear -> ReLU -> Linear.

    The defaults are the reference size (the nanoGPT Shakespeare-char model): 6 layers, width 384, 6 heads, context
    256, dropout 0.2, and a vocabulary of 65 characters. Set `vocab_size` from the tokenizer built on your corpus
    (`len(tokenizer)`, which counts the 4 special tokens pad 0, unk 1, bos 2, eos 3).

    Args:
        vocab_size (`int`, defaults to 65):
            Number of tokens in the vocabulary, special tokens included; set it to `len(tokenizer)`.
        max_position_embeddings (`int`, defaults to 256):
            Context length: the number of learned absolute positions.
        hidden_size (`int`, defaults to 384):
            Width of the residual stream (d_model).
        intermediate_size (`int`, defaults to 1536):
            Width of the ReLU feed-forward layer (4 x `hidden_size`).
        num_hidden_layers (`int`, defaults to 6):
            Number of post-norm decoder blocks.
        num_attention_heads (`int`, defaults to 6):
            Number of attention heads; must divide `hidden_size`.
        hidden_dropout (`float`, defaults to 0.2):
            Dropout on the embeddings and on the output of every attention and feed-forward sub-layer.
        attention_dropout (`float`, defaults to 0.2):
            Dropout on the attention probabilities.
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of the LayerNorms.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of the weight matrices.
        use_bias (`bool`, defaults to `True`):
            Whether the linear layers have a bias.
        use_cache (`bool`, defaults to `True`):
            Whether the model returns its key/value cache for fast generation.
        pad_token_id / unk_token_id / bos_token_id / eos_token_id (`int`, defaults to 0 / 1 / 2 / 3):
            Ids of the special tokens of the `CharTransformerTokenizer`.
        tie_word_embeddings (`bool`, defaults to `True`):
            Whether the output projection shares its weight with the token embedding.

    Example:

    ```python
    >>> from lmforge.models.char_transformer import CharTransformerConfig, CharTransformerForCausalLM
    >>> config = CharTransformerConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
    >>> model = CharTransformerForCausalLM(config)
    >>> model.config.hidden_size
    64
    ```
    """

    model_type = "char_transformer"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    # Tensor parallelism (`from_pretrained(tp_plan="auto")` under torchrun, and vLLM's Transformers backend): the
    # fused query/key/value projection is split by columns and its output gathered (a plain column split would cut
    # across q|k|v), the attention output projection by rows from that replicated input; the MLP is the usual
    # column-then-row split. Pipeline parallelism: what each stage's modules take and give.
    base_model_tp_plan = {
        "layers.*.self_attn.qkv_proj": "colwise_rep",
        "layers.*.self_attn.o_proj": "rowwise_rep",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = interval(min=1)(default=65)
    max_position_embeddings: int = interval(min=1)(default=256)
    hidden_size: int = interval(min=1)(default=384)
    intermediate_size: int = interval(min=1)(default=1536)
    num_hidden_layers: int = interval(min=1)(default=6)
    num_attention_heads: int = interval(min=1)(default=6)
    hidden_dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.2)
    attention_dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.2)
    layer_norm_eps: float = 1e-5
    initializer_range: float = interval(min=0.0, max=1.0)(default=0.02)
    use_bias: bool = True
    use_cache: bool = True
    pad_token_id: int | None = 0
    unk_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | list[int] | None = 3
    tie_word_embeddings: bool = True

    def validate_architecture(self) -> None:
        """Cross-field rules, checked when the config is built."""
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); change one of them."
            )


__all__ = ["CharTransformerConfig"]
