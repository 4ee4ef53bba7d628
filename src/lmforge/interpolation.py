"""Interpolation in the idea space: what a model with the "interpolate" mode (LatentReasoner) writes from a mix of
two texts' latent vectors, for the model card.

For two texts A and B and alpha in `ALPHAS` (0, 0.25, 0.5, 0.75, 1), the greedy text decoded from
`(1 - alpha) * idea(A) + alpha * idea(B)` through `TextGenerator.interpolate`: alpha 0 is A's own output, alpha 1
B's. A training run of such a model writes the table as `interpolation.json` in its output folder (five generations,
with the samples' `sample_max_new_tokens`), and `lmforge.hub.cards` renders it as the card's "Interpolation in the
idea space" section. `write_interpolation` writes it for a folder trained before, without training again:

    from lmforge.interpolation import write_interpolation

    write_interpolation("outputs/latent-reasoner-dialogsum")  # the folder's first two validation dialogues
    write_interpolation("outputs/latent-reasoner-dialogsum", "#Person1#: Hi ...", "#Person1#: Where ...")

The two texts a folder offers (`interpolation_texts`): the first two validation sources of the run
(`predictions.jsonl`, the dialogues the summarization run scored after training), else its first two sample
prompts (`samples.json`).
"""

import json
import logging
from pathlib import Path
from typing import Any, cast

from .errors import LmforgeError
from .inference import GenerationSettings, TextGenerator
from .loading import read_model_type
from .models import get_spec

logger = logging.getLogger(__name__)

INTERPOLATION_FILE = "interpolation.json"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
# The validation sources a run leaves in its folder: the file and the field of each line that holds the input text.
PREDICTIONS_FILE, PREDICTIONS_SOURCE = "predictions.jsonl", "dialogue"
SAMPLES_FILE = "samples.json"


def interpolation_texts(folder: str | Path) -> tuple[tuple[str, str], str] | None:
    """The two texts a saved folder offers for the table, and the file they come from: the first two validation
    sources of the run (the `dialogue` of the first two lines of `predictions.jsonl`), else the first two sample
    prompts (the keys of `samples.json`); None when the folder has neither two sources nor two prompts."""
    path = Path(folder)
    predictions = path / PREDICTIONS_FILE
    if predictions.is_file():
        sources: list[str] = []
        with predictions.open(encoding="utf-8") as handle:
            for line in handle:
                if len(sources) == 2:
                    break
                row = json.loads(line) if line.strip() else {}
                source = row.get(PREDICTIONS_SOURCE) if isinstance(row, dict) else None
                if isinstance(source, str) and source.strip():
                    sources.append(source)
        if len(sources) == 2:
            return (sources[0], sources[1]), PREDICTIONS_FILE
    samples = path / SAMPLES_FILE
    if samples.is_file():
        prompts = [str(prompt) for prompt in json.loads(samples.read_text(encoding="utf-8")) if str(prompt).strip()]
        if len(prompts) >= 2:
            return (prompts[0], prompts[1]), SAMPLES_FILE
    return None


def interpolation_table(
    generator: TextGenerator, text_a: str, text_b: str, max_new_tokens: int, source: str = "given"
) -> dict[str, Any]:
    """The table: for each alpha of `ALPHAS`, the greedy text (no sampling, one beam; the model's generation config
    otherwise, e.g. LatentReasoner's no repeated 3-grams) decoded from `(1 - alpha) * idea(A) + alpha * idea(B)`, at
    most `max_new_tokens` new tokens. `source` names where the two texts come from. A one-line `LmforgeError` for a
    model without the "interpolate" mode."""
    if "interpolate" not in generator.modes:
        raise LmforgeError(
            f"a {generator.model_type} model has no idea space to interpolate in (its spec has no 'interpolate' mode)"
        )
    settings = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    rows = [{"alpha": alpha, "text": generator.interpolate(text_a, text_b, alpha, settings)} for alpha in ALPHAS]
    return {
        "text_a": text_a,
        "text_b": text_b,
        "texts_from": source,
        "decoding": "greedy",
        "max_new_tokens": max_new_tokens,
        "rows": rows,
    }


def save_interpolation(folder: str | Path, table: dict[str, Any]) -> Path:
    """Write `table` (`interpolation_table`) as `interpolation.json` in `folder`; returns its path."""
    path = Path(folder) / INTERPOLATION_FILE
    path.write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def saved_max_new_tokens(folder: str | Path) -> int:
    """The new tokens of the folder's samples: the run's `sample_max_new_tokens` (`training_args.json`, else
    `recipe.yaml`), else the training default."""
    import yaml

    # lmforge.training imports this module (a run writes the table): its arguments are imported here, when needed
    from .training.arguments import LmforgeTrainingArguments
    from .training.trainer import TRAINING_ARGS_JSON

    path = Path(folder)
    for name in (TRAINING_ARGS_JSON, "recipe.yaml"):
        file = path / name
        if not file.is_file():
            continue
        text = file.read_text(encoding="utf-8")
        try:
            values = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError):
            continue
        value = values.get("sample_max_new_tokens") if isinstance(values, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return cast(int, LmforgeTrainingArguments.__dataclass_fields__["sample_max_new_tokens"].default)


def write_interpolation(
    model_path: str | Path,
    text_a: str | None = None,
    text_b: str | None = None,
    *,
    max_new_tokens: int | None = None,
    device: str | None = None,
) -> Path:
    """Write `interpolation.json` for a saved folder of a model with the "interpolate" mode, without training; the
    card shows it (`lmforge.hub.cards.render_model_card`). Returns the file's path.

    Args:
        model_path: The saved model folder (the output_dir of a training run).
        text_a, text_b: The two texts (alpha 0 and alpha 1). Without them, the folder's own choice
            (`interpolation_texts`: the first two validation sources of the run, else its first two sample
            prompts); give both or neither.
        max_new_tokens: New tokens per text; by default the run's `sample_max_new_tokens` (`saved_max_new_tokens`).
        device: Where to run the model (default: the loader's choice).

    Raises a one-line `LmforgeError` for a folder of a model without the mode, or without texts of its own when none
    are given.
    """
    folder = Path(model_path)
    model_type = read_model_type(folder)
    if "interpolate" not in get_spec(model_type).modes:
        raise LmforgeError(f"a {model_type} model has no idea space to interpolate in (no 'interpolate' mode)")
    if (text_a is None) != (text_b is None):
        raise LmforgeError("give both texts to interpolate between (text_a and text_b), or neither")
    if text_a is not None and text_b is not None:
        texts, source = (text_a, text_b), "given"
    else:
        found = interpolation_texts(folder)
        if found is None:
            raise LmforgeError(
                f"{folder} has no validation sources ({PREDICTIONS_FILE}) or two sample prompts ({SAMPLES_FILE}) "
                "to interpolate between; give the two texts (text_a, text_b)"
            )
        texts, source = found
    generator = TextGenerator.from_pretrained(folder, device)
    table = interpolation_table(generator, *texts, max_new_tokens or saved_max_new_tokens(folder), source)
    return save_interpolation(folder, table)


__all__ = [
    "ALPHAS",
    "INTERPOLATION_FILE",
    "interpolation_table",
    "interpolation_texts",
    "save_interpolation",
    "saved_max_new_tokens",
    "write_interpolation",
]
