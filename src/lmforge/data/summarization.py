"""Dialogue summarization data (SAMSum, DialogSum) as source -> target pairs, and the LEAD-3 baseline.

Sources, in this order: a local JSON / JSON lines file (`train_file`, e.g. DialogSum's `dialogsum.dev.jsonl`, one
dialogue per line with `dialogue` and `summary` fields), a Hub id or local dataset folder (`dataset_name`), or else
the Hub id `knkarthick/samsum` (SAMSum: messenger-like dialogues with `dialogue` and `summary` columns). Both
datasets write one utterance per line (`Speaker: text`); the columns are set with `source_column` / `target_column`.

Every loader returns a `DatasetDict` with `train` and `validation` splits and the columns `id`, `source` (the
dialogue, the model input) and `target` (the reference summary). Without a validation file or split,
`validation_split_percentage` percent of the rows, drawn with a fixed seed, are held out.
"""

import logging
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict

from ..errors import LmforgeError
from .text import load_dataset_with_train_split

logger = logging.getLogger(__name__)

DEFAULT_SUMMARIZATION_DATASET = "knkarthick/samsum"
DEFAULT_SOURCE_COLUMN = "dialogue"
DEFAULT_TARGET_COLUMN = "summary"
LEAD_UTTERANCES = 3


def lead_3(dialogue: str) -> str:
    """The LEAD-3 summary of a dialogue: its first three utterances (non-empty lines), one per line.

    Each utterance keeps its speaker tag (`#Person1#: ...`, `Amanda: ...`); with one utterance per line, ROUGE-Lsum
    treats each as a sentence.
    """
    utterances = [line.strip() for line in dialogue.splitlines() if line.strip()]
    return "\n".join(utterances[:LEAD_UTTERANCES])


def _pairs(dataset: Dataset, source_column: str, target_column: str, origin: str) -> Dataset:
    """`id`, `source` and `target` columns; rows with an empty dialogue or summary are left out (with a warning)."""
    missing = [column for column in (source_column, target_column) if column not in dataset.column_names]
    if missing:
        raise LmforgeError(
            f"{origin} has no {missing} column (it has {dataset.column_names}); set source_column and target_column"
        )
    id_column = next((column for column in ("id", "fname") if column in dataset.column_names), None)
    rows: dict[str, list[str]] = {"id": [], "source": [], "target": []}
    skipped = 0
    for index, record in enumerate(dataset):
        source = str(record[source_column] or "").replace("\r\n", "\n").strip()
        target = str(record[target_column] or "").strip()
        if not source or not target:
            skipped += 1
            continue
        rows["id"].append(str(record[id_column]) if id_column else str(index))
        rows["source"].append(source)
        rows["target"].append(target)
    if skipped:
        logger.warning(
            "%s: %d rows with an empty %s or %s were left out", origin, skipped, source_column, target_column
        )
    if not rows["id"]:
        raise LmforgeError(f"{origin} holds no dialogue with a summary")
    return Dataset.from_dict(rows)


def _read_json(files: dict[str, str]) -> DatasetDict:
    for path in files.values():
        if not Path(path).is_file():
            raise LmforgeError(f"input file not found: {path}")
    try:
        loaded: Any = datasets.load_dataset("json", data_files=files)
    except Exception as err:  # datasets raises many types for malformed JSON
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise LmforgeError(f"could not read JSON lines from {files['train']}: {first_line}") from None
    return loaded  # type: ignore[no-any-return]


def _read_hub(dataset_name: str, dataset_config_name: str | None) -> DatasetDict:
    return load_dataset_with_train_split(dataset_name, dataset_config_name, "a local JSON lines file (e.g. DialogSum)")


def load_summarization(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split_percentage: int = 10,
    source_column: str | None = None,
    target_column: str | None = None,
    seed: int = 42,
) -> DatasetDict:
    """Dialogue -> summary pairs as train/validation (see the module docstring for the sources and columns)."""
    if train_file and dataset_name:
        raise LmforgeError("give dataset_name or train_file for the summarization data, not both")
    if validation_file and not train_file:
        raise LmforgeError("validation_file needs train_file; a Hub dataset brings its own validation split")
    source_column = source_column or DEFAULT_SOURCE_COLUMN
    target_column = target_column or DEFAULT_TARGET_COLUMN
    if train_file:
        origin = train_file
        loaded = _read_json({"train": train_file} | ({"validation": validation_file} if validation_file else {}))
    else:
        origin = dataset_name or DEFAULT_SUMMARIZATION_DATASET
        loaded = _read_hub(origin, dataset_config_name)
    train = _pairs(loaded["train"], source_column, target_column, f"{origin} [train]")
    if "validation" in loaded:
        validation = _pairs(loaded["validation"], source_column, target_column, f"{origin} [validation]")
    else:
        if not 0 < validation_split_percentage < 100:
            raise LmforgeError(
                f"validation_split_percentage must be between 1 and 99, got {validation_split_percentage}"
            )
        if train.num_rows < 2:
            raise LmforgeError(f"{origin} has {train.num_rows} dialogue; a validation split needs at least 2")
        split = train.train_test_split(test_size=validation_split_percentage / 100, seed=seed)
        train, validation = split["train"], split["test"]
    logger.info(
        "Summarization data from %s: %d train and %d validation dialogues (%s -> %s)",
        origin,
        train.num_rows,
        validation.num_rows,
        source_column,
        target_column,
    )
    return DatasetDict({"train": train, "validation": validation})


__all__ = [
    "DEFAULT_SOURCE_COLUMN",
    "DEFAULT_SUMMARIZATION_DATASET",
    "DEFAULT_TARGET_COLUMN",
    "LEAD_UTTERANCES",
    "lead_3",
    "load_summarization",
]
