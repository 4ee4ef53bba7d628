"""SQuAD v1.1 as question -> answer pairs, with a validation split made of whole articles.

Sources, in this order: a local file (`train_file`: the official SQuAD JSON `{"data": [{"title", "paragraphs"}]}`,
or JSON lines with one question per line and the fields `title`, `context`, `question`, `answers`), a Hub id or local
dataset folder (`dataset_name`, with the Hub `squad` columns), or else the Hub id `squad`.

Every loader returns a `DatasetDict` with `train` and `validation` splits and the columns `id`, `title`, `source`
(the model input), `target` (the first gold answer, what the model learns to write) and `answers` (every gold
answer, what a prediction is scored against). When there is no validation file or split, whole articles (titles)
are held out, never single questions, so no paragraph is seen in both splits.
"""

import json
import logging
import math
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from ..errors import LmforgeError
from .text import load_dataset_with_train_split

logger = logging.getLogger(__name__)

DEFAULT_SQUAD_DATASET = "squad"
QA_INPUTS = ("question", "question_and_sentence")
COLUMNS = ("id", "title", "source", "target", "answers")
# A sentence ends at . ! or ? (maybe followed by closing quotes or brackets) and white space.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def answer_sentence(context: str, answer_start: int, answer: str) -> str:
    """The sentence of `context` that holds the answer starting at character `answer_start`.

    Sentences are cut after `.`, `!` or `?` followed by white space; when that cut falls inside the answer (an
    abbreviation such as "U.S. Army"), the sentences it spans are joined, so the answer is always in the result.
    An offset that does not point at the answer is replaced by the answer's first occurrence in the context; an
    answer that is not in the context at all gives the empty string.
    """
    if context[answer_start : answer_start + len(answer)] != answer:
        answer_start = context.find(answer)
        if answer_start < 0:
            return ""
    answer_end = answer_start + len(answer)
    starts = [0] + [match.end() for match in SENTENCE_END.finditer(context)]
    start = max(s for s in starts if s <= answer_start)
    end = min((s for s in starts if s >= answer_end), default=len(context))
    return context[start:end].strip()


def _source(question: str, context: str, answer_start: int, answer: str, qa_input: str) -> str:
    question = question.strip()
    if qa_input == "question":
        return question
    sentence = answer_sentence(context, answer_start, answer)
    return f"{question} {sentence}" if sentence else question


def _row(record: dict[str, Any], qa_input: str) -> dict[str, Any] | None:
    """One question record (`question`, `context`, `title`, `answers` as a list of {text, answer_start} or as the
    Hub's {text: [...], answer_start: [...]}) -> a pair; None when it has no answer."""
    answers = record.get("answers") or []
    if isinstance(answers, dict):  # the Hub layout
        answers = [
            {"text": text, "answer_start": start}
            for text, start in zip(answers.get("text", []), answers.get("answer_start", []), strict=False)
        ]
    texts = [str(a["text"]).strip() for a in answers if str(a.get("text", "")).strip()]
    if not texts:
        return None
    first = next(a for a in answers if str(a.get("text", "")).strip())
    context = str(record.get("context", ""))
    source = _source(
        str(record["question"]), context, int(first.get("answer_start", -1)), str(first["text"]), qa_input
    )
    return {
        "id": str(record.get("id", "")),
        "title": str(record.get("title", "")),
        "source": source,
        "target": texts[0],
        "answers": texts,
    }


def _rows(records: Iterable[dict[str, Any]], qa_input: str, origin: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    skipped = 0
    for record in records:
        if "question" not in record:
            raise LmforgeError(f"{origin}: a record has no 'question' field (it has {sorted(record)})")
        row = _row(record, qa_input)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    if skipped:
        logger.warning("%s: %d questions without an answer were left out", origin, skipped)
    if not rows:
        raise LmforgeError(f"{origin} holds no question with an answer")
    return rows


def _squad_json_records(document: Any, origin: str) -> Iterable[dict[str, Any]]:
    """The questions of an official SQuAD JSON document, each with its article title and paragraph."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise LmforgeError(
            f"{origin} is not SQuAD JSON: expected {{'data': [{{'title', 'paragraphs'}}, ...]}} at the top level"
        )
    for article in document["data"]:
        title = article.get("title", "")
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                yield {**qa, "title": title, "context": paragraph.get("context", "")}


def read_squad_file(path: str | Path, qa_input: str = "question") -> list[dict[str, Any]]:
    """The question -> answer pairs of a local SQuAD file: `.json` (official format) or `.jsonl` (one question per
    line with `title`, `context`, `question`, `answers`), in file order."""
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"SQuAD file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise LmforgeError(f"{path} is not UTF-8 (byte {err.start}); give the SQuAD JSON file as UTF-8") from None
    try:
        if path.suffix.lower() == ".jsonl":
            records: Iterable[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = _squad_json_records(json.loads(text), str(path))
        return _rows(records, qa_input, str(path))
    except json.JSONDecodeError as err:
        raise LmforgeError(f"{path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise LmforgeError(f"{path} is not in the SQuAD layout ({type(err).__name__}: {err})") from None


def split_by_article(
    rows: list[dict[str, Any]], validation_split_percentage: int, seed: int = 42
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out `validation_split_percentage` percent of the articles (titles, drawn with `seed`), at least one.

    Both splits keep the file order of their questions; an article is entirely in one of them.
    """
    if not 0 < validation_split_percentage < 100:
        raise LmforgeError(f"validation_split_percentage must be between 1 and 99, got {validation_split_percentage}")
    titles = list(dict.fromkeys(row["title"] for row in rows))
    if len(titles) < 2:
        raise LmforgeError(
            f"the SQuAD data has {len(titles)} article(s); a validation split by article needs at least 2 "
            "(or give validation_file)"
        )
    count = min(len(titles) - 1, max(1, math.floor(len(titles) * validation_split_percentage / 100 + 0.5)))
    held_out = set(random.Random(seed).sample(titles, count))
    train = [row for row in rows if row["title"] not in held_out]
    validation = [row for row in rows if row["title"] in held_out]
    return train, validation


def _from_hub(dataset_name: str, dataset_config_name: str | None, qa_input: str) -> dict[str, list[dict[str, Any]]]:
    loaded = load_dataset_with_train_split(dataset_name, dataset_config_name, "a local SQuAD JSON file")
    missing = {"question", "answers"} - set(loaded["train"].column_names)
    if missing:
        raise LmforgeError(f"dataset '{dataset_name}' is not SQuAD-like: it has no {sorted(missing)} column")
    return {split: _rows(loaded[split], qa_input, f"{dataset_name}[{split}]") for split in loaded}


def _only(rows: list[dict[str, Any]], articles: list[str] | None, origin: str) -> list[dict[str, Any]]:
    """The rows of the given article titles (all rows when `articles` is None); an unknown title is an error."""
    if articles is None:
        return rows
    titles = set(articles)
    missing = sorted(titles - {row["title"] for row in rows})
    if missing and len(missing) == len(titles):
        raise LmforgeError(f"{origin} has none of the articles {sorted(titles)}")
    if missing:
        logger.warning("%s has no article titled %s", origin, ", ".join(missing))
    return [row for row in rows if row["title"] in titles]


def load_squad(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_split_percentage: int = 10,
    qa_input: str = "question",
    seed: int = 42,
    articles: list[str] | None = None,
    validation_articles: list[str] | None = None,
) -> DatasetDict:
    """SQuAD question -> answer pairs as train/validation (see the module docstring for sources and columns).

    `qa_input` picks the model input: `question`, or `question_and_sentence` (the question, a space, then the
    sentence of the paragraph that holds the first gold answer, found from its `answer_start`). `articles` keeps only
    the train data's questions of these titles, before the split by article (e.g. two disjoint sets of articles as two
    corpora); a validation file or split is kept whole. `validation_articles` names the held-out articles of the train
    data (instead of drawing `validation_split_percentage` of them).
    """
    if qa_input not in QA_INPUTS:
        raise LmforgeError(f"qa_input must be one of {list(QA_INPUTS)}, got '{qa_input}'")
    if train_file and dataset_name:
        raise LmforgeError("give dataset_name or train_file for the SQuAD data, not both")
    if validation_articles is not None and validation_file:
        raise LmforgeError("give validation_file or validation_articles, not both")
    if train_file:
        rows = read_squad_file(train_file, qa_input)
        held_out = _only(rows, validation_articles, train_file) if validation_articles is not None else None
        train = _only(rows, articles, train_file)
        if validation_file:
            validation = read_squad_file(validation_file, qa_input)
        elif held_out is not None:
            validation = held_out
            train = [row for row in train if row["title"] not in set(validation_articles or [])]
        else:
            train, validation = split_by_article(train, validation_split_percentage, seed)
        origin = train_file
    else:
        if validation_file:
            raise LmforgeError("validation_file needs train_file; a Hub dataset brings its own validation split")
        origin = dataset_name or DEFAULT_SQUAD_DATASET
        splits = _from_hub(origin, dataset_config_name, qa_input)
        train = _only(splits["train"], articles, origin)
        if validation_articles is not None:
            validation = _only(splits["train"], validation_articles, origin)
            train = [row for row in train if row["title"] not in set(validation_articles)]
        elif "validation" in splits:
            validation = splits["validation"]
        else:
            train, validation = split_by_article(train, validation_split_percentage, seed)
    overlap = {row["title"] for row in train} & {row["title"] for row in validation} - {""}
    if overlap:
        logger.warning(
            "%d article(s) are in both the train and the validation data: %s", len(overlap), sorted(overlap)
        )
    logger.info(
        "SQuAD from %s: %d train questions (%d articles), %d validation questions (%d articles), input: %s",
        origin,
        len(train),
        len({row["title"] for row in train}),
        len(validation),
        len({row["title"] for row in validation}),
        qa_input,
    )
    return DatasetDict(
        {
            "train": Dataset.from_list(train),
            "validation": Dataset.from_list(validation),
        }
    )


__all__ = [
    "DEFAULT_SQUAD_DATASET",
    "QA_INPUTS",
    "answer_sentence",
    "load_squad",
    "read_squad_file",
    "split_by_article",
]
