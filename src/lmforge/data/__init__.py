"""Datasets for lmforge: the embedded corpus, local files and Hub ids, tokenized and grouped for training."""

from .corpus import CORPUS_NAME, load_plays, markdown_play_to_text
from .lm import TokenWindows, iter_texts, tokenize_and_group
from .squad import load_squad, read_squad_file, split_by_article
from .summarization import lead_3, load_summarization
from .text import load_embedded_corpus, load_hub_dataset, load_text_files, read_text_file, split_text

__all__ = [
    "CORPUS_NAME",
    "TokenWindows",
    "iter_texts",
    "lead_3",
    "load_embedded_corpus",
    "load_hub_dataset",
    "load_plays",
    "load_squad",
    "load_summarization",
    "load_text_files",
    "markdown_play_to_text",
    "read_squad_file",
    "read_text_file",
    "split_by_article",
    "split_text",
    "tokenize_and_group",
]
