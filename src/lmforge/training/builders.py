"""What a training run needs for each architecture: tokenizer, model, datasets and collator.

A builder takes the parsed recipe and returns a `TrainingSetup`; `BUILDERS` maps each `model_type` to its builder.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

from ..data import iter_texts, load_embedded_corpus, load_hub_dataset, load_text_files, tokenize_and_group
from ..errors import LmforgeError
from ..models import AksisTokenizer, CharTokenizer
from .arguments import DataArguments, LmforgeTrainingArguments, ModelArguments

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


Builder = Callable[[ModelArguments, DataArguments, LmforgeTrainingArguments], TrainingSetup]
BUILDERS: dict[str, Builder] = {}
# model_type -> trains a new tokenizer from an iterator of text batches
TOKENIZER_TRAINERS: dict[str, Callable[[DataArguments, ModelArguments, DatasetDict], PreTrainedTokenizerBase]] = {}


def register_builder(*model_types: str) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        for model_type in model_types:
            BUILDERS[model_type] = builder
        return builder

    return decorate


def one_line(err: BaseException) -> str:
    """The most useful single line of an exception message (config validation errors span two lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def load_raw_text(data_args: DataArguments) -> DatasetDict:
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


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
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
    values.update(overrides)
    try:
        return AutoConfig.for_model(model_type, **values)
    except ValueError as err:
        if "Unrecognized model" in str(err) or "model_type" in str(err):
            raise LmforgeError(f"unknown model_type '{model_type}'; choose one of {sorted(BUILDERS)}") from None
        raise LmforgeError(f"config value does not fit: {one_line(err)}") from None
    except Exception as err:
        # huggingface_hub's strict dataclasses name the field on the first line: keep it ("hidden_dropout: ...")
        head = str(err).split("\n", 1)[0]
        field = head.split("'")[1] + ": " if head.startswith("Validation error for field '") else ""
        raise LmforgeError(f"config value does not fit: {field}{one_line(err)}") from None


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    return dataset.select(range(min(limit, dataset.num_rows))) if limit is not None else dataset


def train_aksis_tokenizer(
    data_args: DataArguments, model_args: ModelArguments, raw: DatasetDict
) -> PreTrainedTokenizerBase:
    logger.info("Training a byte-level BPE tokenizer of %d tokens on the train split", model_args.tokenizer_vocab_size)
    texts = (text for batch in iter_texts(raw) for text in batch)
    return AksisTokenizer.train_from_texts(texts, vocab_size=model_args.tokenizer_vocab_size)


TOKENIZER_TRAINERS["aksis"] = train_aksis_tokenizer


def build_char_tokenizer(
    data_args: DataArguments, model_args: ModelArguments, raw: DatasetDict
) -> PreTrainedTokenizerBase:
    """One token per character of the train split; characters met only in validation become `<unk>`.

    The vocabulary comes from the train split alone (nothing is learned from held-out text); on Tiny Shakespeare
    the first 90% already holds all 65 characters, so the validation loss matches a whole-file vocabulary.
    """
    tokenizer = CharTokenizer.from_text(text for batch in iter_texts(raw) for text in batch)
    logger.info("Built a character vocabulary of %d tokens from the train split", len(tokenizer))
    return tokenizer


TOKENIZER_TRAINERS["char_transformer"] = build_char_tokenizer


@register_builder("aksis", "char_transformer")
def build_causal_lm(
    model_args: ModelArguments, data_args: DataArguments, training_args: LmforgeTrainingArguments
) -> TrainingSetup:
    """Causal language models (Aksis, CharTransformer): blocks of `block_size` tokens, next-token loss."""
    raw = load_raw_text(data_args)
    if model_args.tokenizer_name_or_path or model_args.model_name_or_path:
        tokenizer = load_tokenizer(model_args.tokenizer_name_or_path or str(model_args.model_name_or_path))
    else:
        tokenizer = TOKENIZER_TRAINERS[model_args.model_type](data_args, model_args, raw)

    attn = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if model_args.model_name_or_path:
        try:
            model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, use_safetensors=True, **attn)
        except Exception as err:
            raise LmforgeError(
                f"could not load a model from '{model_args.model_name_or_path}': {one_line(err)}"
            ) from None
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
    return TrainingSetup(
        model=model,
        tokenizer=tokenizer,
        train_dataset=_limit(blocks["train"], data_args.max_train_samples),
        eval_dataset=_limit(blocks["validation"], data_args.max_eval_samples),
        # Full blocks with their labels: stacking them is all a batch needs (no padding, no attention mask).
        data_collator=default_data_collator,
    )


__all__ = [
    "BUILDERS",
    "TOKENIZER_TRAINERS",
    "TrainingSetup",
    "build_causal_lm",
    "build_config",
    "load_raw_text",
    "load_tokenizer",
    "one_line",
    "register_builder",
]
