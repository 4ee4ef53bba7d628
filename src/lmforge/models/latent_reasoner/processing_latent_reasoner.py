"""LatentReasoner processor: the two tokenizers of a model that reads with one vocabulary and writes with another.

A LatentReasoner reads its input with its encoder's tokenizer and writes with its decoder's. The processor holds both,
the transformers way for a model with several tokenizers (as InstructBLIP's Q-Former tokenizer): the decoder
tokenizer is the primary `tokenizer`, saved at the top of the folder (so `AutoTokenizer.from_pretrained(path)` is the
one that decodes the model's output), the encoder tokenizer is `encoder_tokenizer`, saved in the `encoder_tokenizer/`
subfolder. `AutoProcessor.from_pretrained(path)` (with `trust_remote_code=True` where lmforge is absent) loads both.
"""

from collections.abc import Sequence
from typing import Any

from transformers import BatchEncoding, ProcessorMixin
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

ENCODER_TOKENIZER_SUBFOLDER = "encoder_tokenizer"


class LatentReasonerProcessor(ProcessorMixin):
    """The decoder tokenizer (`tokenizer`: writes the output) and the encoder tokenizer (`encoder_tokenizer`: reads
    the input) of a LatentReasoner.

    Calling the processor encodes text for the encoder, always with its special tokens and truncated to its
    `model_max_length`, as in training (a caller's `add_special_tokens` is ignored); `decode`, `batch_decode` and the
    special token ids are the decoder's, which is what `generate()` writes.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            The decoder's tokenizer.
        encoder_tokenizer (`PreTrainedTokenizerBase`):
            The encoder's tokenizer.
    """

    tokenizer: PreTrainedTokenizerBase
    encoder_tokenizer: PreTrainedTokenizerBase

    def __init__(self, tokenizer: PreTrainedTokenizerBase, encoder_tokenizer: PreTrainedTokenizerBase, **kwargs: Any):
        super().__init__(tokenizer, encoder_tokenizer, **kwargs)

    @property
    def decoder_tokenizer(self) -> PreTrainedTokenizerBase:
        """The decoder's tokenizer (the primary `tokenizer`)."""
        return self.tokenizer  # type: ignore[no-any-return]

    def __call__(self, text: str | Sequence[str] | None = None, **kwargs: Any) -> BatchEncoding:  # type: ignore[override]
        """Encode `text` for the encoder (special tokens always added, truncated to the encoder's length)."""
        kwargs.pop("add_special_tokens", None)
        kwargs.setdefault("truncation", True)
        kwargs.setdefault("return_token_type_ids", False)
        return self.encoder_tokenizer(text, **kwargs)  # type: ignore[no-any-return]

    def decode(self, token_ids: Any, **kwargs: Any) -> str:
        return str(self.tokenizer.decode(token_ids, **kwargs))

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        return list(self.tokenizer.batch_decode(sequences, **kwargs))

    @property
    def model_input_names(self) -> list[str]:
        return list(self.encoder_tokenizer.model_input_names)

    @property
    def pad_token_id(self) -> int | None:
        return self.tokenizer.pad_token_id  # type: ignore[no-any-return]

    @property
    def bos_token_id(self) -> int | None:
        return self.tokenizer.bos_token_id  # type: ignore[no-any-return]

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id  # type: ignore[no-any-return]


__all__ = ["ENCODER_TOKENIZER_SUBFOLDER", "LatentReasonerProcessor"]
