"""Datasets for lmforge: the embedded corpus, local files and Hub ids, tokenized and grouped for training."""

from .corpus import CORPUS_NAME, load_plays, markdown_play_to_text
from .lm import iter_texts, tokenize_and_group
from .text import load_embedded_corpus, load_hub_dataset, load_text_files, read_text_file, split_text

__all__ = [
    "CORPUS_NAME",
    "iter_texts",
    "load_embedded_corpus",
    "load_hub_dataset",
    "load_plays",
    "load_text_files",
    "markdown_play_to_text",
    "read_text_file",
    "split_text",
    "tokenize_and_group",
]
