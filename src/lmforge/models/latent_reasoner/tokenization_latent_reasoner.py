"""Where a LatentReasoner folder keeps its two tokenizers.

The decoder tokenizer sits at the top level of the folder (it builds `labels` and decodes what `generate` writes, so
`AutoTokenizer.from_pretrained(path)` is the one that reads the model's output); the encoder tokenizer sits in the
`encoder_tokenizer/` subfolder (`AutoTokenizer.from_pretrained(path, subfolder="encoder_tokenizer")`).
`LatentReasonerProcessor` (`processing_latent_reasoner.py`) holds, saves and loads both; `save_tokenizers` and
`load_tokenizers` are its deprecated predecessors (lmforge 0.1), kept for one release.
"""

import os
import warnings
from typing import Any

from transformers.tokenization_utils_base import PreTrainedTokenizerBase

ENCODER_TOKENIZER_SUBFOLDER = "encoder_tokenizer"


def save_tokenizers(
    save_directory: str | os.PathLike,
    encoder_tokenizer: PreTrainedTokenizerBase,
    decoder_tokenizer: PreTrainedTokenizerBase,
) -> None:
    """Deprecated: `LatentReasonerProcessor(decoder_tokenizer, encoder_tokenizer).save_pretrained(save_directory)`."""
    from .processing_latent_reasoner import LatentReasonerProcessor

    warnings.warn(
        "save_tokenizers is deprecated and goes in the next release: use "
        "LatentReasonerProcessor(decoder_tokenizer, encoder_tokenizer).save_pretrained(path)",
        FutureWarning,
        stacklevel=2,
    )
    LatentReasonerProcessor(decoder_tokenizer, encoder_tokenizer).save_pretrained(save_directory)


def load_tokenizers(
    pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    """Deprecated: `LatentReasonerProcessor.from_pretrained(path)` (its `encoder_tokenizer` and `tokenizer`)."""
    from .processing_latent_reasoner import LatentReasonerProcessor

    warnings.warn(
        "load_tokenizers is deprecated and goes in the next release: use LatentReasonerProcessor.from_pretrained(path)",
        FutureWarning,
        stacklevel=2,
    )
    processor = LatentReasonerProcessor.from_pretrained(pretrained_model_name_or_path, **kwargs)
    return processor.encoder_tokenizer, processor.tokenizer


__all__ = ["ENCODER_TOKENIZER_SUBFOLDER", "load_tokenizers", "save_tokenizers"]
