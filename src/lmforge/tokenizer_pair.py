"""Deprecated (lmforge 0.1): `TokenizerPair` is now `lmforge.models.LatentReasonerProcessor`, a transformers
`ProcessorMixin` (`AutoProcessor.from_pretrained(path)` loads it). This module goes in the next release.

The old argument order is kept: `TokenizerPair(encoder_tokenizer, decoder_tokenizer)` is
`LatentReasonerProcessor(tokenizer=decoder_tokenizer, encoder_tokenizer=encoder_tokenizer)`.
"""

import os
import warnings
from typing import Any

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from .models.latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER, LatentReasonerProcessor

_MESSAGE = (
    "lmforge.tokenizer_pair.TokenizerPair is deprecated and goes in the next release: use "
    "lmforge.models.LatentReasonerProcessor (tokenizer = the decoder's, encoder_tokenizer = the encoder's)"
)


class TokenizerPair(LatentReasonerProcessor):
    """Deprecated name of [`LatentReasonerProcessor`], with the old argument order (encoder, decoder)."""

    def __init__(
        self, encoder_tokenizer: PreTrainedTokenizerBase, decoder_tokenizer: PreTrainedTokenizerBase, **kwargs: Any
    ) -> None:
        warnings.warn(_MESSAGE, FutureWarning, stacklevel=2)
        super().__init__(decoder_tokenizer, encoder_tokenizer, **kwargs)

    @classmethod
    def get_attributes(cls) -> list[str]:
        return LatentReasonerProcessor.get_attributes()

    @classmethod
    def from_pretrained(cls, model_path: str | os.PathLike, **kwargs: Any) -> LatentReasonerProcessor:  # type: ignore[override]
        """Both tokenizers of a saved LatentReasoner folder, as a `LatentReasonerProcessor`."""
        warnings.warn(_MESSAGE, FutureWarning, stacklevel=2)
        return LatentReasonerProcessor.from_pretrained(model_path, **kwargs)

    @staticmethod
    def is_saved_in(model_path: str | os.PathLike) -> bool:
        """Whether `model_path` has an encoder tokenizer subfolder next to its top-level tokenizer."""
        return os.path.isdir(os.path.join(model_path, ENCODER_TOKENIZER_SUBFOLDER))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Any:  # type: ignore[override]
        """Saved as the `LatentReasonerProcessor` it is (the folder names that class, not this alias)."""
        return LatentReasonerProcessor(self.tokenizer, self.encoder_tokenizer).save_pretrained(
            save_directory, **kwargs
        )


__all__ = ["TokenizerPair"]
