"""What a training run hands to the Trainer (`TrainingSetup`), the helpers every task uses, and the `causal_lm` task.

A task's builder takes the parsed recipe and returns a `TrainingSetup` (see `tasks.py`). The causal-LM builder
serves every decoder-only architecture: a fresh model gets a new tokenizer from its spec's `train_tokenizer` and a
config from `AutoConfig.for_model`, a saved one is loaded with `AutoModelForCausalLM`.
"""

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    default_data_collator,
)

from ..data import (
    TokenWindows,
    iter_texts,
    load_embedded_corpus,
    load_hub_dataset,
    load_text_files,
    tokenize_and_group,
)
from ..errors import LmforgeError, one_line
from ..loading import load_pretrained
from ..models import SPECS, ModelSpec, get_spec
from .arguments import CausalLMDataArguments, LmforgeTrainingArguments, ModelArguments
from .tasks import TASKS, get_task, register_task

logger = logging.getLogger(__name__)


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Run the block with `model` in eval mode (no dropout), then put back the mode it was in: for `post_train` hooks."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class TrainingSetup:
    """Everything a run hands to the Trainer, plus optional task-specific hooks."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    train_dataset: Dataset
    eval_dataset: Dataset
    data_collator: Callable[..., Any]
    # Passed to the Trainer as is (e.g. EM/F1 or ROUGE from predictions).
    compute_metrics: Callable[..., dict[str, float]] | None = None
    # Called after training and the final evaluation on the main process, with (trainer, setup); the metrics it
    # returns are added to the run's eval metrics and saved (e.g. generation-based scores against a baseline).
    post_train: Callable[[Any, "TrainingSetup"], dict[str, float]] | None = None


def load_raw_text(data_args: CausalLMDataArguments) -> DatasetDict:
    """The train/validation text: a Hub dataset, local files, or the embedded corpus when neither is given."""
    if data_args.dataset_name:
        return load_hub_dataset(
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_args.validation_split_percentage,
            data_args.text_column,
        )
    if data_args.train_file:
        return load_text_files(
            data_args.train_file,
            data_args.validation_file,
            data_args.validation_split_percentage,
            data_args.text_column,
        )
    return load_embedded_corpus(data_args.validation_split_percentage, data_args.max_documents)


def check_model_source(name_or_path: str) -> None:
    """A saved model a run starts from: a folder here must hold a saved model; a name that is no folder here must be
    a Hub id, which an offline machine cannot fetch. Either mistake is one sentence naming the fix, rather than what
    transformers says when it falls back to the Hub (a network error, or a missing tokenizer library)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "adapter_config.json", "tokenizer.json")):
            raise LmforgeError(f"'{name_or_path}' has no config.json; it is not a saved model folder")
        return
    if path.exists():
        raise LmforgeError(f"'{name_or_path}' is a file; give the folder of a saved model")
    from ..hub.push import hub_offline

    if hub_offline():
        raise LmforgeError(
            f"'{name_or_path}' is not a folder here, and the Hub is offline (HF_HUB_OFFLINE=1): train that model "
            "first (see the recipe's comments) or fix the path"
        )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    check_model_source(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:
        raise LmforgeError(f"could not load a tokenizer from '{name_or_path}': {one_line(err)}") from None


def build_config(model_type: str, overrides: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> Any:
    """A fresh config of `model_type` sized to the tokenizer; a value that does not fit is one sentence."""
    values: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    known = set(AutoConfig.for_model(model_type).to_dict()) if model_type in SPECS else set()
    unknown = sorted(key for key in overrides if known and key not in known)
    if unknown:
        close = [name for name in sorted(known) if name.startswith(unknown[0][:4])][:3]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise LmforgeError(f"config_overrides: unknown key '{unknown[0]}' for a {model_type} config{hint}")
    values.update(overrides)
    try:
        return AutoConfig.for_model(model_type, **values)
    except ValueError as err:
        if "Unrecognized model" in str(err) or "model_type" in str(err):
            raise LmforgeError(f"unknown model_type '{model_type}'; choose one of {sorted(SPECS)}") from None
        raise LmforgeError(f"config value does not fit: {one_line(err)}") from None
    except Exception as err:
        # huggingface_hub's strict dataclasses name the field on the first line: keep it ("hidden_dropout: ...")
        head = str(err).split("\n", 1)[0]
        field = head.split("'")[1] + ": " if head.startswith("Validation error for field '") else ""
        raise LmforgeError(f"config value does not fit: {field}{one_line(err)}") from None


def limit_rows(dataset: Dataset, limit: int | None) -> Dataset:
    """The first `limit` rows of `dataset` (all of them when `limit` is None): `max_train_samples` and the like."""
    return dataset.select(range(min(limit, dataset.num_rows))) if limit is not None else dataset


def train_tokenizer(spec: ModelSpec, texts: Iterator[str], vocab_size: int) -> PreTrainedTokenizerBase:
    """A new tokenizer for a fresh model of `spec`, from its `train_tokenizer`; `vocab_size` counts every token."""
    if spec.train_tokenizer is None:
        raise LmforgeError(
            f"{spec.model_type} has no tokenizer of its own to train; set tokenizer_name_or_path or model_name_or_path"
        )
    try:
        tokenizer = spec.train_tokenizer(texts, vocab_size)
    except ValueError as err:
        raise LmforgeError(f"tokenizer_vocab_size: {one_line(err)}") from None
    logger.info("Trained a %s of %d tokens on the train split", type(tokenizer).__name__, len(tokenizer))
    return tokenizer


@register_task("causal_lm", data_arguments=CausalLMDataArguments)
def build_causal_lm(
    model_args: ModelArguments, data_args: CausalLMDataArguments, training_args: LmforgeTrainingArguments
) -> TrainingSetup:
    """Causal language models (Aksis, CharTransformer): blocks of `block_size` tokens, next-token loss.

    A new tokenizer is trained on the train split alone (nothing is learned from held-out text): for CharTransformer,
    one token per character of it, and a character met only in validation becomes `<unk>`.
    """
    raw = load_raw_text(data_args)
    if model_args.tokenizer_name_or_path or model_args.model_name_or_path:
        tokenizer = load_tokenizer(model_args.tokenizer_name_or_path or str(model_args.model_name_or_path))
    else:
        texts = (text for batch in iter_texts(raw) for text in batch)
        tokenizer = train_tokenizer(get_spec(model_args.model_type), texts, model_args.tokenizer_vocab_size)

    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path:
        model = load_pretrained(AutoModelForCausalLM, model_args.model_name_or_path, "a model", **attn)
    else:
        overrides = dict(model_args.config_overrides or {})  # type: ignore[arg-type]
        config = build_config(model_args.model_type, overrides, tokenizer)
        model = AutoModelForCausalLM.from_config(config, **attn)
    context = model.config.max_position_embeddings
    if data_args.block_size > context:
        raise LmforgeError(
            f"block_size {data_args.block_size} is longer than the model's context ({context}); lower block_size"
        )
    tokenizer.model_max_length = context

    with training_args.main_process_first(desc="tokenizing"):
        blocks = tokenize_and_group(
            raw,
            tokenizer,
            data_args.block_size,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
            labels=True,
        )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "%s with %.2fM parameters; %d train and %d validation blocks of %d tokens",
        type(model).__name__,
        n_params / 1e6,
        blocks["train"].num_rows,
        blocks["validation"].num_rows,
        data_args.block_size,
    )
    train_blocks = limit_rows(blocks["train"], data_args.max_train_samples)
    train_dataset: Any = TokenWindows.from_blocks(train_blocks) if data_args.random_offsets else train_blocks
    return TrainingSetup(
        model=model,
        tokenizer=tokenizer,
        train_dataset=train_dataset,
        eval_dataset=limit_rows(blocks["validation"], data_args.max_eval_samples),
        # Full blocks with their labels: stacking them is all a batch needs (no padding, no attention mask).
        data_collator=default_data_collator,
    )


def __getattr__(name: str) -> Any:
    """Names of lmforge 0.1 that moved, kept for one release."""
    if name == "BUILDERS":  # model_type -> builder; now each spec names its task (`tasks.TASKS`)
        warnings.warn(
            "lmforge.training.BUILDERS is deprecated: a spec names its task (lmforge.models.get_spec(t).task) and "
            "lmforge.training.tasks.get_task(name).build is its builder",
            FutureWarning,
            stacklevel=2,
        )
        return {model_type: get_task(spec.task).build for model_type, spec in SPECS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_builder(*model_types: str) -> Callable[[Any], Any]:
    """Deprecated (lmforge 0.1): builders belong to tasks now; this makes `builder` the builder of the task of each
    of `model_types` (`tasks.register_task` registers a new task)."""
    warnings.warn(
        "lmforge.training.register_builder is deprecated: use lmforge.training.tasks.register_task and name the task "
        "in the model's spec",
        FutureWarning,
        stacklevel=2,
    )

    def decorate(builder: Any) -> Any:
        for model_type in model_types:
            task = get_task(get_spec(model_type).task)
            TASKS[task.name] = replace(task, build=builder)
        return builder

    return decorate


__all__ = [
    "TrainingSetup",
    "build_causal_lm",
    "build_config",
    "eval_mode",
    "limit_rows",
    "load_raw_text",
    "load_tokenizer",
    "register_builder",
    "train_tokenizer",
]
