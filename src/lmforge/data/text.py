"""Raw text datasets: the embedded corpus, local text/JSON files or a Hub dataset id, as a train/validation split.

Every loader returns a `datasets.DatasetDict` with `train` and `validation` splits and one `text` column.
"""

import logging
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from ..errors import LmforgeError
from .corpus import CORPUS_NAME, load_plays

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".text", ".md", ".tokens", ".raw"}
JSON_SUFFIXES = {".json", ".jsonl"}
# Documents of a single big text file are cut into pieces of this many lines, so `map(num_proc=...)` can share them.
LINES_PER_DOCUMENT = 200


def read_text_file(path: str | Path) -> str:
    """Read a UTF-8 text file, turning every way it can fail into one sentence that says what to fix."""
    path = Path(path)
    if not path.exists():
        raise LmforgeError(f"input file not found: {path}")
    if path.is_dir():
        raise LmforgeError(f"expected a text file but got a folder: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise LmforgeError(
            f"{path} is not UTF-8 text (byte {err.start} cannot be decoded); convert it to UTF-8 first"
        ) from None
    if not text.strip():
        raise LmforgeError(f"{path} is empty; give a file with some text in it")
    return text


def split_text(text: str, validation_fraction: float) -> tuple[str, str]:
    """First (1 - fraction) of the characters for training, the rest for validation, cut at a line break."""
    if not 0.0 < validation_fraction < 1.0:
        raise LmforgeError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    cut = int(len(text) * (1.0 - validation_fraction))
    newline = text.rfind("\n", 0, cut)
    if newline > len(text) // 2:
        cut = newline + 1
    return text[:cut], text[cut:]


def _documents(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    return ["".join(lines[i : i + LINES_PER_DOCUMENT]) for i in range(0, len(lines), LINES_PER_DOCUMENT)]


def _check_not_empty(dataset: DatasetDict, source: str) -> DatasetDict:
    for split in ("train", "validation"):
        if split not in dataset or dataset[split].num_rows == 0:
            raise LmforgeError(f"{source} gives an empty {split} split; give more text or a smaller validation part")
    return dataset


def load_embedded_corpus(validation_split_percentage: int = 10, max_documents: int | None = None) -> DatasetDict:
    """The Shakespeare plays; whole plays are held out for validation (every k-th play), so no scene leaks."""
    plays = load_plays(max_documents)
    every = max(2, round(100 / max(validation_split_percentage, 1)))
    train = [text for i, (_, text) in enumerate(plays) if i % every != every - 1]
    validation = [text for i, (_, text) in enumerate(plays) if i % every == every - 1]
    if not validation:  # very few plays: fall back to a character split of the last one
        train[-1], held_out = split_text(train[-1], validation_split_percentage / 100)
        validation = [held_out]
    dataset = DatasetDict(
        {"train": Dataset.from_dict({"text": train}), "validation": Dataset.from_dict({"text": validation})}
    )
    return _check_not_empty(dataset, f"the embedded corpus '{CORPUS_NAME}'")


def load_text_files(
    train_file: str,
    validation_file: str | None = None,
    validation_split_percentage: int = 10,
    text_column: str = "text",
) -> DatasetDict:
    """Local files: plain text (split by characters, first 90% / last 10% by default) or JSON lines with a text column."""
    suffix = Path(train_file).suffix.lower()
    if suffix in JSON_SUFFIXES:
        files = {"train": train_file} | ({"validation": validation_file} if validation_file else {})
        for f in files.values():
            if not Path(f).is_file():
                raise LmforgeError(f"input file not found: {f}")
        try:
            loaded = datasets.load_dataset("json", data_files=files)
        except Exception as err:  # datasets raises many types for malformed JSON
            raise LmforgeError(f"could not read JSON from {train_file}: {str(err).splitlines()[0]}") from None
        if text_column not in loaded["train"].column_names:
            raise LmforgeError(
                f"{train_file} has no '{text_column}' field (it has {loaded['train'].column_names}); "
                "set text_column to the field that holds the text"
            )
        if "validation" not in loaded:
            loaded = loaded["train"].train_test_split(test_size=validation_split_percentage / 100, seed=42)
            loaded = DatasetDict({"train": loaded["train"], "validation": loaded["test"]})
        result = DatasetDict({k: v.select_columns([text_column]) for k, v in loaded.items()})
        if text_column != "text":
            result = result.rename_column(text_column, "text")
        return _check_not_empty(result, train_file)

    if suffix and suffix not in TEXT_SUFFIXES:
        logger.warning("Reading %s as plain UTF-8 text (suffix %s).", train_file, suffix)
    text = read_text_file(train_file)
    if validation_file:
        train_text, validation_text = text, read_text_file(validation_file)
    else:
        train_text, validation_text = split_text(text, validation_split_percentage / 100)
    dataset = DatasetDict(
        {
            "train": Dataset.from_dict({"text": _documents(train_text)}),
            "validation": Dataset.from_dict({"text": _documents(validation_text)}),
        }
    )
    return _check_not_empty(dataset, train_file)


def load_dataset_with_train_split(
    dataset_name: str, dataset_config_name: str | None, local_alternative: str
) -> DatasetDict:
    """`datasets.load_dataset` by Hub id or local folder; a failed load or a missing train split is one sentence
    that names `local_alternative` (what to pass with train_file instead)."""
    try:
        loaded = datasets.load_dataset(dataset_name, dataset_config_name)
    except Exception as err:
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise LmforgeError(
            f"could not load dataset '{dataset_name}' (no network, unknown id, or the Hub is unreachable: "
            f"{first_line}); pass {local_alternative} with train_file instead"
        ) from None
    if not isinstance(loaded, DatasetDict) or "train" not in loaded:
        raise LmforgeError(f"dataset '{dataset_name}' has no 'train' split")
    return loaded


def load_hub_dataset(
    dataset_name: str,
    dataset_config_name: str | None = None,
    validation_split_percentage: int = 10,
    text_column: str = "text",
) -> DatasetDict:
    """A dataset by Hub id (or a local dataset folder); a failed download becomes one clear sentence."""
    loaded = load_dataset_with_train_split(dataset_name, dataset_config_name, "a local file")
    if text_column not in loaded["train"].column_names:
        raise LmforgeError(f"dataset '{dataset_name}' has no '{text_column}' column; set text_column")
    if "validation" not in loaded:
        split = loaded["train"].train_test_split(test_size=validation_split_percentage / 100, seed=42)
        loaded = DatasetDict({"train": split["train"], "validation": split["test"]})
    result = DatasetDict({k: loaded[k].select_columns([text_column]) for k in ("train", "validation")})
    if text_column != "text":
        result = result.rename_column(text_column, "text")
    return _check_not_empty(result, dataset_name)


__all__ = [
    "load_dataset_with_train_split",
    "load_embedded_corpus",
    "load_hub_dataset",
    "load_text_files",
    "read_text_file",
    "split_text",
]
