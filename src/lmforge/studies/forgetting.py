"""Catastrophic forgetting: what a model trained on corpus A keeps of A after it is fine-tuned on corpus B.

A study beside the library (`lmforge forgetting RECIPE.yaml` runs it): it only uses lmforge's public training API
(`run_training` on composed recipes, `LmforgeTrainer.evaluate`, the question-answering scorers) and the routed mixture
of `routing.py`.

A study recipe (see `recipes/aksis/forgetting.yaml` and `recipes/ae_llm/forgetting.yaml`) is a YAML mapping with
these keys:

- `output_dir`: where every run and the results go.
- `base`: an ordinary training recipe for corpus A (its data keys say which corpus: none = the embedded Shakespeare
  corpus), or a list of them trained one after the other, each from the one before (AE-LLM's three phases); trained
  first, into `output_dir/base`. Or `base_model_path`: a saved model trained on A (then `base` may hold only A's data
  keys; without `base` they are read from the model's `recipe.yaml`).
- `finetune`: recipe keys shared by every fine-tuning run (steps, batch size, block_size, max_eval_samples...).
- `methods`: method name -> recipe keys of that method (e.g. `learning_rate`). A method with a `peft:` section is
  LoRA; one that also has `router:` (TrainingArguments keys of the router's training) is a routed mixture: one
  adapter for corpus A and one for corpus B on the same base, and a router that picks the adapter of each input.
  A method with neither is full fine-tuning.
- `pairings`: a list of corpora B, each `name` plus data keys (paths are relative to the folder the study runs from).

The metric follows the model's training task:

- `causal_lm` (Aksis, CharTransformer): perplexity on held-out blocks of A and of B (`Trainer.evaluate`, exp of the mean
  token loss); a corpus is text (`train_file` trains, `validation_file` or a split of it evaluates).
- `question_answering` (AE-LLM): exact match and F1 of the greedy answers to the questions the model learned, the
  first `max_train_samples` pairs of its corpus (a corpus is SQuAD data: `train_file`, `articles`, `qa_input`...):
  what it knew, and whether it still knows it. The router is scored on held-out questions of the same articles.

Every training is `run_training` (the HF Trainer) on a composed recipe; a run whose folder already holds the same
finished run is reused, so an interrupted study continues where it stopped. The results go to `forgetting.json`,
`forgetting_table.md`, `forgetting.png` and `forgetting.md` (a model-card section).
"""

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
)

from ..adapters import count_parameters, lora_config
from ..data import tokenize_and_group
from ..errors import LmforgeError
from ..models import SPECS
from ..training.arguments import CausalLMDataArguments, LmforgeTrainingArguments
from ..training.builders import limit_rows, load_raw_text
from ..training.qa import answer_scores, generate_answers, load_question_answer_pairs
from ..training.recipe import apply_overrides, check_recipe, parse_recipe, read_recipe, resolve_model_type
from ..training.run import run_training, setup_logging
from ..training.trainer import LmforgeTrainer
from .routing import AdapterRouter, RoutedAdapterModel, pad_rows

logger = logging.getLogger("lmforge")

STUDY_KEYS = ("output_dir", "base", "base_model_path", "finetune", "methods", "pairings")
# The recipe keys that say where a corpus comes from (a pairing's keys, and corpus A's in the base recipe), per task.
DATA_SOURCE_KEYS = {
    "causal_lm": (
        "dataset_name",
        "dataset_config_name",
        "train_file",
        "validation_file",
        "text_column",
        "validation_split_percentage",
        "max_documents",
    ),
    "question_answering": (
        "dataset_name",
        "dataset_config_name",
        "train_file",
        "validation_file",
        "validation_split_percentage",
        "qa_input",
        "articles",
        "validation_articles",
        "max_train_samples",
    ),
}
ADAPTER_A = "corpus_a"
# What the router reads: the mean token embedding, or that and the bag of tokens (the default).
ROUTER_FEATURES = ("embedding", "embedding+tokens")
# Train inputs per corpus the router learns from (balanced between A and B), and held-out inputs it is scored on.
ROUTER_ROWS_PER_CORPUS = 1000
RUN_MARKER = "study_run.json"


@dataclass
class Method:
    name: str
    kind: str  # full, lora or routed
    recipe: dict[str, Any]
    router: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pairing:
    name: str
    data: dict[str, Any]


@dataclass
class Study:
    output_dir: Path
    model_type: str
    base: list[dict[str, Any]] | None
    base_model_path: str | None
    corpus_a: dict[str, Any]
    finetune: dict[str, Any]
    methods: list[Method]
    pairings: list[Pairing]

    @property
    def task(self) -> str:
        return SPECS[self.model_type].task


@dataclass
class MethodResult:
    """One fine-tuned model: its metric on A and B (and the base's), size, time and routing accuracy. `metric` is
    `loss` (mean token loss; perplexity = exp of it; lower is better) or `exact_match` (0-100; higher is better)."""

    pairing: str
    method: str
    kind: str
    metric: str
    a_score: float
    b_score: float
    a_base_score: float
    b_base_score: float
    trainable_parameters: int
    total_parameters: int
    train_seconds: float
    output: str
    routing_accuracy: float | None = None
    routing_accuracy_a: float | None = None
    routing_accuracy_b: float | None = None
    extra: dict[str, float] = field(default_factory=dict)  # e.g. F1 on A and B

    @property
    def lower_is_better(self) -> bool:
        return self.metric == "loss"

    def shown(self, score: float) -> float:
        """A score as the table shows it: perplexity for a loss, the score itself otherwise."""
        return math.exp(score) if self.lower_is_better else score

    @property
    def a_retained(self) -> float:
        """How much of A is kept: perplexity before / after (from the losses), or score after / before."""
        if self.lower_is_better:
            return math.exp(self.a_base_score - self.a_score)
        return self.a_score / self.a_base_score if self.a_base_score > 0 else math.nan

    @property
    def b_gain(self) -> float:
        """What was learned of B: the drop of the loss (log-perplexity), or the rise of the score."""
        change = self.b_score - self.b_base_score
        return -change if self.lower_is_better else change


# --------------------------------------------------------------------------------------------------------------------
# The study recipe


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LmforgeError(f"{where} must be a mapping of recipe keys, got {type(value).__name__}")
    return dict(value)


def _check_files(data: dict[str, Any], where: str) -> None:
    for key in ("train_file", "validation_file"):
        if data.get(key) and not Path(str(data[key])).is_file():
            raise LmforgeError(
                f"{where}: {key} not found: {data[key]} (paths are relative to the folder you run from)"
            )


def _study_model_type(base: list[dict[str, Any]] | None, base_model_path: str | None) -> str:
    recipe = {**((base or [{}])[0]), **({"model_name_or_path": base_model_path} if base_model_path else {})}
    model_type = resolve_model_type(recipe, "study recipe")
    if SPECS[model_type].task not in DATA_SOURCE_KEYS:
        accepted = sorted(k for k, spec in SPECS.items() if spec.task in DATA_SOURCE_KEYS)
        raise LmforgeError(
            f"the forgetting study needs a causal language model or a question-answering model "
            f"({', '.join(accepted)}), not {model_type}"
        )
    return model_type


def _corpus_a(base: list[dict[str, Any]] | None, base_model_path: str | None, task: str) -> dict[str, Any]:
    """Corpus A's data keys: from `base` (its last recipe), else from the saved base model's recipe.yaml, else the
    embedded corpus."""
    recipe = base[-1] if base else None
    if recipe is None and base_model_path and (Path(base_model_path) / "recipe.yaml").is_file():
        recipe = yaml.safe_load((Path(base_model_path) / "recipe.yaml").read_text(encoding="utf-8")) or {}
    return {k: v for k, v in (recipe or {}).items() if k in DATA_SOURCE_KEYS[task] and v is not None}


def _method(name: str, value: Any, model_type: str) -> Method:
    recipe = _mapping(value, f"methods.{name}")
    router = recipe.pop("router", None)
    if router is not None and recipe.get("peft") is None:
        raise LmforgeError(f"methods.{name}: a routed method (router:) needs a peft: section for its adapters")
    kind = "routed" if router is not None else "lora" if recipe.get("peft") is not None else "full"
    check_recipe(recipe, f"methods.{name}", model_type)
    if recipe.get("peft") is not None:  # a typo in the LoRA section fails now, not when this method trains
        try:
            lora_config(model_type, recipe["peft"])
        except LmforgeError as err:
            raise LmforgeError(f"methods.{name}.{err}") from None
    router_args = _mapping(router, f"methods.{name}.router")
    features = router_args.pop("features", "embedding+tokens")
    if features not in ROUTER_FEATURES:
        raise LmforgeError(f"methods.{name}.router.features must be one of {list(ROUTER_FEATURES)}, got {features!r}")
    check_recipe(router_args, f"methods.{name}.router", model_type)  # the router's TrainingArguments keys
    return Method(name=name, kind=kind, recipe=recipe, router={**router_args, "features": features})


def _pairing(index: int, value: Any, task: str) -> Pairing:
    data = _mapping(value, f"pairings[{index}]")
    name = data.pop("name", None)
    if not name or not isinstance(name, str):
        raise LmforgeError(f"pairings[{index}] needs a name (used for its folder and in the table)")
    keys = DATA_SOURCE_KEYS[task]
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise LmforgeError(f"pairing {name}: unknown key '{unknown[0]}' (data keys: {', '.join(keys)})")
    if not data.get("train_file") and not data.get("dataset_name"):
        raise LmforgeError(f"pairing {name}: give corpus B as train_file (and validation_file) or dataset_name")
    _check_files(data, f"pairing {name}")
    return Pairing(name=name, data=data)


def _base_recipes(value: Any, source: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    recipes = value if isinstance(value, list) else [value]
    if not recipes:
        raise LmforgeError(f"{source}: base is an empty list; give a training recipe for corpus A")
    return [_mapping(recipe, f"{source}: base") for recipe in recipes]


def parse_study(recipe: dict[str, Any], source: str = "study recipe") -> Study:
    """Check every key of a study recipe (and of the recipes inside it) before anything runs."""
    unknown = sorted(set(recipe) - set(STUDY_KEYS))
    if unknown:
        raise LmforgeError(f"{source}: unknown key '{unknown[0]}' (study keys: {', '.join(STUDY_KEYS)})")
    base_model_path = recipe.get("base_model_path")
    base = _base_recipes(recipe.get("base"), source)
    if base_model_path is None and base is None:
        raise LmforgeError(f"{source}: give base (a training recipe for corpus A) or base_model_path (a saved model)")
    if base_model_path is not None and not Path(str(base_model_path)).is_dir():
        raise LmforgeError(f"{source}: base_model_path not found: {base_model_path}")
    model_type = _study_model_type(base, str(base_model_path) if base_model_path else None)
    task = SPECS[model_type].task
    for phase in base or []:
        check_recipe(phase, f"{source}: base", model_type)
    finetune = _mapping(recipe.get("finetune"), f"{source}: finetune")
    check_recipe(finetune, f"{source}: finetune", model_type)
    misplaced = sorted(set(finetune) & {*DATA_SOURCE_KEYS[task], "model_name_or_path", "peft", "output_dir"})
    if misplaced:
        raise LmforgeError(
            f"{source}: finetune must not set '{misplaced[0]}' (corpus B goes in pairings, peft in methods)"
        )
    methods = [
        _method(str(name), value, model_type) for name, value in _mapping(recipe.get("methods"), "methods").items()
    ]
    if not methods:
        raise LmforgeError(f"{source}: methods is empty; name at least one (e.g. full: {{learning_rate: 3.0e-4}})")
    pairings_value = recipe.get("pairings")
    if not isinstance(pairings_value, list) or not pairings_value:
        raise LmforgeError(f"{source}: pairings must be a list of corpora B (name, train_file, validation_file)")
    pairings = [_pairing(i, value, task) for i, value in enumerate(pairings_value)]
    names = [p.name for p in pairings]
    if len(set(names)) != len(names):
        raise LmforgeError(f"{source}: pairing names must differ, got {names}")
    corpus_a = _corpus_a(base, str(base_model_path) if base_model_path else None, task)
    _check_files(corpus_a, f"{source}: corpus A")
    return Study(
        output_dir=Path(str(recipe.get("output_dir") or "outputs/forgetting")),
        model_type=model_type,
        base=base,
        base_model_path=str(base_model_path) if base_model_path else None,
        corpus_a=corpus_a,
        finetune=finetune,
        methods=methods,
        pairings=pairings,
    )


def load_study(path: str | Path, overrides: list[str] | None = None, output_dir: str | None = None) -> Study:
    """Read a study recipe, apply `--key value` overrides (`--finetune.max_steps 50`) and check it."""
    recipe = apply_overrides(read_recipe(path), overrides or [])
    if output_dir:
        recipe["output_dir"] = output_dir
    return parse_study(recipe, source=f"study recipe {path}")


# --------------------------------------------------------------------------------------------------------------------
# Runs


@dataclass
class RunOutput:
    path: Path
    train_seconds: float


def _train(recipe: dict[str, Any], label: str) -> RunOutput:
    """`run_training` on one composed recipe, unless its output_dir already holds that finished run."""
    output_dir = Path(str(recipe["output_dir"]))
    marker = output_dir / RUN_MARKER
    normalized = json.loads(json.dumps(recipe, default=str))
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == normalized:
        logger.info("%s: already trained in %s, reusing it", label, output_dir)
    else:
        logger.info("%s: training into %s", label, output_dir)
        # the study owns its run folders: a changed recipe trains again over the earlier run
        run_training(*parse_recipe({**recipe, "overwrite_output_dir": True}, source=label))
        marker.write_text(json.dumps(normalized, indent=2), encoding="utf-8")
    results = output_dir / "train_results.json"
    seconds = (
        json.loads(results.read_text(encoding="utf-8")).get("train_runtime", math.nan) if results.is_file() else 0
    )
    return RunOutput(output_dir, float(seconds))


def _run_recipe(study: Study, base_path: str, method: Method, data: dict[str, Any], output_dir: Path) -> dict:
    recipe = {**study.finetune, **method.recipe, **data}
    recipe.update(model_type=study.model_type, model_name_or_path=base_path, output_dir=str(output_dir))
    recipe.setdefault("report_to", "none")
    if study.task == "question_answering":
        recipe.setdefault("training_phase", "finetune")
    return recipe


def train_base(study: Study, progress: str) -> str:
    """Train the base recipe(s) on corpus A, each phase from the one before; the last phase's folder."""
    assert study.base is not None
    previous: str | None = None
    for index, phase in enumerate(study.base):
        name = "base" if len(study.base) == 1 else f"base-{index + 1}-{phase.get('training_phase', 'phase')}"
        recipe = {**phase, "output_dir": str(study.output_dir / name)}
        if previous is not None:
            recipe["model_name_or_path"] = previous
        recipe.setdefault("report_to", "none")
        previous = str(_train(recipe, f"{progress} ({name})").path)
    assert previous is not None
    return previous


def _eval_args(study: Study, name: str) -> LmforgeTrainingArguments:
    _, _, finetune_args = parse_recipe(
        {**study.finetune, "model_type": study.model_type, "output_dir": str(study.output_dir / "eval" / name)}
    )
    return LmforgeTrainingArguments(
        output_dir=str(study.output_dir / "eval" / name),
        per_device_eval_batch_size=finetune_args.per_device_eval_batch_size,
        use_cpu=finetune_args.use_cpu,
        disable_tqdm=finetune_args.disable_tqdm,
        dataloader_num_workers=0,
        report_to="none",
        seed=finetune_args.seed,
    )


def evaluate_loss(model: Any, tokenizer: PreTrainedTokenizerBase, blocks: Dataset, args: Any) -> float:
    """Mean token loss of `model` on `blocks` through `Trainer.evaluate` (perplexity = exp of it)."""
    trainer = LmforgeTrainer(
        model=model,
        args=args,
        eval_dataset=blocks,
        data_collator=DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=False),
    )
    return float(trainer.evaluate()["eval_loss"])


class StudyTask:
    """What the study does with the models of one training task: the data it scores, the score, the inputs the router
    learns from and is scored on. The causal one (`CausalTask`) and the question-answering one (`QuestionTask`)."""

    metric = "loss"

    def __init__(self, study: Study, tokenizer: PreTrainedTokenizerBase) -> None:
        self.study = study
        self.tokenizer = tokenizer

    def load(self, path: str) -> Any:
        raise NotImplementedError

    def eval_set(self, data: dict[str, Any]) -> Dataset:
        """What the metric is computed on, for a corpus."""
        raise NotImplementedError

    def score(self, model: Any, rows: Dataset, label: str) -> dict[str, float]:
        """{metric: value, ...} of `model` on `rows` (the metric first)."""
        raise NotImplementedError

    def router_inputs(self, data: dict[str, Any]) -> Dataset:
        """Rows with `input_ids` the router learns from (train inputs of the corpus)."""
        raise NotImplementedError

    def held_out_inputs(self, data: dict[str, Any]) -> Dataset:
        """Rows with `input_ids` the router has not seen, to score it on."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class CausalTask(StudyTask):
    """Perplexity on held-out blocks of `block_size` tokens."""

    metric = "loss"

    def __init__(self, study: Study, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(study, tokenizer)
        _, data_args, _ = parse_recipe(
            {**study.finetune, "model_type": study.model_type, "output_dir": str(study.output_dir)}
        )
        self.block_size, self.limit = data_args.block_size, data_args.max_eval_samples
        self._cache: dict[str, Any] = {}

    def blocks(self, data: dict[str, Any], split: str, limit: int | None = None) -> Dataset:
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = tokenize_and_group(
                load_raw_text(CausalLMDataArguments(**data)), self.tokenizer, self.block_size
            )
        return limit_rows(self._cache[key][split], limit)

    def load(self, path: str) -> Any:
        return AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)

    def eval_set(self, data: dict[str, Any]) -> Dataset:
        return self.blocks(data, "validation", self.limit)

    def score(self, model: Any, rows: Dataset, label: str) -> dict[str, float]:
        return {"loss": evaluate_loss(model, self.tokenizer, rows, _eval_args(self.study, label))}

    def router_inputs(self, data: dict[str, Any]) -> Dataset:
        blocks = self.blocks(data, "train")
        return blocks.shuffle(seed=0).select(range(min(ROUTER_ROWS_PER_CORPUS, blocks.num_rows)))

    def held_out_inputs(self, data: dict[str, Any]) -> Dataset:
        return self.eval_set(data)

    def describe(self) -> str:
        limit = "all" if self.limit is None else f"at most {self.limit}"
        return (
            f"perplexity = exp of the mean token loss from `Trainer.evaluate` over {limit} held-out blocks of "
            f"{self.block_size} tokens of each corpus"
        )


class QuestionTask(StudyTask):
    """Exact match and F1 of greedy answers to the questions the model learned (its corpus's train pairs)."""

    metric = "exact_match"

    def __init__(self, study: Study, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(study, tokenizer)
        self._cache: dict[str, Any] = {}

    def _args(self, data: dict[str, Any]) -> tuple[Any, Any]:
        recipe = {
            **self.study.finetune,
            **data,
            "model_type": self.study.model_type,
            "output_dir": str(self.study.output_dir),
        }
        _, data_args, training_args = parse_recipe(recipe, source="study data")
        return data_args, training_args

    def pairs(self, data: dict[str, Any]) -> tuple[Dataset, Dataset]:
        """(the learned pairs: the first max_train_samples train pairs, the other train pairs of their articles)."""
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in self._cache:
            data_args, _ = self._args(data)
            loaded = load_question_answer_pairs(data_args)
            train = loaded["train"]
            learned = limit_rows(train, data_args.max_train_samples)
            titles = set(learned["title"])
            rest = train.select(list(range(learned.num_rows, train.num_rows)))  # (empty when all were learned)
            rest = rest.filter(lambda row: row["title"] in titles)
            if rest.num_rows == 0:  # every question of these articles was learned: other articles then
                rest = loaded["validation"]
            self._cache[key] = (learned, limit_rows(rest.shuffle(seed=0), ROUTER_ROWS_PER_CORPUS))
        return self._cache[key]

    def load(self, path: str) -> Any:
        return AutoModelForSeq2SeqLM.from_pretrained(path, use_safetensors=True)

    def eval_set(self, data: dict[str, Any]) -> Dataset:
        learned, _ = self.pairs(data)
        data_args, _ = self._args(data)
        return limit_rows(learned, data_args.max_eval_samples)

    def score(self, model: Any, rows: Dataset, label: str) -> dict[str, float]:
        data_args, training_args = self._args({})
        context = model.config.max_position_embeddings
        model.eval()
        predictions = generate_answers(
            model,
            self.tokenizer,
            list(rows["source"]),
            data_args.max_source_length or context,
            data_args.max_target_length or context,
            training_args.per_device_eval_batch_size,
            show_progress=False,
        )
        scores = answer_scores(predictions, [list(golds) for golds in rows["answers"]])
        return {"exact_match": scores["exact_match"], "f1": scores["f1"]}

    def _tokenized(self, rows: Dataset) -> Dataset:
        return Dataset.from_dict({"input_ids": self.tokenizer(list(rows["source"]), truncation=True)["input_ids"]})

    def router_inputs(self, data: dict[str, Any]) -> Dataset:
        learned, _ = self.pairs(data)
        return self._tokenized(limit_rows(learned.shuffle(seed=0), ROUTER_ROWS_PER_CORPUS))

    def held_out_inputs(self, data: dict[str, Any]) -> Dataset:
        _, rest = self.pairs(data)
        return self._tokenized(rest)

    def describe(self) -> str:
        return (
            "exact match and F1 (0-100, SQuAD normalisation) of the greedy answers to the questions each model "
            "learned: A's and B's train pairs (the first max_train_samples of each corpus), so A after/before says "
            "what is still known"
        )


STUDY_TASKS: dict[str, type[StudyTask]] = {"causal_lm": CausalTask, "question_answering": QuestionTask}


def _adapter_parameters(model: torch.nn.Module) -> int:
    """Parameters an adapter adds: LoRA matrices and trained copies of whole modules (`modules_to_save`)."""
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n or ".modules_to_save." in n)


def train_router(
    model: Any,
    inputs_per_adapter: dict[str, Dataset],
    router_args: dict[str, Any],
    output_dir: Path,
    vocab_size: int | None = None,
    model_type: str | None = None,
) -> tuple[AdapterRouter, float]:
    """The router of a routed method, trained by `AdapterRouter.fit` on the same number of train inputs of each
    corpus (over the bag of tokens too, with `vocab_size`); returns it and its training seconds."""
    defaults = {"max_steps": 100, "learning_rate": 1e-2, "per_device_train_batch_size": 32, "report_to": "none"}
    settings = {k: v for k, v in router_args.items() if k != "features"}
    recipe = {**defaults, **settings, "output_dir": str(output_dir), "save_strategy": "no", "eval_strategy": "no"}
    if model_type is not None:
        recipe["model_type"] = model_type
    _, _, args = parse_recipe(recipe, source="router")
    per_corpus = min(rows.num_rows for rows in inputs_per_adapter.values())
    inputs = {name: rows.shuffle(seed=0).select(range(per_corpus)) for name, rows in inputs_per_adapter.items()}
    return AdapterRouter.fit(model, inputs, args, vocab_size=vocab_size)


def routing_accuracy(model: RoutedAdapterModel, rows: Dataset, expected: str) -> float:
    """The share of `rows` (held-out inputs) sent to the adapter `expected`."""
    routes = []
    for start in range(0, rows.num_rows, 64):
        routes += model.route(*pad_rows(rows, start, 64))
    return sum(r == expected for r in routes) / max(len(routes), 1)


def run_study(study: Study) -> list[MethodResult]:
    """Train the base (unless given), fine-tune it on each corpus B by each method, score everything, write results."""
    study.output_dir.mkdir(parents=True, exist_ok=True)
    _, _, finetune_args = parse_recipe(
        {**study.finetune, "model_type": study.model_type, "output_dir": str(study.output_dir)}
    )
    setup_logging(finetune_args)
    started = time.monotonic()
    steps = 1 + len(study.pairings) * len(study.methods)
    step = 0

    def progress(message: str) -> str:
        nonlocal step
        step += 1
        return f"[{step}/{steps}, {time.monotonic() - started:.0f}s] {message}"

    if study.base_model_path:
        base_path = study.base_model_path
        logger.info(progress(f"base model: {base_path}"))
    else:
        base_path = train_base(study, progress("base model on corpus A"))
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    task = STUDY_TASKS[study.task](study, tokenizer)
    eval_a = task.eval_set(study.corpus_a)
    base_model = task.load(base_path)
    a_base = task.score(base_model, eval_a, "base-a")
    base_trainable, base_total = count_parameters(base_model)
    logger.info("Base model on corpus A (%d rows): %s", len(eval_a), _scores_text(a_base))

    results: list[MethodResult] = []
    adapter_a: dict[str, RunOutput] = {}  # routed method name -> its corpus-A adapter (shared by every pairing)
    for pairing in study.pairings:
        eval_b = task.eval_set(pairing.data)
        b_base = task.score(base_model, eval_b, f"{pairing.name}-base")
        logger.info("Base model on %s (%d rows): %s", pairing.name, len(eval_b), _scores_text(b_base))
        trained: dict[str, RunOutput] = {}  # json of the run recipe -> its run, to reuse an identical adapter
        for method in study.methods:
            label = progress(f"{pairing.name} / {method.name} ({method.kind})")
            out = study.output_dir / pairing.name / method.name
            recipe = _run_recipe(study, base_path, method, pairing.data, out)
            key = json.dumps({k: v for k, v in recipe.items() if k != "output_dir"}, sort_keys=True, default=str)
            if method.kind == "routed" and key in trained:
                run_b = trained[key]
                logger.info("%s: the corpus-B adapter is the one of %s", label, run_b.path)
            else:
                run_b = _train(recipe, label if method.kind != "routed" else f"{label}, adapter for {pairing.name}")
            trained[key] = run_b
            routing: dict[str, float | None] = {}
            if method.kind == "full":
                model: Any = task.load(str(run_b.path))
                trainable, total = count_parameters(model)
                seconds = run_b.train_seconds
            elif method.kind == "lora":
                from peft import PeftModel

                model = PeftModel.from_pretrained(task.load(base_path), str(run_b.path))
                trainable, total = _adapter_parameters(model), base_total
                seconds = run_b.train_seconds
            else:
                if method.name not in adapter_a:
                    recipe_a = _run_recipe(
                        study, base_path, method, study.corpus_a, study.output_dir / f"{method.name}-{ADAPTER_A}"
                    )
                    adapter_a[method.name] = _train(recipe_a, f"{label}, adapter for corpus A")
                model, seconds, routing = _routed_model(
                    study, task, base_path, method, pairing, adapter_a[method.name], run_b
                )
                trainable = _adapter_parameters(model.peft_model) + count_parameters(model.router)[0]
                total = base_total + trainable
            a_scores = task.score(model, eval_a, f"{pairing.name}-{method.name}-a")
            b_scores = task.score(model, eval_b, f"{pairing.name}-{method.name}-b")
            metric = task.metric
            results.append(
                MethodResult(
                    pairing=pairing.name,
                    method=method.name,
                    kind=method.kind,
                    metric=metric,
                    a_score=a_scores[metric],
                    b_score=b_scores[metric],
                    a_base_score=a_base[metric],
                    b_base_score=b_base[metric],
                    trainable_parameters=trainable,
                    total_parameters=total,
                    train_seconds=seconds,
                    output=str(out),
                    routing_accuracy=routing.get("both"),
                    routing_accuracy_a=routing.get("a"),
                    routing_accuracy_b=routing.get("b"),
                    extra=_extra(a_scores, b_scores, a_base, b_base, metric),
                )
            )
            logger.info(
                "%s / %s: A %s -> %s, B %s -> %s",
                pairing.name,
                method.name,
                _scores_text(a_base),
                _scores_text(a_scores),
                _scores_text(b_base),
                _scores_text(b_scores),
            )
            write_results(study, task, results, base_total, base_trainable)
    write_results(study, task, results, base_total, base_trainable, final=True)
    logger.info("Study done in %.0fs: %s", time.monotonic() - started, study.output_dir / "forgetting.md")
    return results


def _scores_text(scores: dict[str, float]) -> str:
    return ", ".join(
        f"perplexity {math.exp(v):.2f}" if k == "loss" else f"{k.replace('_', ' ')} {v:.2f}" for k, v in scores.items()
    )


def _extra(
    a: dict[str, float], b: dict[str, float], a_base: dict[str, float], b_base: dict[str, float], metric: str
) -> dict[str, float]:
    """The scores besides the metric (e.g. F1), for A and B, before and after."""
    extra = {}
    for name in a:
        if name != metric:
            extra.update({f"a_{name}": a[name], f"b_{name}": b[name]})
            extra.update({f"a_base_{name}": a_base[name], f"b_base_{name}": b_base[name]})
    return extra


def study_block_settings(study: Study) -> tuple[int, int | None]:
    """The block size and number of held-out blocks every causal model is scored on (the finetune section's)."""
    _, data_args, _ = parse_recipe(
        {**study.finetune, "model_type": study.model_type, "output_dir": str(study.output_dir)}
    )
    return data_args.block_size, data_args.max_eval_samples


def _routed_model(
    study: Study,
    task: StudyTask,
    base_path: str,
    method: Method,
    pairing: Pairing,
    run_a: RunOutput,
    run_b: RunOutput,
) -> tuple[RoutedAdapterModel, float, dict[str, float | None]]:
    """Both adapters on one base, the router trained on A and B train inputs; (model, seconds, routing accuracy on
    held-out inputs of A, of B, and of both)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(task.load(base_path), str(run_a.path), adapter_name=ADAPTER_A)
    peft_model.load_adapter(str(run_b.path), adapter_name=pairing.name)
    inputs = {ADAPTER_A: task.router_inputs(study.corpus_a), pairing.name: task.router_inputs(pairing.data)}
    out = study.output_dir / pairing.name / method.name
    vocab_size = len(task.tokenizer) if method.router.get("features") == "embedding+tokens" else None
    router, router_seconds = train_router(
        peft_model, inputs, method.router, out / "router-trainer", vocab_size, study.model_type
    )
    model = RoutedAdapterModel(peft_model, router).eval()
    model.save_pretrained(out / "routed")
    held_a, held_b = task.held_out_inputs(study.corpus_a), task.held_out_inputs(pairing.data)
    accuracy_a = routing_accuracy(model, held_a, ADAPTER_A)
    accuracy_b = routing_accuracy(model, held_b, pairing.name)
    both = (accuracy_a * held_a.num_rows + accuracy_b * held_b.num_rows) / max(held_a.num_rows + held_b.num_rows, 1)
    logger.info(
        "Router of %s / %s: %.1f%% of held-out A inputs and %.1f%% of held-out B inputs to their own adapter",
        pairing.name,
        method.name,
        100 * accuracy_a,
        100 * accuracy_b,
    )
    seconds = run_a.train_seconds + run_b.train_seconds + router_seconds
    return model, seconds, {"a": accuracy_a, "b": accuracy_b, "both": both}


# --------------------------------------------------------------------------------------------------------------------
# Results: JSON, markdown table, plot, model-card section


def _gain_share(result: MethodResult, full: MethodResult | None) -> float | None:
    """The share of full fine-tuning's gain on B (drop of B log-perplexity, or rise of the B score) this method
    reaches."""
    if full is None or full.b_gain <= 0:
        return None
    return result.b_gain / full.b_gain


def _full_of(results: list[MethodResult], pairing: str) -> MethodResult | None:
    return next((r for r in results if r.pairing == pairing and r.kind == "full"), None)


def _metric_name(result: MethodResult) -> str:
    return "ppl" if result.lower_is_better else "EM"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def results_table(results: list[MethodResult], base_total: int) -> str:
    """One markdown table per pairing."""
    sections = []
    for pairing in dict.fromkeys(r.pairing for r in results):
        rows = [r for r in results if r.pairing == pairing]
        full = _full_of(results, pairing)
        first = rows[0]
        name = _metric_name(first)
        f1 = "a_f1" in first.extra
        lines = [
            f"**{pairing}** (base: {name} {first.shown(first.a_base_score):.2f} on A, "
            f"{first.shown(first.b_base_score):.2f} on B"
            + (f"; F1 {first.extra['a_base_f1']:.2f} on A, {first.extra['b_base_f1']:.2f} on B" if f1 else "")
            + ")",
            "",
            f"| method | trainable params | train time (s) | A {name} after | A retained | B {name} after "
            + ("| A / B F1 after " if f1 else "")
            + "| share of full FT's B gain | router right on held-out A / B |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if f1 else ""),
        ]
        for r in rows:
            routing = (
                f"{_percent(r.routing_accuracy_a)} / {_percent(r.routing_accuracy_b)}"
                if r.routing_accuracy is not None
                else "-"
            )
            lines.append(
                f"| {r.method} | {r.trainable_parameters:,} ({100 * r.trainable_parameters / base_total:.1f}%) "
                f"| {r.train_seconds:.0f} | {r.shown(r.a_score):.2f} | {100 * r.a_retained:.1f}% "
                f"| {r.shown(r.b_score):.2f} "
                + (f"| {r.extra['a_f1']:.2f} / {r.extra['b_f1']:.2f} " if f1 else "")
                + f"| {_percent(_gain_share(r, full))} | {routing} |"
            )
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def plot_results(results: list[MethodResult], path: Path) -> None:
    """Per pairing: the metric on A against the metric on B, one point per method and one for the base."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LmforgeError("the forgetting plot needs matplotlib: pip install 'lmforge[study]'") from None
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    pairings = list(dict.fromkeys(r.pairing for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(pairings), figsize=(5.5 * len(pairings), 4.5), squeeze=False)
    for ax, pairing in zip(axes[0], pairings, strict=True):
        rows = [r for r in results if r.pairing == pairing]
        base = rows[0]
        ax.scatter(
            [base.shown(base.b_base_score)],
            [base.shown(base.a_base_score)],
            marker="*",
            s=180,
            c="black",
            label="base",
        )
        for r in rows:
            ax.scatter([r.shown(r.b_score)], [r.shown(r.a_score)], s=60, color=colors[r.method], label=r.method)
        if base.lower_is_better:
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("perplexity on B (lower = learned B)")
            ax.set_ylabel("perplexity on A (lower = kept A)")
        else:
            ax.set_xlabel("exact match on B (higher = learned B)")
            ax.set_ylabel("exact match on A (higher = kept A)")
        ax.set_title(f"A -> {pairing}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(
    study: Study,
    task: StudyTask,
    results: list[MethodResult],
    base_total: int,
    base_trainable: int,
    final: bool = False,
) -> None:
    """forgetting.json after every method (nothing is lost if the study stops); table, plot and section at the end."""
    out = study.output_dir
    rows = [
        {**asdict(r), "a_retained": r.a_retained, "share_of_full_b_gain": _gain_share(r, _full_of(results, r.pairing))}
        for r in results
    ]
    (out / "forgetting.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if not final or not results:
        return
    table = results_table(results, base_total)
    (out / "forgetting_table.md").write_text(table, encoding="utf-8")
    plot_results(results, out / "forgetting.png")
    corpus_a = (
        study.corpus_a.get("train_file") or study.corpus_a.get("dataset_name") or "the embedded Shakespeare corpus"
    )
    if study.corpus_a.get("articles"):
        corpus_a += f" (articles {', '.join(map(str, study.corpus_a['articles']))})"
    section = f"""## Catastrophic forgetting

The base model ({study.model_type}, {base_total:,} parameters), trained on corpus A ({corpus_a}), was fine-tuned on
each corpus B below by every method, then scored on A and on B: {task.describe()}.

- **A retained**: {
        "perplexity on A before over after" if task.metric == "loss" else "exact match on A after over before"
    }
  (100% = nothing forgotten).
- **share of full FT's B gain**: what this method learned of B ({
        "drop of B log-perplexity" if task.metric == "loss" else "rise of B exact match"
    }) as a share of what full fine-tuning learned.
- **routed**: one adapter per corpus on the same base and a learned router (a layer norm and linear layer over the mean
  token embedding, plus a linear layer over the bag of tokens) that picks the adapter of each input; its parameters are
  both adapters and the router, its time their three trainings. **router right on held-out A / B**: the share of
  inputs of each corpus that it never saw in training sent to that corpus's adapter (without it, keeping A says
  nothing).
- Times are training wall-clock seconds (`train_runtime`) on the machine that ran the study.

{table}
![{"Perplexity" if task.metric == "loss" else "Exact match"} on A against B, per method](forgetting.png)
"""
    (out / "forgetting.md").write_text(section, encoding="utf-8")


__all__ = [
    "CausalTask",
    "MethodResult",
    "QuestionTask",
    "Study",
    "StudyTask",
    "evaluate_loss",
    "load_study",
    "parse_study",
    "plot_results",
    "results_table",
    "run_study",
    "train_router",
]
