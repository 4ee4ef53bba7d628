"""The two tokenizers of a model that reads with one vocabulary and writes with another (LatentReasoner).

A LatentReasoner folder keeps the decoder tokenizer at its top level and the encoder tokenizer in its
`encoder_tokenizer/` subfolder (`lmforge.models.latent_reasoner.save_tokenizers`). `TokenizerPair` holds both and
stands in for a single tokenizer where lmforge hands one around: it is the Trainer's `processing_class` (so every
checkpoint and the final model folder get both tokenizers) and the tokenizer `generate_text` encodes the prompt
with and decodes the output with.
"""

import os
from collections.abc import Sequence
from typing import Any

from transformers import BatchEncoding, PreTrainedTokenizerBase

from .models.latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER, load_tokenizers, save_tokenizers


class TokenizerPair:
    """The encoder tokenizer (reads the input text) and the decoder tokenizer (writes the output text).

    Calling the pair encodes with the encoder tokenizer, always with its special tokens and truncated to its
    `model_max_length`, as in training (a caller's `add_special_tokens` is ignored); `decode`, `batch_decode` and the
    special token ids are the decoder's.
    """

    def __init__(self, encoder_tokenizer: PreTrainedTokenizerBase, decoder_tokenizer: PreTrainedTokenizerBase) -> None:
        self.encoder_tokenizer = encoder_tokenizer
        self.decoder_tokenizer = decoder_tokenizer

    @classmethod
    def from_pretrained(cls, model_path: str | os.PathLike, **kwargs: Any) -> "TokenizerPair":
        """Both tokenizers of a saved LatentReasoner folder."""
        return cls(*load_tokenizers(model_path, **kwargs))

    @staticmethod
    def is_saved_in(model_path: str | os.PathLike) -> bool:
        """Whether `model_path` has an encoder tokenizer subfolder next to its top-level tokenizer."""
        return os.path.isdir(os.path.join(model_path, ENCODER_TOKENIZER_SUBFOLDER))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        """The decoder tokenizer at the top of `save_directory`, the encoder tokenizer in `encoder_tokenizer/`."""
        save_tokenizers(save_directory, self.encoder_tokenizer, self.decoder_tokenizer)
        return (str(save_directory), os.path.join(save_directory, ENCODER_TOKENIZER_SUBFOLDER))

    def __call__(self, text: str | Sequence[str], **kwargs: Any) -> BatchEncoding:
        kwargs.pop("add_special_tokens", None)
        kwargs.setdefault("truncation", True)
        kwargs.setdefault("return_token_type_ids", False)
        return self.encoder_tokenizer(text, **kwargs)

    def decode(self, token_ids: Any, **kwargs: Any) -> str:
        return str(self.decoder_tokenizer.decode(token_ids, **kwargs))

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        return list(self.decoder_tokenizer.batch_decode(sequences, **kwargs))

    @property
    def model_input_names(self) -> list[str]:
        return list(self.encoder_tokenizer.model_input_names)

    @property
    def pad_token_id(self) -> int | None:
        return self.decoder_tokenizer.pad_token_id

    @property
    def bos_token_id(self) -> int | None:
        return self.decoder_tokenizer.bos_token_id

    @property
    def eos_token_id(self) -> int | None:
        return self.decoder_tokenizer.eos_token_id

    def __repr__(self) -> str:
        return (
            f"TokenizerPair(encoder_tokenizer={type(self.encoder_tokenizer).__name__}, "
            f"decoder_tokenizer={type(self.decoder_tokenizer).__name__})"
        )


__all__ = ["TokenizerPair"]
