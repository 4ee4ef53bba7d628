"""CharTransformer tokenizer: one token per character, with a vocabulary built from the training text."""

import json
import os
import warnings
from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}
SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}


class CharTransformerTokenizer(PreTrainedTokenizer):
    """A character-level tokenizer: every character of the text is one token, unknown characters become `<unk>`.

    The vocabulary is the 4 special tokens (pad 0, unk 1, bos 2, eos 3) followed by the sorted characters of the
    training text; it is saved as `vocab.json`. Encoding adds no special tokens, so `decode(encode(text)) == text`
    for any text made of known characters. Build a new one with [`CharTransformerTokenizer.from_text`]; load a saved one with
    `AutoTokenizer.from_pretrained(path)`.

    Args:
        vocab_file (`str`, *optional*):
            Path to a `vocab.json` mapping each token to its id (how `from_pretrained` builds the tokenizer).
        vocab (`dict[str, int]`, *optional*):
            The same mapping given directly; pass exactly one of `vocab_file` and `vocab`.
        pad_token / unk_token / bos_token / eos_token (`str`, defaults to `"<pad>"` / `"<unk>"` / `"<s>"` / `"</s>"`):
            The special tokens; they must be in the vocabulary.

    Example:

    ```python
    >>> tok = CharTransformerTokenizer.from_text("To be, or not to be: that is the question.")
    >>> tok.decode(tok("to be")["input_ids"])
    'to be'
    >>> tok.convert_ids_to_tokens(tok("Z")["input_ids"])
    ['<unk>']
    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        vocab: dict[str, int] | None = None,
        pad_token: str = SPECIAL_TOKENS["pad_token"],
        unk_token: str = SPECIAL_TOKENS["unk_token"],
        bos_token: str = SPECIAL_TOKENS["bos_token"],
        eos_token: str = SPECIAL_TOKENS["eos_token"],
        **kwargs: Any,
    ) -> None:
        if (vocab_file is None) == (vocab is None):
            raise ValueError("Pass exactly one of vocab_file or vocab to CharTransformerTokenizer.")
        if vocab is None:
            with open(vocab_file, encoding="utf-8") as handle:  # type: ignore[arg-type]
                vocab = json.load(handle)
        self.encoder: dict[str, int] = dict(vocab)
        self.decoder: dict[int, str] = {index: token for token, index in self.encoder.items()}
        missing = [str(token) for token in (pad_token, unk_token, bos_token, eos_token) if str(token) not in vocab]
        if missing:
            raise ValueError(f"The special tokens {missing} are not in the vocabulary; build it with from_text.")
        # Characters are joined back as they are: no spaces between tokens, no clean-up of spaces before punctuation.
        kwargs.setdefault("special_tokens_pattern", "none")
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(pad_token=pad_token, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, **kwargs)

    @classmethod
    def from_text(cls, text: str | Iterable[str], **kwargs: Any) -> "CharTransformerTokenizer":
        """Build the vocabulary from the characters of `text` (one string or an iterable of strings)."""
        specials = {key: kwargs.pop(key, default) for key, default in SPECIAL_TOKENS.items()}
        characters = sorted(set("".join(text)))
        vocab = {str(token): index for index, token in enumerate(specials.values())}
        for character in characters:
            vocab.setdefault(character, len(vocab))
        return cls(vocab=vocab, **specials, **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self.added_tokens_encoder}

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return list(text)

    def _convert_token_to_id(self, token: str) -> int:
        # Called once per character: look the unknown id up only for characters that are not in the vocabulary
        # (reading `self.unk_token` goes through the tokenizer's slow attribute lookup).
        token_id = self.encoder.get(token)
        return token_id if token_id is not None else self.encoder[str(self.unk_token)]

    def _convert_id_to_token(self, index: int) -> str:
        return self.decoder.get(index, str(self.unk_token))

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write `vocab.json` (token -> id, in id order) into `save_directory`."""
        if not os.path.isdir(save_directory):
            raise ValueError(f"Vocabulary path ({save_directory}) should be a directory.")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_file = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["vocab_file"])
        ordered = dict(sorted(self.encoder.items(), key=lambda item: item[1]))
        with open(vocab_file, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(ordered, indent=2, ensure_ascii=False) + "\n")
        return (vocab_file,)


class CharTokenizer(CharTransformerTokenizer):
    """Deprecated name of [`CharTransformerTokenizer`] (lmforge 0.1); it goes in the next release."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "CharTokenizer is deprecated: use CharTransformerTokenizer (the same class).", FutureWarning, stacklevel=2
        )
        super().__init__(*args, **kwargs)


__all__ = ["SPECIAL_TOKENS", "CharTokenizer", "CharTransformerTokenizer"]
