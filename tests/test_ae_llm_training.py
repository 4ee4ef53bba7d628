"""AE-LLM on SQuAD: loading and splitting by article, the three training phases, post-train scores, the CLI."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from lmforge import LmforgeError
from lmforge.cli.main import main as lmforge_main
from lmforge.data import load_squad, read_squad_file
from lmforge.data.squad import answer_sentence, split_by_article
from lmforge.inference import GenerationSettings, TextGenerator
from lmforge.training import parse_recipe, run_training
from lmforge.training.qa import answer_scores, most_frequent_answer

from .conftest import REPO_ROOT

RECIPES = REPO_ROOT / "recipes" / "ae_llm"

# Eight articles of three sentences and four questions: (question, answer, index of the sentence holding it).
# Every article has one question answered "three", so "three" is the most frequent train answer of any split.
ARTICLES: dict[str, tuple[list[str], list[tuple[str, str, int]]]] = {
    "Triangle": (
        ["A triangle has three sides.", "Its angles add up to 180 degrees.", "Euclid wrote about it in Alexandria."],
        [
            ("How many sides does a triangle have?", "three", 0),
            ("What do the angles of a triangle add up to?", "180 degrees", 1),
            ("Who wrote about the triangle?", "Euclid", 2),
            ("Where did Euclid write?", "Alexandria", 2),
        ],
    ),
    "Clover": (
        ["A common clover has three leaves.", "A rare clover has four leaves and brings luck!", "It grows in fields."],
        [
            ("How many leaves does a common clover have?", "three", 0),
            ("What does a rare clover bring?", "luck", 1),
            ("How many leaves does a rare clover have?", "four", 1),
            ("Where does clover grow?", "in fields", 2),
        ],
    ),
    "Tricycle": (
        ["A tricycle has three wheels.", "Children ride tricycles in the park.", "The first one was built in 1680."],
        [
            ("How many wheels does a tricycle have?", "three", 0),
            ("Who rides tricycles?", "Children", 1),
            ("Where do children ride tricycles?", "in the park", 1),
            ("When was the first tricycle built?", "1680", 2),
        ],
    ),
    "Musketeers": (
        ["Dumas wrote The Three Musketeers in 1844.", "They served the king of France.", "Their friend was Athos."],
        [
            ("How many musketeers are in the title?", "Three", 0),
            ("Who wrote The Three Musketeers?", "Dumas", 0),
            ("Whom did the musketeers serve?", "the king of France", 1),
            ("Who was their friend?", "Athos", 2),
        ],
    ),
    "Primary_colors": (
        ["Painters use three primary colors.", "They are red, yellow and blue.", "Mixing red and blue makes purple?"],
        [
            ("How many primary colors do painters use?", "three", 0),
            ("Which are the primary colors?", "red, yellow and blue", 1),
            ("What does mixing red and blue make?", "purple", 2),
            ("Who uses primary colors?", "Painters", 0),
        ],
    ),
    "Rome": (
        ["Rome is the capital of Italy.", "Romulus founded Rome in 753 BC.", "The Tiber makes three bends there."],
        [
            ("What is the capital of Italy?", "Rome", 0),
            ("Who founded Rome?", "Romulus", 1),
            ("When was Rome founded?", "753 BC", 1),
            ("How many bends does the Tiber make in Rome?", "three", 2),
        ],
    ),
    "Water": (
        ["Water is made of hydrogen and oxygen.", "A water molecule has three atoms.", "Water boils at 100 degrees."],
        [
            ("What is water made of?", "hydrogen and oxygen", 0),
            ("How many atoms does a water molecule have?", "three", 1),
            ("At what temperature does water boil?", "100 degrees", 2),
            ("What boils at 100 degrees?", "Water", 2),
        ],
    ),
    "Chess": (
        ["Chess is played on 64 squares.", "Each player starts with sixteen pieces.", "A game ends in three ways."],
        [
            ("How many squares has a chess board?", "64", 0),
            ("How many pieces does each player start with?", "sixteen", 1),
            ("In how many ways can a game end?", "three", 2),
            ("What is played on 64 squares?", "Chess", 0),
        ],
    ),
}
SENTENCE_OF = {q: sentences[i] for sentences, qas in ARTICLES.values() for q, _, i in qas}
TINY_AE_LLM = {
    "embedding_size": 16,
    "hidden_size": 32,
    "latent_size": 32,
    "intermediate_size": 32,
    "max_position_embeddings": 48,
    "memory_slots": 8,
    "hyper_adapter_size": 16,
    "dropout": 0.0,
    "teacher_forcing_ratio": 1.0,
}


def squad_document() -> dict:
    data = []
    for number, (title, (sentences, qas)) in enumerate(ARTICLES.items()):
        context = " ".join(sentences)
        questions = []
        for index, (question, answer, sentence_index) in enumerate(qas):
            start = context.index(answer, context.index(sentences[sentence_index]))
            gold = {"text": answer, "answer_start": start}
            questions.append({"id": f"{number}-{index}", "question": question, "answers": [gold, gold]})
        data.append({"title": title, "paragraphs": [{"context": context, "qas": questions}]})
    return {"version": "1.1", "data": data}


@pytest.fixture(scope="module")
def squad_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("squad") / "tiny-squad.json"
    path.write_text(json.dumps(squad_document()), encoding="utf-8")
    return path


# --- data ---


def test_split_is_by_article_and_sources_hold_the_answer_sentence(squad_file: Path, tmp_path: Path) -> None:
    data = load_squad(train_file=str(squad_file), validation_split_percentage=25, qa_input="question_and_sentence")
    train_titles, validation_titles = set(data["train"]["title"]), set(data["validation"]["title"])
    assert len(validation_titles) == 2 and len(train_titles) == 6
    assert not train_titles & validation_titles
    assert data["train"].num_rows + data["validation"].num_rows == 32
    for split in ("train", "validation"):
        for row in data[split]:
            question = next(q for q in SENTENCE_OF if row["source"].startswith(q))
            assert row["source"] == f"{question} {SENTENCE_OF[question]}"
            assert row["target"] in row["source"] and row["answers"] == [row["target"]] * 2

    questions_only = load_squad(train_file=str(squad_file), validation_split_percentage=25)
    assert set(questions_only["validation"]["title"]) == validation_titles  # the same articles held out
    assert set(questions_only["train"]["source"]) <= set(SENTENCE_OF)

    # The .qa.jsonl layout (one question per line) gives the same pairs.
    jsonl = tmp_path / "tiny.qa.jsonl"
    with jsonl.open("w", encoding="utf-8") as handle:
        for article in squad_document()["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    row = {**qa, "title": article["title"], "context": paragraph["context"]}
                    handle.write(json.dumps(row) + "\n")
    assert read_squad_file(jsonl, "question_and_sentence") == read_squad_file(squad_file, "question_and_sentence")


def test_dataset_folder_in_the_hub_layout(tmp_path: Path) -> None:
    """`dataset_name` as a local folder with the Hub `squad` columns (answers as {text: [...], answer_start: [...]})."""
    for split, (title, (sentences, qas)) in zip(("train", "validation"), list(ARTICLES.items())[:2], strict=True):
        context = " ".join(sentences)
        with (tmp_path / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for question, answer, _ in qas:
                answers = {"text": [answer], "answer_start": [context.index(answer)]}
                row = {"id": question, "title": title, "context": context, "question": question, "answers": answers}
                handle.write(json.dumps(row) + "\n")
    data = load_squad(dataset_name=str(tmp_path), qa_input="question_and_sentence")
    assert data["train"].num_rows == data["validation"].num_rows == 4
    assert set(data["validation"]["title"]) == {"Clover"}
    row = data["train"][0]
    assert (row["target"], row["answers"]) == ("three", ["three"])
    assert row["source"] == "How many sides does a triangle have? A triangle has three sides."


def test_answer_sentence_spans_abbreviations_and_repairs_offsets() -> None:
    context = 'He moved to the U.S. Army base. "It was cold." He left in 1901. Then he came back!'
    assert answer_sentence(context, context.index("U.S. Army"), "U.S. Army") == "He moved to the U.S. Army base."
    assert answer_sentence(context, context.index("cold"), "cold") == '"It was cold."'
    assert answer_sentence(context, 0, "1901") == "He left in 1901."  # wrong offset: found by text
    assert answer_sentence(context, 3, "absent") == ""


def test_squad_loading_errors(squad_file: Path, tmp_path: Path) -> None:
    with pytest.raises(LmforgeError, match="could not load dataset 'squad'"):
        load_squad()  # the default Hub id, unreachable offline
    with pytest.raises(LmforgeError, match="SQuAD file not found"):
        load_squad(train_file=str(tmp_path / "missing.json"))
    not_squad = tmp_path / "list.json"
    not_squad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(LmforgeError, match="is not SQuAD JSON"):
        load_squad(train_file=str(not_squad))
    with pytest.raises(LmforgeError, match="qa_input must be one of"):
        load_squad(train_file=str(squad_file), qa_input="paragraph")
    with pytest.raises(LmforgeError, match="not both"):
        load_squad(dataset_name="squad", train_file=str(squad_file))
    one_article = [{"title": "A", "source": "q", "target": "a", "answers": ["a"]}]
    with pytest.raises(LmforgeError, match="at least 2"):
        split_by_article(one_article, 10)


def test_scores_and_baseline_answer() -> None:
    assert most_frequent_answer(["two", "The three", "three", "two", "three."]) == "The three"
    scores = answer_scores(["three", "four"], [["three", "3"], ["five"]])
    assert scores["exact_match"] == 50.0 and scores["f1"] == 50.0
    assert {"bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(scores)


def test_shared_squad_file_loads_and_splits_by_article(shared_data: Path) -> None:
    path = shared_data / "squad-v1.1" / "dev-v1.1.shared.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    data = load_squad(train_file=str(path), validation_split_percentage=10)
    train_titles, validation_titles = set(data["train"]["title"]), set(data["validation"]["title"])
    assert len(train_titles | validation_titles) == 46 and len(validation_titles) == 5
    assert not train_titles & validation_titles
    assert data["train"].num_rows + data["validation"].num_rows == 10192
    first = data["train"][0] if data["train"][0]["title"] == "Super_Bowl_50" else None
    if first is not None:
        assert (first["source"], first["target"]) == (
            "Which NFL team represented the AFC at Super Bowl 50?",
            "Denver Broncos",
        )


# --- the three phases, run from the shipped recipes through `lmforge train` ---


def phase_args(recipe: str, output_dir: Path, squad_file: Path, **extra: object) -> list[str]:
    overrides: dict[str, object] = {
        "train_file": squad_file,
        "output_dir": output_dir,
        "validation_split_percentage": 25,
        "max_source_length": 48,
        "max_target_length": 16,
        "max_steps": 80,
        "learning_rate": 3e-2,
        "warmup_steps": 0,
        "logging_steps": 10,
        "eval_steps": 30,
        "save_steps": 1000,
        "per_device_eval_batch_size": 16,
        "sample_max_new_tokens": 8,
        "disable_tqdm": "true",
        "use_cpu": "true",
        **extra,
    }
    args = ["train", str(RECIPES / recipe)]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args


@pytest.fixture(scope="module")
def phases(squad_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ae_llm")
    outputs = {name: root / name for name in ("autoencoder", "transition", "finetune")}
    tiny = {f"config_overrides.{key}": value for key, value in TINY_AE_LLM.items()}
    assert (
        lmforge_main(
            phase_args(
                "squad_autoencoder.yaml",
                outputs["autoencoder"],
                squad_file,
                tokenizer_vocab_size=300,
                max_steps=150,
                **tiny,
            )
        )
        == 0
    )
    assert (
        lmforge_main(
            phase_args(
                "squad_transition.yaml",
                outputs["transition"],
                squad_file,
                model_name_or_path=outputs["autoencoder"],
                # a fifth of phase 1's rate, as in the recipes (5e-4, then 1e-4): at 3e-2 the tiny Thinking Net's loss
                # can climb instead of falling, depending on the initial weights
                learning_rate=6e-3,
            )
        )
        == 0
    )
    assert (
        lmforge_main(
            phase_args(
                "squad_finetune.yaml", outputs["finetune"], squad_file, model_name_or_path=outputs["transition"]
            )
        )
        == 0
    )
    return outputs


def logged_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text(encoding="utf-8"))
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.parametrize("phase", ["autoencoder", "transition", "finetune"])
def test_each_phase_lowers_its_own_loss(phases: dict[str, Path], phase: str) -> None:
    losses = logged_losses(phases[phase])
    assert len(losses) >= 5
    assert losses[-1] < 0.85 * losses[0], losses
    config = json.loads((phases[phase] / "config.json").read_text(encoding="utf-8"))
    assert config["mode"] == ("reconstruct" if phase == "autoencoder" else "answer")
    recipe = (phases[phase] / "recipe.yaml").read_text(encoding="utf-8")
    assert f"training_phase: {phase}" in recipe


def test_transition_leaves_the_autoencoder_bit_identical(phases: dict[str, Path]) -> None:
    autoencoder = load_file(phases["autoencoder"] / "model.safetensors")
    transition = load_file(phases["transition"] / "model.safetensors")
    finetune = load_file(phases["finetune"] / "model.safetensors")
    assert autoencoder.keys() == transition.keys() == finetune.keys()
    frozen = [key for key in autoencoder if key.startswith(("model.encoder.", "model.decoder.", "lm_head."))]
    thinking = [key for key in autoencoder if key.startswith("model.transition.")]
    assert frozen and thinking
    for key in frozen:
        assert torch.equal(autoencoder[key], transition[key]), f"{key} changed in the transition phase"
    assert any(not torch.equal(autoencoder[key], transition[key]) for key in thinking)
    # End to end fine-tuning does move the autoencoder (so the comparison above can fail).
    assert any(not torch.equal(transition[key], finetune[key]) for key in frozen)
    # Later phases keep the phase-1 tokenizer.
    for phase in ("transition", "finetune"):
        assert (phases[phase] / "tokenizer.json").read_bytes() == (
            phases["autoencoder"] / "tokenizer.json"
        ).read_bytes()


def test_post_train_reports_model_and_baseline_side_by_side(phases: dict[str, Path]) -> None:
    for phase, output_dir in phases.items():
        metrics = json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
        for key in ("exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert f"eval_{key}" in metrics and f"baseline_{key}" in metrics, (phase, key)
        assert metrics["eval_questions"] == 8.0
        # The baseline answers "three" everywhere: right on exactly 1 question of 4 in each held-out article.
        assert metrics["baseline_exact_match"] == pytest.approx(25.0)
        assert metrics["baseline_f1"] == pytest.approx(25.0)
        assert 0.0 <= metrics["eval_reconstruction_token_accuracy"] <= 100.0
        predictions = [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]
        assert len(predictions) == 8 and all(set(p) == {"id", "input", "prediction", "answers"} for p in predictions)
    # Phase 2 did not touch the autoencoder, so it reconstructs exactly as phase 1 did; phase 3 changed it.
    scores = {
        phase: json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
        for phase, output_dir in phases.items()
    }
    key = "eval_reconstruction_token_accuracy"
    assert scores["transition"][key] == scores["autoencoder"][key] > 0.0
    assert scores["finetune"][key] != scores["transition"][key]


def test_phase_errors_are_one_sentence(squad_file: Path, tmp_path: Path) -> None:
    base = {"model_type": "ae_llm", "train_file": str(squad_file), "output_dir": str(tmp_path / "out")}
    with pytest.raises(LmforgeError, match="training_phase: one of"):
        run_training(*parse_recipe(base))
    with pytest.raises(LmforgeError, match="set model_name_or_path to its output_dir"):
        run_training(*parse_recipe({**base, "training_phase": "transition"}))
    too_long = {**base, "training_phase": "autoencoder", "tokenizer_vocab_size": 300, "max_source_length": 100}
    with pytest.raises(LmforgeError, match="max_source_length"):
        run_training(*parse_recipe({**too_long, "config_overrides": {"max_position_embeddings": 48}}))
    assert not (tmp_path / "out" / "model.safetensors").exists()


# --- generation ---


def test_generate_adds_eos_and_handles_long_prompts(phases: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    model = AutoModelForSeq2SeqLM.from_pretrained(phases["finetune"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(phases["finetune"])
    question = "How many wheels does a tricycle have?"
    # The inference layer encodes the prompt as the model was trained (with </s>), so it agrees with answer_question.
    generator = TextGenerator(model, tokenizer)
    assert generator.generate(question, GenerationSettings(max_new_tokens=16)) == model.answer_question(
        question, tokenizer, max_new_tokens=16
    )
    long_prompt = " ".join([question] * 20)
    generation_logger = logging.getLogger("lmforge.inference")
    generation_logger.addHandler(caplog.handler)  # the "lmforge" logger of a training run does not propagate
    try:
        with caplog.at_level(logging.WARNING, logger="lmforge.inference"):
            answer = generator.generate(long_prompt, GenerationSettings(max_new_tokens=100))
    finally:
        generation_logger.removeHandler(caplog.handler)
    assert isinstance(answer, str)
    assert "only its first 48 tokens are used" in caplog.text
    assert "max new tokens lowered from 100" in caplog.text


def test_cli_generate_answers_like_the_evaluation(phases: dict[str, Path]) -> None:
    predictions = [json.loads(line) for line in (phases["finetune"] / "predictions.jsonl").read_text().splitlines()]
    question, expected = predictions[0]["input"], predictions[0]["prediction"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmforge",
            "generate",
            "--model-path",
            str(phases["finetune"]),
            "--prompt",
            question,
            "--max-new-tokens",
            "16",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == expected
