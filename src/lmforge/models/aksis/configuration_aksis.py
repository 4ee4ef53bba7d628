"""Aksis model configuration."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils.type_validators import interval


@strict
class AksisConfig(PreTrainedConfig):
    r"""
    Configuration of an Aksis model: a GPT-style decoder-only transformer with learned absolute position
    embeddings and pre-norm residual blocks (LayerNorm before attention and before the MLP, one final LayerNorm).

    The defaults are the reference size: 6 layers, width 512, 8 heads, context 512, a byte-level BPE vocabulary of
    10,000 tokens plus 4 special tokens (pad 0, unk 1, bos 2, eos 3).

    Args:
        vocab_size (`int`, defaults to 10004):
            Number of tokens in the vocabulary, special tokens included.
        max_position_embeddings (`int`, defaults to 512):
            Context length: the number of learned absolute positions.
        hidden_size (`int`, defaults to 512):
            Width of the residual stream (d_model).
        intermediate_size (`int`, defaults to 2048):
            Width of the feed-forward layer (4 x `hidden_size`).
        num_hidden_layers (`int`, defaults to 6):
            Number of decoder blocks.
        num_attention_heads (`int`, defaults to 8):
            Number of attention heads; must divide `hidden_size`.
        hidden_act (`str`, defaults to `"gelu"`):
            Activation of the feed-forward layer (any key of `transformers.activations.ACT2FN`).
        hidden_dropout (`float`, defaults to 0.1):
            Dropout on the embeddings and on the output of every attention and MLP sub-layer.
        attention_dropout (`float`, defaults to 0.0):
            Dropout on the attention probabilities. Off by default, as in Llama and nanoGPT: at 0, SDPA can take its
            fused causal kernel (flash attention on the CPU and the GPU), which never materialises the T x T
            attention matrix; any other value makes it fall back to the plain math path.
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of the LayerNorms.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of the weight matrices.
        use_bias (`bool`, defaults to `True`):
            Whether the linear layers have a bias.
        use_cache (`bool`, defaults to `True`):
            Whether the model returns its key/value cache for fast generation.
        pad_token_id / unk_token_id / bos_token_id / eos_token_id (`int`, defaults to 0 / 1 / 2 / 3):
            Ids of the special tokens of the Aksis tokenizer.
        tie_word_embeddings (`bool`, defaults to `True`):
            Whether the output projection shares its weight with the token embedding.

    Example:

    ```python
    >>> from lmforge.models.aksis import AksisConfig, AksisForCausalLM
    >>> config = AksisConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
    >>> model = AksisForCausalLM(config)
    >>> model.config.hidden_size
    64
    ```
    """

    model_type = "aksis"
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

    vocab_size: int = interval(min=1)(default=10004)
    max_position_embeddings: int = interval(min=1)(default=512)
    hidden_size: int = interval(min=1)(default=512)
    intermediate_size: int = interval(min=1)(default=2048)
    num_hidden_layers: int = interval(min=1)(default=6)
    num_attention_heads: int = interval(min=1)(default=8)
    hidden_act: str = "gelu"
    hidden_dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.1)
    attention_dropout: float | int = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
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
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"hidden_act {self.hidden_act!r} is not an activation transformers knows; use one of "
                f"{', '.join(sorted(ACT2FN))}."
            )


__all__ = ["AksisConfig"]
