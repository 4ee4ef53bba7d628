"""lmforge.data: the embedded corpus, local files, Hub ids, splits, blocks, and the errors for bad input."""

import pytest
from datasets import Dataset, DatasetDict

from lmforge import LmforgeError
from lmforge.data import (
    load_embedded_corpus,
    load_hub_dataset,
    load_plays,
    load_text_files,
    markdown_play_to_text,
    split_text,
    tokenize_and_group,
)


def test_embedded_corpus_is_the_plays_as_plain_text():
    plays = load_plays()
    assert len(plays) >= 37
    names = [name for name, _ in plays]
    assert "hamlet" in names and "macbeth" in names
    hamlet = dict(plays)["hamlet"]
    assert "HAMLET:\nTo be, or not to be" in hamlet
    assert "**" not in hamlet and "  \n" not in hamlet


def test_markdown_conversion():
    text = markdown_play_to_text("# Play\n\n## ACT I\n\n_Enter KING_\n\n**KING**  \nWell met.  \n")
    assert text == "Play\n\nACT I\n\n[Enter KING]\n\nKING:\nWell met.\n"


def test_embedded_corpus_holds_out_whole_plays():
    corpus = load_embedded_corpus(validation_split_percentage=10)
    train, validation = set(corpus["train"]["text"]), set(corpus["validation"]["text"])
    assert len(validation) >= 3 and not train & validation
    assert sum(map(len, validation)) > 0.05 * sum(map(len, train))


def test_text_file_first_90_percent_train_last_10_validation(tmp_path):
    path = tmp_path / "corpus.txt"
    lines = [f"line {i:04d}\n" for i in range(1000)]
    path.write_text("".join(lines), encoding="utf-8")
    data = load_text_files(str(path))
    train, validation = "".join(data["train"]["text"]), "".join(data["validation"]["text"])
    assert train + validation == "".join(lines)
    assert train.endswith("\n") and 0.08 < len(validation) / len(train + validation) < 0.12
    assert validation.startswith("line 09")


def test_split_text_rejects_bad_fraction():
    with pytest.raises(LmforgeError, match="between 0 and 1"):
        split_text("abc", 1.5)


def test_json_lines_with_a_text_column(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(f'{{"body": "document number {i}"}}\n' for i in range(50)), encoding="utf-8")
    data = load_text_files(str(path), text_column="body")
    assert data["train"].column_names == ["text"]
    assert data["train"].num_rows + data["validation"].num_rows == 50
    with pytest.raises(LmforgeError, match="no 'text' field"):
        load_text_files(str(path))


@pytest.mark.parametrize(
    "content, message",
    [(None, "not found"), (b"", "is empty"), (b"   \n\n", "is empty"), (b"caf\xe9 au lait\n", "not UTF-8")],
)
def test_bad_text_files_give_one_sentence(tmp_path, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LmforgeError, match=message) as info:
        load_text_files(str(path))
    assert "\n" not in str(info.value)


def test_unreachable_hub_dataset_is_a_clear_error():
    with pytest.raises(LmforgeError, match="could not load dataset 'no-such-user/no-such-dataset'"):
        load_hub_dataset("no-such-user/no-such-dataset")


def test_local_dataset_folder_by_name(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "train.txt").write_text("hello there\n" * 30, encoding="utf-8")
    data = load_hub_dataset(str(tmp_path / "plain"))
    assert data["train"].num_rows > 0 and data["validation"].num_rows > 0


def test_tokenize_and_group_makes_full_blocks(aksis_tokenizer, tiny_text_file):
    raw = load_text_files(str(tiny_text_file))
    blocks = tokenize_and_group(raw, aksis_tokenizer, block_size=16)
    assert blocks["train"].column_names == ["input_ids"]
    assert all(len(row) == 16 for row in blocks["train"]["input_ids"])
    ids = aksis_tokenizer(raw["train"]["text"][0], add_special_tokens=False)["input_ids"]
    assert blocks["train"][0]["input_ids"] == ids[:16]
    assert any(aksis_tokenizer.eos_token_id in row for row in blocks["train"]["input_ids"])


def test_too_little_text_for_one_block(aksis_tokenizer):
    raw = DatasetDict(
        {"train": Dataset.from_dict({"text": ["tiny"]}), "validation": Dataset.from_dict({"text": ["x"]})}
    )
    with pytest.raises(LmforgeError, match="fewer than one block"):
        tokenize_and_group(raw, aksis_tokenizer, block_size=64)
