"""One training run: recipe -> builder -> `Trainer.train()` -> evaluate -> save (safetensors) -> samples."""

import json
import logging
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from transformers import EarlyStoppingCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..errors import LmforgeError
from ..generation import generate_text
from .arguments import DataArguments, LmforgeTrainingArguments, ModelArguments
from .builders import BUILDERS, TrainingSetup
from .trainer import LmforgeTrainer, LogFileCallback

logger = logging.getLogger("lmforge")


def setup_logging(training_args: LmforgeTrainingArguments) -> None:
    """Readable INFO logs on the main process, warnings elsewhere; transformers and datasets follow."""
    level = logging.INFO if training_args.should_log else logging.WARNING
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(logging.WARNING)


def resolve_checkpoint(training_args: LmforgeTrainingArguments) -> str | None:
    """`resume_from_checkpoint: auto` means the latest complete checkpoint in output_dir (None if there is none)."""
    resume = training_args.resume_from_checkpoint
    if resume in (None, "", "false", "False"):
        return None
    if resume in ("auto", "true", "True", "latest"):
        if not Path(str(training_args.output_dir)).is_dir():
            return None
        last = get_last_checkpoint(str(training_args.output_dir))
        if last is None:
            logger.info("No checkpoint in %s yet: starting from scratch", training_args.output_dir)
        return last
    if not Path(resume).is_dir():
        raise LmforgeError(f"checkpoint to resume from not found: {resume}")
    return resume


def build_setup(
    model_args: ModelArguments, data_args: DataArguments, training_args: LmforgeTrainingArguments
) -> TrainingSetup:
    builder = BUILDERS.get(model_args.model_type)
    if builder is None:
        raise LmforgeError(f"unknown model_type '{model_args.model_type}'; choose one of {sorted(BUILDERS)}")
    return builder(model_args, data_args, training_args)


def build_callbacks(training_args: LmforgeTrainingArguments) -> list[Any]:
    callbacks: list[Any] = [LogFileCallback(Path(str(training_args.output_dir)) / "train.log")]
    if training_args.early_stopping_patience is not None:
        if not training_args.load_best_model_at_end:
            raise LmforgeError("early_stopping_patience needs load_best_model_at_end: true in the recipe")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    return callbacks


def write_run_files(
    output_dir: Path,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: LmforgeTrainingArguments,
    samples: dict[str, str],
) -> None:
    """The recipe as run (for the model card and for reproducing it) and the generated samples."""
    recipe = {**asdict(model_args), **asdict(data_args)}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    training = training_args.to_dict()
    defaults = LmforgeTrainingArguments(output_dir=training_args.output_dir).to_dict()
    recipe.update({k: v for k, v in training.items() if defaults.get(k) != v or k == "output_dir"})
    (output_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    if samples:
        (output_dir / "samples.json").write_text(json.dumps(samples, indent=2, ensure_ascii=False), encoding="utf-8")


def run_training(
    model_args: ModelArguments, data_args: DataArguments, training_args: LmforgeTrainingArguments
) -> dict[str, float]:
    """Train, evaluate and save; returns the final validation metrics (eval_loss, eval_perplexity, ...)."""
    setup_logging(training_args)
    set_seed(training_args.seed)
    setup = build_setup(model_args, data_args, training_args)
    trainer = LmforgeTrainer(
        model=setup.model,
        args=training_args,
        train_dataset=setup.train_dataset,
        eval_dataset=setup.eval_dataset,
        data_collator=setup.data_collator,
        processing_class=setup.tokenizer,
        compute_metrics=setup.compute_metrics,
        callbacks=build_callbacks(training_args),
    )
    checkpoint = resolve_checkpoint(training_args)
    output_dir = Path(str(training_args.output_dir))
    try:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
    except KeyboardInterrupt:
        # Never lose work: keep what was learned so far, next to the checkpoints.
        interrupted = output_dir / "interrupted"
        trainer.save_model(str(interrupted))
        raise LmforgeError(
            f"training interrupted at step {trainer.state.global_step}; the model so far is in {interrupted}, "
            "and resume_from_checkpoint: auto continues from the last checkpoint"
        ) from None
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    metrics = trainer.evaluate()
    if setup.post_train is not None and trainer.is_world_process_zero():
        metrics.update(setup.post_train(trainer, setup))
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)

    samples: dict[str, str] = {}
    if trainer.is_world_process_zero():
        model: Any = trainer.model
        model.eval()
        for prompt in training_args.sample_prompts or []:
            samples[prompt] = generate_text(
                model,
                setup.tokenizer,
                prompt,
                max_new_tokens=training_args.sample_max_new_tokens,
                do_sample=True,
                top_k=50,
                temperature=0.8,
                seed=training_args.seed,
            )
            logger.info("Sample for %r:\n%s%s", prompt, prompt, samples[prompt])
        write_run_files(output_dir, model_args, data_args, training_args, samples)
        logger.info(
            "Done: eval_loss %.4f, eval_perplexity %.2f; model saved in %s",
            metrics.get("eval_loss", math.nan),
            metrics.get("eval_perplexity", math.nan),
            output_dir,
        )
    return metrics


__all__ = ["build_setup", "resolve_checkpoint", "run_training"]
