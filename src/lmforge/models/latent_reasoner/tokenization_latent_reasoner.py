"""Where a LatentReasoner folder keeps its two tokenizers.

The decoder tokenizer sits at the top level of the folder (it builds `labels` and decodes what `generate` writes, so
`AutoTokenizer.from_pretrained(path)` is the one that reads the model's output); the encoder tokenizer sits in the
`encoder_tokenizer/` subfolder (`AutoTokenizer.from_pretrained(path, subfolder="encoder_tokenizer")`).
"""

import os

from transformers import AutoTokenizer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

ENCODER_TOKENIZER_SUBFOLDER = "encoder_tokenizer"


def save_tokenizers(
    save_directory: str | os.PathLike,
    encoder_tokenizer: PreTrainedTokenizerBase,
    decoder_tokenizer: PreTrainedTokenizerBase,
) -> None:
    """Save the decoder tokenizer at the top of `save_directory` and the encoder one in `encoder_tokenizer/`."""
    decoder_tokenizer.save_pretrained(save_directory)
    encoder_tokenizer.save_pretrained(os.path.join(save_directory, ENCODER_TOKENIZER_SUBFOLDER))


def load_tokenizers(
    pretrained_model_name_or_path: str | os.PathLike, **kwargs: object
) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    """Load `(encoder_tokenizer, decoder_tokenizer)` saved by `save_tokenizers` (kwargs go to both loads)."""
    encoder_tokenizer = AutoTokenizer.from_pretrained(
        pretrained_model_name_or_path, subfolder=ENCODER_TOKENIZER_SUBFOLDER, **kwargs
    )
    decoder_tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs)
    return encoder_tokenizer, decoder_tokenizer


__all__ = ["ENCODER_TOKENIZER_SUBFOLDER", "load_tokenizers", "save_tokenizers"]
