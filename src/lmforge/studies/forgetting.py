"""Catastrophic forgetting: what a model trained on corpus A keeps of A after it is fine-tuned on corpus B.

A study beside the library (`lmforge forgetting RECIPE.yaml` runs it): it only uses lmforge's public training API
(`run_training` on composed recipes, `LmforgeTrainer.evaluate`) and the routed mixture of `routing.py`.

A study recipe (see `recipes/aksis/forgetting.yaml`) is a YAML mapping with these keys:

- `output_dir`: where every run and the results go.
- `base`: an ordinary training recipe for corpus A (its data keys say which corpus: none = the embedded Shakespeare
  corpus); trained first, into `output_dir/base`. Or `base_model_path`: a saved model trained on A (then `base` may
  hold only A's data keys; without `base` they are read from the model's `recipe.yaml`).
- `finetune`: recipe keys shared by every fine-tuning run (steps, batch size, block_size, max_eval_samples...).
- `methods`: method name -> recipe keys of that method (e.g. `learning_rate`). A method with a `peft:` section is
  LoRA; one that also has `router:` (TrainingArguments keys of the router's training) is a routed mixture: one LoRA
  adapter for corpus A and one for corpus B on the same base, and a router that picks the adapter of each input.
  A method with neither is full fine-tuning.
- `pairings`: a list of corpora B, each `name` plus data keys (`train_file` trains, `validation_file` evaluates;
  paths are relative to the folder the study runs from).

Every training is `run_training` (the HF Trainer) on a composed recipe; a run whose folder already holds the same
finished run is reused, so an interrupted study continues where it stopped. The base and every fine-tuned model are
scored with `Trainer.evaluate` on the held-out blocks of A and of B (perplexity = exp of the mean token loss). The
results go to `forgetting.json`, `forgetting_table.md`, `forgetting.png` and `forgetting.md` (a model-card section).
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
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
)

from ..adapters import count_parameters
from ..data import tokenize_and_group
from ..errors import LmforgeError
from ..models import SPECS
from ..training.arguments import CausalLMDataArguments, LmforgeTrainingArguments
from ..training.builders import limit_rows, load_raw_text
from ..training.recipe import apply_overrides, check_recipe, parse_recipe, read_recipe, resolve_model_type
from ..training.run import run_training, setup_logging
from ..training.trainer import LmforgeTrainer
from .routing import AdapterRouter, RoutedAdapterModel

logger = logging.getLogger("lmforge")

STUDY_KEYS = ("output_dir", "base", "base_model_path", "finetune", "methods", "pairings")
# The recipe keys that say where a corpus comes from (a pairing's keys, and corpus A's in the base recipe).
DATA_SOURCE_KEYS = (
    "dataset_name",
    "dataset_config_name",
    "train_file",
    "validation_file",
    "text_column",
    "validation_split_percentage",
    "max_documents",
)
CAUSAL_TASK = "causal_lm"  # the study fine-tunes language models of this training task
ADAPTER_A = "corpus_a"
# Train blocks per corpus the router learns from (balanced between A and B).
ROUTER_BLOCKS_PER_CORPUS = 1000
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
    base: dict[str, Any] | None
    base_model_path: str | None
    corpus_a: dict[str, Any]
    finetune: dict[str, Any]
    methods: list[Method]
    pairings: list[Pairing]


@dataclass
class MethodResult:
    pairing: str
    method: str
    kind: str
    a_loss: float
    b_loss: float
    a_base_loss: float
    b_base_loss: float
    trainable_parameters: int
    total_parameters: int
    train_seconds: float
    output: str
    routing_accuracy: float | None = None

    @property
    def a_perplexity(self) -> float:
        return math.exp(self.a_loss)

    @property
    def b_perplexity(self) -> float:
        return math.exp(self.b_loss)

    @property
    def a_ratio(self) -> float:
        """A perplexity after / before: 1.0 = nothing forgotten, 2.0 = perplexity on A doubled."""
        return math.exp(self.a_loss - self.a_base_loss)


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


def _study_model_type(base: dict[str, Any] | None, base_model_path: str | None) -> str:
    recipe = {**(base or {}), **({"model_name_or_path": base_model_path} if base_model_path else {})}
    model_type = resolve_model_type(recipe, "study recipe")
    if SPECS[model_type].task != CAUSAL_TASK:
        causal = sorted(k for k, spec in SPECS.items() if spec.task == CAUSAL_TASK)
        raise LmforgeError(
            f"the forgetting study needs a causal language model ({', '.join(causal)}), not {model_type}"
        )
    return model_type


def _corpus_a(base: dict[str, Any] | None, base_model_path: str | None) -> dict[str, Any]:
    """Corpus A's data keys: from `base`, else from the saved base model's recipe.yaml, else the embedded corpus."""
    if base is None and base_model_path and (Path(base_model_path) / "recipe.yaml").is_file():
        base = yaml.safe_load((Path(base_model_path) / "recipe.yaml").read_text(encoding="utf-8")) or {}
    return {k: v for k, v in (base or {}).items() if k in DATA_SOURCE_KEYS and v is not None}


def _method(name: str, value: Any) -> Method:
    recipe = _mapping(value, f"methods.{name}")
    router = recipe.pop("router", None)
    if router is not None and recipe.get("peft") is None:
        raise LmforgeError(f"methods.{name}: a routed method (router:) needs a peft: section for its adapters")
    kind = "routed" if router is not None else "lora" if recipe.get("peft") is not None else "full"
    check_recipe(recipe, f"methods.{name}")
    router_args = _mapping(router, f"methods.{name}.router")
    check_recipe(router_args, f"methods.{name}.router")
    return Method(name=name, kind=kind, recipe=recipe, router=router_args)


def _pairing(index: int, value: Any) -> Pairing:
    data = _mapping(value, f"pairings[{index}]")
    name = data.pop("name", None)
    if not name or not isinstance(name, str):
        raise LmforgeError(f"pairings[{index}] needs a name (used for its folder and in the table)")
    unknown = sorted(set(data) - set(DATA_SOURCE_KEYS))
    if unknown:
        raise LmforgeError(f"pairing {name}: unknown key '{unknown[0]}' (data keys: {', '.join(DATA_SOURCE_KEYS)})")
    if not data.get("train_file") and not data.get("dataset_name"):
        raise LmforgeError(f"pairing {name}: give corpus B as train_file (and validation_file) or dataset_name")
    _check_files(data, f"pairing {name}")
    return Pairing(name=name, data=data)


def parse_study(recipe: dict[str, Any], source: str = "study recipe") -> Study:
    """Check every key of a study recipe (and of the recipes inside it) before anything runs."""
    unknown = sorted(set(recipe) - set(STUDY_KEYS))
    if unknown:
        raise LmforgeError(f"{source}: unknown key '{unknown[0]}' (study keys: {', '.join(STUDY_KEYS)})")
    base_model_path = recipe.get("base_model_path")
    base = _mapping(recipe["base"], f"{source}: base") if recipe.get("base") is not None else None
    if base_model_path is None and base is None:
        raise LmforgeError(f"{source}: give base (a training recipe for corpus A) or base_model_path (a saved model)")
    if base_model_path is not None and not Path(str(base_model_path)).is_dir():
        raise LmforgeError(f"{source}: base_model_path not found: {base_model_path}")
    if base is not None:
        check_recipe(base, f"{source}: base")
    finetune = _mapping(recipe.get("finetune"), f"{source}: finetune")
    check_recipe(finetune, f"{source}: finetune")
    misplaced = sorted(set(finetune) & {*DATA_SOURCE_KEYS, "model_name_or_path", "peft", "output_dir"})
    if misplaced:
        raise LmforgeError(
            f"{source}: finetune must not set '{misplaced[0]}' (corpus B goes in pairings, peft in methods)"
        )
    methods = [_method(str(name), value) for name, value in _mapping(recipe.get("methods"), "methods").items()]
    if not methods:
        raise LmforgeError(f"{source}: methods is empty; name at least one (e.g. full: {{learning_rate: 3.0e-4}})")
    pairings_value = recipe.get("pairings")
    if not isinstance(pairings_value, list) or not pairings_value:
        raise LmforgeError(f"{source}: pairings must be a list of corpora B (name, train_file, validation_file)")
    pairings = [_pairing(i, value) for i, value in enumerate(pairings_value)]
    names = [p.name for p in pairings]
    if len(set(names)) != len(names):
        raise LmforgeError(f"{source}: pairing names must differ, got {names}")
    corpus_a = _corpus_a(base, base_model_path)
    _check_files(corpus_a, f"{source}: corpus A")
    return Study(
        output_dir=Path(str(recipe.get("output_dir") or "outputs/forgetting")),
        model_type=_study_model_type(base, base_model_path),
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
        run_training(*parse_recipe(recipe, source=label))
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
    return recipe


class Corpora:
    """The corpora of the study cut into blocks by the base model's tokenizer, each tokenized once."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, block_size: int) -> None:
        self.tokenizer = tokenizer
        self.block_size = block_size
        self._cache: dict[str, Any] = {}

    def blocks(self, data: dict[str, Any], split: str, limit: int | None = None) -> Dataset:
        key = json.dumps(data, sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = tokenize_and_group(
                load_raw_text(CausalLMDataArguments(**data)), self.tokenizer, self.block_size
            )
        blocks = self._cache[key][split]
        return limit_rows(blocks, limit)


def _eval_args(study: Study, name: str) -> LmforgeTrainingArguments:
    _, _, finetune_args = parse_recipe({**study.finetune, "output_dir": str(study.output_dir / "eval" / name)})
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


def _lora_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)


def train_router(
    model: Any, blocks_per_adapter: dict[str, Dataset], router_args: dict[str, Any], output_dir: Path
) -> tuple[AdapterRouter, float]:
    """The router of a routed method, trained by `AdapterRouter.fit` on (at most ROUTER_BLOCKS_PER_CORPUS) train
    blocks of each corpus; returns it and its training seconds."""
    defaults = {"max_steps": 100, "learning_rate": 1e-2, "per_device_train_batch_size": 32, "report_to": "none"}
    recipe = {**defaults, **router_args, "output_dir": str(output_dir), "save_strategy": "no", "eval_strategy": "no"}
    _, _, args = parse_recipe(recipe, source="router")
    per_corpus = min(ROUTER_BLOCKS_PER_CORPUS, *(b.num_rows for b in blocks_per_adapter.values()))
    inputs = {name: blocks.shuffle(seed=0).select(range(per_corpus)) for name, blocks in blocks_per_adapter.items()}
    return AdapterRouter.fit(model, inputs, args)


def routing_accuracy(model: RoutedAdapterModel, blocks: Dataset, expected: str) -> float:
    routes = []
    for start in range(0, blocks.num_rows, 64):
        routes += model.route(torch.tensor(blocks[start : start + 64]["input_ids"]))
    return sum(r == expected for r in routes) / max(len(routes), 1)


def run_study(study: Study) -> list[MethodResult]:
    """Train the base (unless given), fine-tune it on each corpus B by each method, score everything, write results."""
    study.output_dir.mkdir(parents=True, exist_ok=True)
    _, _, finetune_args = parse_recipe({**study.finetune, "output_dir": str(study.output_dir)})
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
        base_recipe = {**(study.base or {}), "output_dir": str(study.output_dir / "base")}
        base_recipe.setdefault("report_to", "none")
        base_path = str(_train(base_recipe, progress("base model on corpus A")).path)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    block_size, limit = study_block_settings(study)
    corpora = Corpora(tokenizer, block_size)
    eval_a = corpora.blocks(study.corpus_a, "validation", limit)
    base_model = AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True)
    a_base = evaluate_loss(base_model, tokenizer, eval_a, _eval_args(study, "base"))
    base_trainable, base_total = count_parameters(base_model)
    logger.info(
        "Base model: perplexity %.2f on corpus A (%d blocks of %d tokens)", math.exp(a_base), len(eval_a), block_size
    )

    results: list[MethodResult] = []
    adapter_a: dict[str, RunOutput] = {}  # routed method name -> its corpus-A adapter (shared by every pairing)
    for pairing in study.pairings:
        eval_b = corpora.blocks(pairing.data, "validation", limit)
        b_base = evaluate_loss(base_model, tokenizer, eval_b, _eval_args(study, f"{pairing.name}-base"))
        logger.info("Base model: perplexity %.2f on %s (%d blocks)", math.exp(b_base), pairing.name, len(eval_b))
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
            result_args: dict[str, Any] = {"pairing": pairing.name, "method": method.name, "kind": method.kind}
            args = _eval_args(study, f"{pairing.name}-{method.name}")
            if method.kind == "full":
                model: Any = AutoModelForCausalLM.from_pretrained(str(run_b.path), use_safetensors=True)
                trainable, total = count_parameters(model)
                seconds = run_b.train_seconds
                routing = None
            elif method.kind == "lora":
                from peft import PeftModel

                model = PeftModel.from_pretrained(
                    AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True), str(run_b.path)
                )
                trainable, total = _lora_parameters(model), base_total
                seconds = run_b.train_seconds
                routing = None
            else:
                if method.name not in adapter_a:
                    recipe_a = _run_recipe(
                        study, base_path, method, study.corpus_a, study.output_dir / f"{method.name}-{ADAPTER_A}"
                    )
                    adapter_a[method.name] = _train(recipe_a, f"{label}, adapter for corpus A")
                model, seconds, routing = _routed_model(
                    study, base_path, corpora, method, pairing, adapter_a[method.name], run_b, eval_a, eval_b
                )
                trainable = _lora_parameters(model.peft_model) + count_parameters(model.router)[0]
                total = base_total + trainable
            results.append(
                MethodResult(
                    **result_args,
                    a_loss=evaluate_loss(model, tokenizer, eval_a, args),
                    b_loss=evaluate_loss(model, tokenizer, eval_b, args),
                    a_base_loss=a_base,
                    b_base_loss=b_base,
                    trainable_parameters=trainable,
                    total_parameters=total,
                    train_seconds=seconds,
                    output=str(out),
                    routing_accuracy=routing,
                )
            )
            last = results[-1]
            logger.info(
                "%s / %s: perplexity A %.2f -> %.2f, B %.2f -> %.2f",
                pairing.name,
                method.name,
                math.exp(a_base),
                last.a_perplexity,
                math.exp(b_base),
                last.b_perplexity,
            )
            write_results(study, results, base_total, base_trainable)
    write_results(study, results, base_total, base_trainable, final=True)
    logger.info("Study done in %.0fs: %s", time.monotonic() - started, study.output_dir / "forgetting.md")
    return results


def study_block_settings(study: Study) -> tuple[int, int | None]:
    """The block size and number of held-out blocks every model is scored on (the finetune section's)."""
    _, data_args, _ = parse_recipe({**study.finetune, "output_dir": str(study.output_dir)})
    return data_args.block_size, data_args.max_eval_samples


def _routed_model(
    study: Study,
    base_path: str,
    corpora: Corpora,
    method: Method,
    pairing: Pairing,
    run_a: RunOutput,
    run_b: RunOutput,
    eval_a: Dataset,
    eval_b: Dataset,
) -> tuple[RoutedAdapterModel, float, float]:
    """Both adapters on one base, the router trained on A and B train blocks; (model, seconds, routing accuracy)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True), str(run_a.path), adapter_name=ADAPTER_A
    )
    peft_model.load_adapter(str(run_b.path), adapter_name=pairing.name)
    train_blocks = {
        ADAPTER_A: corpora.blocks(study.corpus_a, "train"),
        pairing.name: corpora.blocks(pairing.data, "train"),
    }
    out = study.output_dir / pairing.name / method.name
    router, router_seconds = train_router(peft_model, train_blocks, method.router, out / "router-trainer")
    model = RoutedAdapterModel(peft_model, router).eval()
    model.save_pretrained(out / "routed")
    n_a, n_b = len(eval_a), len(eval_b)
    accuracy = (
        routing_accuracy(model, eval_a, ADAPTER_A) * n_a + routing_accuracy(model, eval_b, pairing.name) * n_b
    ) / (n_a + n_b)
    logger.info(
        "Router of %s / %s: %.1f%% of held-out blocks to their own adapter", pairing.name, method.name, 100 * accuracy
    )
    return model, run_a.train_seconds + run_b.train_seconds + router_seconds, accuracy


# --------------------------------------------------------------------------------------------------------------------
# Results: JSON, markdown table, plot, model-card section


def _gain_share(result: MethodResult, full: MethodResult | None) -> float | None:
    """The share of full fine-tuning's drop in B log-perplexity (loss) that this method reaches."""
    if full is None or full.b_base_loss - full.b_loss <= 0:
        return None
    return (result.b_base_loss - result.b_loss) / (full.b_base_loss - full.b_loss)


def _full_of(results: list[MethodResult], pairing: str) -> MethodResult | None:
    return next((r for r in results if r.pairing == pairing and r.kind == "full"), None)


def results_table(results: list[MethodResult], base_total: int) -> str:
    """One markdown table per pairing."""
    sections = []
    for pairing in dict.fromkeys(r.pairing for r in results):
        rows = [r for r in results if r.pairing == pairing]
        full = _full_of(results, pairing)
        first = rows[0]
        lines = [
            f"**{pairing}** (base: perplexity {math.exp(first.a_base_loss):.2f} on A, "
            f"{math.exp(first.b_base_loss):.2f} on B)",
            "",
            "| method | trainable params | train time (s) | A ppl after | A after/before | A retained (before/after) "
            "| B ppl after | share of full FT's B gain |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            share = _gain_share(r, full)
            routed = f" (routing {100 * r.routing_accuracy:.0f}% right)" if r.routing_accuracy is not None else ""
            lines.append(
                f"| {r.method}{routed} | {r.trainable_parameters:,} ({100 * r.trainable_parameters / base_total:.1f}%) "
                f"| {r.train_seconds:.0f} | {r.a_perplexity:.2f} | {r.a_ratio:.3f} | {100 / r.a_ratio:.1f}% "
                f"| {r.b_perplexity:.2f} | {'-' if share is None else f'{100 * share:.0f}%'} |"
            )
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def plot_results(results: list[MethodResult], path: Path) -> None:
    """Per pairing: perplexity on A against perplexity on B, one point per method and one for the base."""
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
            [math.exp(base.b_base_loss)], [math.exp(base.a_base_loss)], marker="*", s=180, c="black", label="base"
        )
        for r in rows:
            ax.scatter([r.b_perplexity], [r.a_perplexity], s=60, color=colors[r.method], label=r.method)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("perplexity on B (lower = learned B)")
        ax.set_ylabel("perplexity on A (lower = kept A)")
        ax.set_title(f"A -> {pairing}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(
    study: Study, results: list[MethodResult], base_total: int, base_trainable: int, final: bool = False
) -> None:
    """forgetting.json after every method (nothing is lost if the study stops); table, plot and section at the end."""
    out = study.output_dir
    rows = [{**asdict(r), "a_perplexity": r.a_perplexity, "b_perplexity": r.b_perplexity} for r in results]
    (out / "forgetting.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if not final or not results:
        return
    table = results_table(results, base_total)
    (out / "forgetting_table.md").write_text(table, encoding="utf-8")
    plot_results(results, out / "forgetting.png")
    block_size, limit = study_block_settings(study)
    corpus_a = (
        study.corpus_a.get("train_file") or study.corpus_a.get("dataset_name") or "the embedded Shakespeare corpus"
    )
    section = f"""## Catastrophic forgetting

The base model ({study.model_type}, {base_total:,} parameters), trained on corpus A ({corpus_a}), was fine-tuned on
each corpus B below by every method, then scored on held-out text of A and of B: perplexity = exp of the mean token loss from
`Trainer.evaluate` over {"all" if limit is None else f"at most {limit}"} validation blocks of {block_size} tokens.

- **A after/before**: perplexity on A after fine-tuning over before; 1.00 = nothing forgotten. **A retained** is its
  inverse (100% = nothing forgotten).
- **share of full FT's B gain**: the drop of B log-perplexity this method reaches, as a share of full fine-tuning's.
- **routed**: one LoRA adapter per corpus on the same base and a learned router (layer norm + linear layer over the
  mean token embedding) that picks the adapter of each input; its parameters are both adapters and the router, its
  time their three trainings.
- Times are training wall-clock seconds (`train_runtime`) on the machine that ran the study.

{table}
![Perplexity on A against perplexity on B, per method](forgetting.png)
"""
    (out / "forgetting.md").write_text(section, encoding="utf-8")


__all__ = [
    "MethodResult",
    "Study",
    "evaluate_loss",
    "load_study",
    "parse_study",
    "plot_results",
    "results_table",
    "run_study",
    "train_router",
]
