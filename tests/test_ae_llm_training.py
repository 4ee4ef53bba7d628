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
from lmforge.evaluation import normalize_answer
from lmforge.inference import GenerationSettings, TextGenerator
from lmforge.training import load_recipe, parse_recipe, run_training
from lmforge.training.qa import answer_scores, most_frequent_answer, score_squad

from .conftest import REPO_ROOT
from .models.ae_llm.contract_ae_llm import oracle_seq2seq_greedy

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
    # The split is drawn with a fixed seed: always the same 5 held-out articles, and the file's first article
    # (Super_Bowl_50) in train, so the seed's "first 500 pairs" are its first 500 questions.
    assert validation_titles == {
        "Ctenophora",
        "European_Union_law",
        "Prime_number",
        "Southern_California",
        "Warsaw",
    }
    first = data["train"][0]
    assert (first["title"], first["source"], first["target"]) == (
        "Super_Bowl_50",
        "Which NFL team represented the AFC at Super Bowl 50?",
        "Denver Broncos",
    )
    assert set(data["train"].select(range(500))["title"]) == {"Super_Bowl_50"}
    # Two corpora of chosen articles, with named held-out articles
    chosen = load_squad(
        train_file=str(path), articles=["Nikola_Tesla", "Steam_engine"], validation_articles=["Steam_engine"]
    )
    assert set(chosen["train"]["title"]) == {"Nikola_Tesla"} and set(chosen["validation"]["title"]) == {"Steam_engine"}
    assert (chosen["train"].num_rows, chosen["validation"].num_rows) == (511, 215)


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
                train_score_samples=6,
            )
        )
        == 0
    )
    assert (
        lmforge_main(
            phase_args(
                "squad_finetune.yaml",
                outputs["finetune"],
                squad_file,
                model_name_or_path=outputs["transition"],
                # a third of phase 1's rate: at 3e-2 the loss can spike in the first steps and settle on the unigram
                # distribution (empty answers), depending on the CPU's float kernels (seen on an AVX-512 Intel Xeon)
                learning_rate=1e-2,
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


def test_transition_trains_the_thinking_net_on_the_latent_loss(phases: dict[str, Path]) -> None:
    """The transition phase's default objective is the latent one (MSE to the frozen encoder's answer latent); its
    error is reported on the held-out pairs and on the scored train pairs, next to the answers to those."""
    config = json.loads((phases["transition"] / "config.json").read_text(encoding="utf-8"))
    assert (config["lm_loss_coef"], config["latent_loss_coef"]) == (0.0, 1.0)
    for phase in ("autoencoder", "finetune"):  # the other phases train the decoder's cross-entropy
        config = json.loads((phases[phase] / "config.json").read_text(encoding="utf-8"))
        assert (config["lm_loss_coef"], config["latent_loss_coef"]) == (1.0, 0.0)
    metrics = json.loads((phases["transition"] / "eval_results.json").read_text(encoding="utf-8"))
    for split in ("eval", "train"):
        assert metrics[f"{split}_latent_mse"] > 0 and metrics[f"{split}_latent_relative_mse"] > 0
    assert metrics["train_questions"] == 6.0 and 0 <= metrics["train_exact_match"] <= 100
    learned = [
        json.loads(line) for line in (phases["transition"] / "train_predictions.jsonl").read_text().splitlines()
    ]
    assert len(learned) == 6 and learned[0]["input"] == "How many wheels does a tricycle have?"
    # the reported train error is the model's own latent loss on those six pairs (one forward pass each, here)
    model = AutoModelForSeq2SeqLM.from_pretrained(phases["transition"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(phases["transition"])
    losses = []
    with torch.no_grad():
        for row in learned:
            question = tokenizer(row["input"], truncation=True, max_length=48, return_tensors="pt")
            labels = tokenizer(row["answers"][0], truncation=True, max_length=16, return_tensors="pt")["input_ids"]
            losses.append(float(model(**question, labels=labels).latent_loss))
    assert metrics["train_latent_mse"] == pytest.approx(sum(losses) / len(losses), rel=1e-4)
    assert "train_latent_mse" not in json.loads((phases["finetune"] / "eval_results.json").read_text(encoding="utf-8"))
    # the autoencoder phase has no Thinking Net output to score
    assert "eval_latent_mse" not in json.loads((phases["autoencoder"] / "eval_results.json").read_text("utf-8"))


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


def test_post_train_reports_model_and_baseline_side_by_side(phases: dict[str, Path], squad_file: Path) -> None:
    for phase, output_dir in phases.items():
        metrics = json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
        for key in ("exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL", "rougeLsum"):
            assert f"eval_{key}" in metrics and f"eval_baseline_{key}" in metrics, (phase, key)
        assert metrics["eval_questions"] == 8.0
        # The baseline answers "three" everywhere: right on exactly 1 question of 4 in each held-out article.
        assert metrics["eval_baseline_exact_match"] == pytest.approx(25.0)
        assert metrics["eval_baseline_f1"] == pytest.approx(25.0)
        # The reconstruction scores, recomputed here from the saved model: teacher-forced argmax against the inputs,
        # on the distinct held-out questions and answers
        token_accuracy, sequence_accuracy = reconstruction_by_hand(output_dir, squad_file)
        assert metrics["eval_reconstruction_token_accuracy"] == pytest.approx(token_accuracy)
        assert metrics["eval_reconstruction_sequence_accuracy"] == pytest.approx(sequence_accuracy)
        predictions = [json.loads(line) for line in (output_dir / "predictions.jsonl").read_text().splitlines()]
        assert len(predictions) == 8 and all(set(p) == {"id", "input", "prediction", "answers"} for p in predictions)
        # EM is recomputed from the written predictions
        exact = [normalize_answer(p["prediction"]) in {normalize_answer(a) for a in p["answers"]} for p in predictions]
        assert metrics["eval_exact_match"] == pytest.approx(100.0 * sum(exact) / len(exact))
    # Phase 2 did not touch the autoencoder, so it reconstructs exactly as phase 1 did; phase 3 changed it.
    scores = {
        phase: json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
        for phase, output_dir in phases.items()
    }
    key = "eval_reconstruction_token_accuracy"
    assert scores["transition"][key] == scores["autoencoder"][key] > 0.0
    assert scores["finetune"][key] != scores["transition"][key]


def reconstruction_by_hand(output_dir: Path, squad_file: Path) -> tuple[float, float]:
    """Token and text reconstruction accuracy (percent) of the saved model on the held-out questions and answers,
    one text at a time, without padding or the library's scorer."""
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    data = load_squad(train_file=str(squad_file), validation_split_percentage=25)
    questions = list(dict.fromkeys(data["validation"]["source"]))
    answers = list(dict.fromkeys(data["validation"]["target"]))
    right = total = exact = 0
    for text, limit in [(q, 48) for q in questions] + [(a, 16) for a in answers]:
        ids = torch.tensor([tokenizer(text, truncation=True, max_length=limit)["input_ids"]])
        with torch.no_grad():
            predicted = model(input_ids=ids, labels=ids, mode="reconstruct").logits.argmax(-1)
        hits = int((predicted == ids).sum())
        right, total, exact = right + hits, total + ids.shape[1], exact + int(hits == ids.shape[1])
    return 100.0 * right / total, 100.0 * exact / len(questions + answers)


def test_a_saved_model_is_scored_on_other_articles_by_the_same_code(
    phases: dict[str, Path], squad_file: Path, tmp_path: Path
) -> None:
    """`score_squad` (how withheld articles are scored) gives a saved folder's post-train scores when handed its
    validation articles as a file of their own."""
    validation_titles = set(
        load_squad(train_file=str(squad_file), validation_split_percentage=25)["validation"]["title"]
    )
    document = squad_document()
    document["data"] = [article for article in document["data"] if article["title"] in validation_titles]
    held_out = tmp_path / "held-out.json"
    held_out.write_text(json.dumps(document), encoding="utf-8")
    saved = json.loads((phases["finetune"] / "eval_results.json").read_text(encoding="utf-8"))
    scores = score_squad(phases["finetune"], held_out, baseline_answer="three", output_dir=tmp_path / "scored")
    for key, value in scores.items():
        if key != "eval_answer_seconds":
            assert value == pytest.approx(saved[key]), key
    assert {"eval_exact_match", "eval_f1", "eval_bleu", "eval_rougeL", "eval_baseline_f1"} <= set(scores)
    assert (tmp_path / "scored" / "predictions.jsonl").read_text() == (
        phases["finetune"] / "predictions.jsonl"
    ).read_text()


def test_beam_answers_are_what_generate_writes_with_those_beams(
    phases: dict[str, Path], squad_file: Path, tmp_path: Path
) -> None:
    """`answer_num_beams` / `answer_length_penalty` (here through `score_squad`) score the answers of the model's beam
    search: the folder's text2text pipeline with the same beams gives the same answers, and a length penalty that
    favours long answers changes them from the greedy ones (so the options reach generate())."""
    greedy_dir, beam_dir = tmp_path / "greedy", tmp_path / "beams"
    score_squad(phases["finetune"], squad_file, batch_size=1, output_dir=greedy_dir)
    scores = score_squad(
        phases["finetune"], squad_file, batch_size=1, output_dir=beam_dir, num_beams=3, length_penalty=20.0
    )
    rows = [json.loads(line) for line in (beam_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    greedy = [json.loads(line)["prediction"] for line in (greedy_dir / "predictions.jsonl").read_text().splitlines()]
    model = AutoModelForSeq2SeqLM.from_pretrained(phases["finetune"])
    tokenizer = AutoTokenizer.from_pretrained(phases["finetune"])
    expected = [
        model.answer_question(row["input"], tokenizer, max_new_tokens=16, num_beams=3, length_penalty=20.0)
        for row in rows
    ]
    assert [row["prediction"] for row in rows] == expected
    assert expected != greedy
    assert scores["eval_questions"] == len(rows)


def test_phase_errors_are_one_sentence(squad_file: Path, tmp_path: Path) -> None:
    base = {"model_type": "ae_llm", "train_file": str(squad_file), "output_dir": str(tmp_path / "out")}
    with pytest.raises(LmforgeError, match="training_phase: one of"):
        run_training(*parse_recipe(base))
    with pytest.raises(LmforgeError, match="set model_name_or_path to its output_dir"):
        run_training(*parse_recipe({**base, "training_phase": "transition"}))
    with pytest.raises(LmforgeError, match="objective must be one of"):
        run_training(*parse_recipe({**base, "training_phase": "autoencoder", "objective": "bleu"}))
    with pytest.raises(LmforgeError, match="reconstructs its inputs: objective decoder"):
        run_training(*parse_recipe({**base, "training_phase": "autoencoder", "objective": "latent"}))
    too_long = {**base, "training_phase": "autoencoder", "tokenizer_vocab_size": 300, "max_source_length": 100}
    with pytest.raises(LmforgeError, match="max_source_length"):
        run_training(*parse_recipe({**too_long, "config_overrides": {"max_position_embeddings": 48}}))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_the_phase_objective_is_not_a_trl_objective() -> None:
    """`objective` is one key for what a run minimises: AE-LLM's phase objectives stay with the model's own training,
    `sft` and `dpo` go to TRL's trainers, whatever the recipe."""
    from lmforge.training.objectives import objective_of

    for recipe in sorted((REPO_ROOT / "recipes" / "ae_llm").glob("aellm-*_*.yaml")):
        assert objective_of(recipe) is None, recipe.name
    transition = REPO_ROOT / "recipes" / "ae_llm" / "aellm-seed_transition.yaml"
    assert objective_of(transition, ["--objective", "sft"]) == "sft"
    assert load_recipe(transition)[0].objective == "latent"


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


def oracle_answer(output_dir: Path, question: str, max_new_tokens: int) -> str:
    """The greedy answer by the model contract's oracle (plain forward passes over the whole decoder prefix, no cache,
    no generate()), cut at the end-of-sequence token and decoded: a reference independent of lmforge's inference."""
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    ids = torch.tensor([tokenizer(question)["input_ids"]])
    tokens = oracle_seq2seq_greedy(model, ids, max_new_tokens, mode="answer")[0].tolist()
    eos = model.config.eos_token_id
    tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
    return str(tokenizer.decode(tokens, skip_special_tokens=True)).strip()


def test_cli_generate_answers_like_the_evaluation(phases: dict[str, Path]) -> None:
    predictions = [json.loads(line) for line in (phases["finetune"] / "predictions.jsonl").read_text().splitlines()]
    question, expected = predictions[0]["input"], predictions[0]["prediction"]
    # predictions.jsonl (the scorer's batched generate()) holds the oracle's answer
    assert expected == oracle_answer(phases["finetune"], question, 16)
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
