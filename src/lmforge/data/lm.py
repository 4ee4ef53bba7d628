"""Causal language-modelling datasets: tokenize, then group into blocks of `block_size` tokens."""

from collections.abc import Iterator
from itertools import chain
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from ..errors import LmforgeError


def tokenize_and_group(
    raw: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
    labels: bool = False,
) -> DatasetDict:
    """Tokenize the `text` column (an end-of-sequence token after each document) and cut the stream into blocks.

    The result has a column `input_ids` of exactly `block_size` tokens per row; the tail that does not fill a block
    is dropped. `DataCollatorForLanguageModeling(mlm=False)` turns rows into (input_ids, labels) batches. With
    `labels=True` there is also a `labels` column, a copy of `input_ids` (the model shifts it), as in transformers'
    `run_clm` example: every row has the same length, so `default_data_collator` only has to stack them, with no
    padding and no attention mask.
    """
    if block_size <= 0:
        raise LmforgeError(f"block_size must be positive, got {block_size}")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        # Documents are longer than the context on purpose: they are cut into blocks below.
        encoded = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
        return {"input_ids": [ids + eos for ids in encoded]}

    def group(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        stream = list(chain.from_iterable(batch["input_ids"]))
        usable = (len(stream) // block_size) * block_size
        blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": blocks} if labels else {"input_ids": blocks}

    tokenized = raw.map(
        tokenize,
        batched=True,
        num_proc=num_proc,
        remove_columns=raw["train"].column_names,
        load_from_cache_file=load_from_cache_file,
        desc="Tokenizing",
    )
    grouped = tokenized.map(
        group,
        batched=True,
        batch_size=1000,
        num_proc=num_proc,
        load_from_cache_file=load_from_cache_file,
        desc="Grouping",
    )
    for split, dataset in grouped.items():
        if dataset.num_rows == 0:
            total = sum(len(ids) for ids in tokenized[split]["input_ids"])
            raise LmforgeError(
                f"the {split} split has {total} tokens, fewer than one block of {block_size}; "
                "give more text or a smaller block_size"
            )
    return grouped


class TokenWindows(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Every window of `block_size` tokens of one token stream, one row per start: nanoGPT's sampling at random
    offsets, once the Trainer's random sampler draws the rows.

    Row `i` is tokens `i .. i + block_size - 1` as `input_ids` and `labels` (the model shifts them), so a batch needs
    only stacking (`default_data_collator`). The stream is held once, as one tensor; rows are views of it.
    """

    def __init__(self, stream: torch.Tensor, block_size: int) -> None:
        if stream.dim() != 1 or stream.numel() < block_size:
            raise LmforgeError(
                f"need a 1-D stream of at least block_size={block_size} tokens, got {tuple(stream.shape)}"
            )
        self.stream = stream
        self.block_size = block_size

    @classmethod
    def from_blocks(cls, blocks: Dataset) -> "TokenWindows":
        """The windows of the stream that consecutive blocks (`tokenize_and_group`'s rows) were cut from."""
        ids = blocks.with_format("torch", columns=["input_ids"])[: blocks.num_rows]["input_ids"]  # (N, block_size)
        return cls(ids.reshape(-1), ids.shape[1])

    def __len__(self) -> int:
        return self.stream.numel() - self.block_size + 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window = self.stream[index : index + self.block_size]  # (block_size,)
        return {"input_ids": window, "labels": window}


def iter_texts(raw: DatasetDict, split: str = "train", batch_size: int = 1000) -> Iterator[list[str]]:
    """Batches of raw texts, for training a tokenizer without holding the corpus twice in memory."""
    for batch in raw[split].iter(batch_size=batch_size):
        texts: Any = batch["text"]
        yield texts


__all__ = ["TokenWindows", "iter_texts", "tokenize_and_group"]
