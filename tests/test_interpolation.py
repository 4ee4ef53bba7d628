"""The idea-space interpolation table (`lmforge.interpolation`): written by a LatentReasoner training run and by
`write_interpolation` for a folder trained before, and rendered in the model card; absent for other models."""

import json
import shutil
from pathlib import Path

import pytest

from lmforge.errors import LmforgeError
from lmforge.hub.cards import render_model_card
from lmforge.inference import GenerationSettings, TextGenerator
from lmforge.interpolation import ALPHAS, INTERPOLATION_FILE, write_interpolation

from . import test_latent_reasoner_training as training_tests
from .golden import golden_text
from .saved_models import LATENT_TEXT_A, LATENT_TEXT_B, golden_copy
from .test_inference import oracle_interpolation

# The fixtures of the LatentReasoner training tests: the tiny backbones, the dialogues, and the tiny model trained on
# them by `run_training` (this module trains its own copy).
backbones, dialogue_file, trained = training_tests.backbones, training_tests.dialogue_file, training_tests.trained

SECTION = "## Interpolation in the idea space"
HEADER = "| alpha | summary |"


def table_rows(card_text: str) -> list[str]:
    """The rows of the card's interpolation table (after its header and separator line)."""
    lines = card_text.splitlines()
    start = lines.index(HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def test_training_run_writes_the_table_between_its_first_two_validation_dialogues(
    trained: tuple[Path, dict, dict],
) -> None:
    out = trained[0]
    table = json.loads((out / INTERPOLATION_FILE).read_text(encoding="utf-8"))
    assert [row["alpha"] for row in table["rows"]] == [0.0, 0.25, 0.5, 0.75, 1.0] == list(ALPHAS)
    assert all(isinstance(row["text"], str) for row in table["rows"])
    # The texts: the first two validation dialogues the run scored (predictions.jsonl), in order.
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert (table["text_a"], table["text_b"]) == (predictions[0]["dialogue"], predictions[1]["dialogue"])
    assert table["texts_from"] == "predictions.jsonl" and table["decoding"] == "greedy"
    assert table["max_new_tokens"] == 64  # the samples' sample_max_new_tokens (the default)

    # Alpha 0 decodes from A's idea vector alone: exactly what the model writes for A (greedy), alpha 1 for B; the
    # rows in between are real mixes (alpha 0.25 of B is alpha 0.75 of A: the same vector).
    generator = TextGenerator.from_pretrained(out)
    greedy = GenerationSettings(max_new_tokens=64, do_sample=False, num_beams=1)
    text_a, text_b = table["text_a"], table["text_b"]
    texts = [row["text"] for row in table["rows"]]
    assert texts[0] == generator.generate(text_a, greedy)
    assert texts[-1] == generator.generate(text_b, greedy)
    assert texts[0] != texts[-1]  # the two dialogues have summaries of their own
    assert texts[1] == generator.interpolate(text_b, text_a, 0.75, greedy)
    assert texts[2] == generator.interpolate(text_b, text_a, 0.5, greedy)

    card = render_model_card(out, repo_id="someone/latent-reasoner").text
    assert card.count(SECTION) == 1
    assert card.index("## Usage") < card.index(SECTION) < card.index("## Training")
    cells = [" ".join(text.split()).replace("|", "\\|") or "(nothing)" for text in texts]
    labels = ["0", "0.25", "0.5", "0.75", "1"]
    assert table_rows(card) == [f"| {label} | {cell} |" for label, cell in zip(labels, cells, strict=True)]
    assert "```text\n" + text_a[:200].rstrip() in card  # the source texts, cut at 200 characters


def test_write_interpolation_for_a_folder_trained_before(tmp_path: Path) -> None:
    folder = golden_copy("latent_reasoner", tmp_path / "latent_reasoner")
    # The golden folder has no validation sources or samples of its own: the texts are required, in one line.
    with pytest.raises(LmforgeError, match=r"has no validation sources .* give the two texts") as error:
        write_interpolation(folder)
    assert "\n" not in str(error.value)
    with pytest.raises(LmforgeError, match="give both texts"):
        write_interpolation(folder, LATENT_TEXT_A)
    assert not (folder / INTERPOLATION_FILE).exists()

    path = write_interpolation(folder, LATENT_TEXT_A, LATENT_TEXT_B, max_new_tokens=8)
    assert path == folder / INTERPOLATION_FILE
    table = json.loads(path.read_text(encoding="utf-8"))
    assert [row["alpha"] for row in table["rows"]] == list(ALPHAS) and table["texts_from"] == "given"
    texts = [row["text"] for row in table["rows"]]
    # The ends are the committed greedy texts of the golden prompts (tests/data/golden/latent_reasoner).
    assert texts[0] == golden_text("latent_reasoner", LATENT_TEXT_A)
    assert texts[-1] == golden_text("latent_reasoner", LATENT_TEXT_B)
    assert texts[0] != texts[-1]
    # The rows in between decode from the linear mixes of the two latent vectors, as the oracle decodes them.
    for alpha, text in zip(ALPHAS[1:-1], texts[1:-1], strict=True):
        assert text == oracle_interpolation(folder, LATENT_TEXT_A, LATENT_TEXT_B, alpha, 8), alpha

    card = render_model_card(folder).text
    assert SECTION in card and HEADER in card
    assert len(table_rows(card)) == 5
    assert f"| 0 | {texts[0]} |" in card and f"| 1 | {texts[-1]} |" in card

    # Without texts, a folder with two sample prompts (samples.json) interpolates between them.
    (folder / "samples.json").write_text(json.dumps({LATENT_TEXT_B: "x", LATENT_TEXT_A: "y"}), encoding="utf-8")
    table = json.loads(write_interpolation(folder, max_new_tokens=8).read_text(encoding="utf-8"))
    assert (table["text_a"], table["text_b"], table["texts_from"]) == (LATENT_TEXT_B, LATENT_TEXT_A, "samples.json")
    assert table["rows"][0]["text"] == texts[-1] and table["rows"][-1]["text"] == texts[0]
    assert table["max_new_tokens"] == 8


def test_interpolation_section_escapes_cells_and_cuts_long_texts(tmp_path: Path) -> None:
    folder = golden_copy("latent_reasoner", tmp_path / "latent_reasoner")
    long_text = "#Person1#: " + "word " * 100
    table = {
        "text_a": long_text,
        "text_b": "short | text",
        "max_new_tokens": 12,
        "rows": [{"alpha": alpha, "text": f"a | b\nc {alpha}" if alpha else ""} for alpha in ALPHAS],
    }
    (folder / INTERPOLATION_FILE).write_text(json.dumps(table), encoding="utf-8")
    card = render_model_card(folder).text
    rows = table_rows(card)
    assert rows == [
        "| 0 | (nothing) |",
        "| 0.25 | a \\| b c 0.25 |",
        "| 0.5 | a \\| b c 0.5 |",
        "| 0.75 | a \\| b c 0.75 |",
        "| 1 | a \\| b c 1.0 |",
    ]
    assert long_text[:200].rstrip() + " ...\n```" in card and long_text[:201] + "w" not in card
    assert "at most 12 new tokens" in card


def test_models_without_the_interpolate_mode_have_no_table(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    # Every template renders, and without interpolation.json none has the section (LatentReasoner's neither).
    for model_type, source in tiny_model_dirs.items():
        card = render_model_card(source).text
        assert SECTION not in card and "{{" not in card and "interpolation_section" not in card, model_type
    aksis = Path(shutil.copytree(tiny_model_dirs["aksis"], tmp_path / "aksis"))
    (aksis / "samples.json").write_text(json.dumps({"First Citizen:": " a", "All:": " b"}), encoding="utf-8")
    with pytest.raises(LmforgeError, match="a aksis model has no idea space to interpolate in"):
        write_interpolation(aksis)
    with pytest.raises(LmforgeError, match="no idea space"):
        write_interpolation(aksis, "First Citizen:", "All:")
    assert not (aksis / INTERPOLATION_FILE).exists()
    assert SECTION not in render_model_card(aksis).text
