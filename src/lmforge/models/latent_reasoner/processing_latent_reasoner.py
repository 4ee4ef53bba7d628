"""LatentReasoner processor: the two tokenizers of a model that reads with one vocabulary and writes with another.

A LatentReasoner reads its input with its encoder's tokenizer and writes with its decoder's. The processor holds both,
the transformers way for a model with several tokenizers (as InstructBLIP's Q-Former tokenizer): the decoder
tokenizer is the primary `tokenizer`, saved at the top of the folder (so `AutoTokenizer.from_pretrained(path)` is the
one that decodes the model's output), the encoder tokenizer is `encoder_tokenizer`, saved in the `encoder_tokenizer/`
subfolder. `AutoProcessor.from_pretrained(path)` (with `trust_remote_code=True` where lmforge is absent) loads both.

A processor may also hold a `decoder_prompt`: text with one `{text}` field that the decoder reads after its start
token, before it writes (for instance a chat turn asking for a summary of `{text}`). The model then reads the input
twice: as the idea vector, through the encoder, and word for word in the decoder prompt. It is saved in
`processor_config.json`, so the saved model is prompted as it was trained.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BatchEncoding, ProcessorMixin
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

ENCODER_TOKENIZER_SUBFOLDER = "encoder_tokenizer"
DECODER_PROMPT_FIELD = "{text}"


def check_decoder_prompt(decoder_prompt: str) -> str:
    """`decoder_prompt` itself when it holds the `{text}` field exactly once; otherwise a ValueError naming the fix."""
    if decoder_prompt.count(DECODER_PROMPT_FIELD) != 1:
        raise ValueError(
            f"decoder_prompt must hold {DECODER_PROMPT_FIELD} once (where the text goes), got {decoder_prompt!r}"
        )
    return decoder_prompt


class LatentReasonerProcessor(ProcessorMixin):
    """The decoder tokenizer (`tokenizer`: writes the output) and the encoder tokenizer (`encoder_tokenizer`: reads
    the input) of a LatentReasoner.

    Calling the processor encodes text for the encoder, always with its special tokens and truncated to its
    `model_max_length`, as in training (a caller's `add_special_tokens` is ignored). With a `decoder_prompt`, it
    also returns each text's decoder prompt (`decoder_prompt_ids`) as `decoder_input_ids` and
    `decoder_attention_mask`, padded on the left. `decode`, `batch_decode` and the special token ids are the
    decoder's, which is what `generate()` writes.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            The decoder's tokenizer.
        encoder_tokenizer (`PreTrainedTokenizerBase`):
            The encoder's tokenizer.
        decoder_prompt (`str`, *optional*):
            What the decoder reads after its start token, with `{text}` where the input text goes (its first
            `encoder_tokenizer.model_max_length` decoder tokens). Special tokens written in it are read as such.
    """

    tokenizer: PreTrainedTokenizerBase
    encoder_tokenizer: PreTrainedTokenizerBase

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        encoder_tokenizer: PreTrainedTokenizerBase,
        decoder_prompt: str | None = None,
        **kwargs: Any,
    ):
        self.decoder_prompt = check_decoder_prompt(decoder_prompt) if decoder_prompt is not None else None
        super().__init__(tokenizer, encoder_tokenizer, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """`ProcessorMixin.from_pretrained`, refusing a local folder without its `encoder_tokenizer/`: transformers
        would fall back to the decoder's tokenizer there, and the encoder would read ids of another vocabulary."""
        folder = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
        if folder.is_dir() and not (folder / ENCODER_TOKENIZER_SUBFOLDER).is_dir():
            raise OSError(
                f"{folder} has no {ENCODER_TOKENIZER_SUBFOLDER}/ folder (the encoder's tokenizer); copy it from the "
                "training run's output_dir"
            )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    @property
    def decoder_tokenizer(self) -> PreTrainedTokenizerBase:
        """The decoder's tokenizer (the primary `tokenizer`)."""
        return self.tokenizer  # type: ignore[no-any-return]

    def __call__(self, text: str | Sequence[str] | None = None, **kwargs: Any) -> BatchEncoding:  # type: ignore[override]
        """Encode `text` for the encoder (special tokens always added, truncated to the encoder's length), and for
        the decoder prompt when there is one."""
        kwargs.pop("add_special_tokens", None)
        kwargs.setdefault("truncation", True)
        kwargs.setdefault("return_token_type_ids", False)
        encoded: BatchEncoding = self.encoder_tokenizer(text, **kwargs)
        if self.decoder_prompt is None or text is None:
            return encoded
        texts = [text] if isinstance(text, str) else list(text)
        prompts = self.decoder_prompt_ids(texts)
        if kwargs.get("return_tensors") == "pt":
            width = max(len(ids) for ids in prompts)
            pad = self.pad_token_id if self.pad_token_id is not None else 0
            encoded["decoder_input_ids"] = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts])
            encoded["decoder_attention_mask"] = torch.tensor(
                [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts]
            )
        else:
            encoded["decoder_input_ids"] = prompts[0] if isinstance(text, str) else prompts
            masks = [[1] * len(ids) for ids in prompts]
            encoded["decoder_attention_mask"] = masks[0] if isinstance(text, str) else masks
        return encoded

    def decoder_prompt_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The decoder prompt of each text, in decoder tokens (without the start token): `decoder_prompt` with
        `{text}` replaced by the text's first `encoder_tokenizer.model_max_length` decoder tokens."""
        if self.decoder_prompt is None:
            raise ValueError("this processor has no decoder_prompt")
        before, after = self.decoder_prompt.split(DECODER_PROMPT_FIELD)
        limit = int(self.encoder_tokenizer.model_max_length)
        head = self.tokenizer(before, add_special_tokens=False)["input_ids"] if before else []
        tail = self.tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
        bodies = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [[*head, *body[:limit], *tail] for body in bodies]

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


__all__ = ["DECODER_PROMPT_FIELD", "ENCODER_TOKENIZER_SUBFOLDER", "LatentReasonerProcessor", "check_decoder_prompt"]
