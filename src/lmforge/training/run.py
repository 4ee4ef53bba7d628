"""One training run: recipe -> task builder -> `Trainer.train()` -> evaluate -> save (safetensors) -> samples -> push.

A model with the "interpolate" mode (LatentReasoner) also gets `interpolation.json`, the card's table of texts decoded
between two texts' idea vectors (`write_run_interpolation`).

With `push_to_hub: true`, the Trainer never talks to the Hub: the run checks the token and network before training,
and at the end pushes the final folder once with `lmforge push`'s upload plan (the lmforge model card, the weights,
tokenizer and code; no checkpoints, no pickles), as one commit to `hub_model_id` (default: `<user>/<output_dir name>`).
"""

import copy
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
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..adapters import apply_peft, lora_config
from ..errors import LmforgeError
from ..hub.push import check_hub_access, push
from ..hub.remote_code import add_remote_code
from ..inference import GenerationSettings, TextGenerator
from ..interpolation import INTERPOLATION_FILE, interpolation_table, interpolation_texts, save_interpolation
from .arguments import DataArguments, LmforgeTrainingArguments, ModelArguments
from .builders import TrainingSetup
from .recipe import task_of
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


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint counts only if the Trainer finished writing it: `trainer_state.json` is written last, so it
    must exist and parse, next to the weights (a run killed during a save leaves a folder that fails this)."""
    state = path / "trainer_state.json"
    if not state.is_file() or not (any(path.glob("*.safetensors"))):
        return False
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return True


def checkpoint_folders(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders of a run, by step."""
    checkpoints = []
    for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        suffix = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and suffix.isdigit():
            checkpoints.append((int(suffix), path))
    return [path for _, path in sorted(checkpoints)]


def latest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The highest-step `checkpoint-N` folder that is complete; incomplete ones are reported and skipped."""
    for path in reversed(checkpoint_folders(output_dir)):
        if is_complete_checkpoint(path):
            return path
        logger.warning("Skipping %s: it is incomplete (the run stopped while saving it)", path)
    return None


def resume_requested(training_args: TrainingArguments) -> bool:
    """Whether the run asks to resume (`resume_from_checkpoint` set, and not to a false value)."""
    return training_args.resume_from_checkpoint not in (None, "", "false", "False")


def resolve_checkpoint(training_args: TrainingArguments) -> str | None:
    """`resume_from_checkpoint: auto` means the latest complete checkpoint in output_dir (None if there is none)."""
    resume = training_args.resume_from_checkpoint
    if resume is None or not resume_requested(training_args):
        return None
    if resume in ("auto", "true", "True", "latest"):
        output_dir = Path(str(training_args.output_dir))
        last = latest_complete_checkpoint(output_dir) if output_dir.is_dir() else None
        if last is None:
            logger.info("No complete checkpoint in %s yet: starting from scratch", output_dir)
            return None
        logger.info("Resuming from %s", last)
        return str(last)
    if not Path(resume).is_dir():
        raise LmforgeError(f"checkpoint to resume from not found: {resume}")
    if not is_complete_checkpoint(Path(resume)):
        raise LmforgeError(f"checkpoint {resume} is incomplete (no readable trainer_state.json or weights)")
    return resume


def check_output_dir(training_args: TrainingArguments) -> None:
    """Before any work: output_dir must be a folder (or not exist yet), and a new run (not resuming) must not write
    over an earlier run's checkpoints, interrupted model or final model unless `overwrite_output_dir` says so."""
    output_dir = Path(str(training_args.output_dir))
    if output_dir.exists() and not output_dir.is_dir():
        raise LmforgeError(f"output_dir {output_dir} is a file; give a folder")
    overwrite = getattr(training_args, "overwrite_output_dir", False)  # OutputDirArguments
    if resume_requested(training_args) or overwrite or not output_dir.is_dir():
        return
    earlier = checkpoint_folders(output_dir)
    earlier += [output_dir / name for name in ("interrupted", "model.safetensors", "adapter_model.safetensors")]
    found = [path.name for path in earlier if path.exists()]
    if found:
        raise LmforgeError(
            f"{output_dir} already holds a run ({', '.join(found[-2:])}); continue it with --resume_from_checkpoint auto "
            "(lmforge train: --resume), start over with --overwrite_output_dir true, or choose another "
            "--output-dir"
        )


def build_setup(
    model_args: ModelArguments, data_args: DataArguments, training_args: LmforgeTrainingArguments
) -> TrainingSetup:
    build = task_of(model_args.model_type).build
    if model_args.peft is not None:
        lora_config(model_args.model_type, model_args.peft)  # a wrong peft section fails before any work is done
        if not model_args.model_name_or_path:
            logger.warning("peft is set but model_name_or_path is not: LoRA on a freshly initialised model")
    setup = build(model_args, data_args, training_args)
    if model_args.bad_words:
        set_bad_words(setup, model_args.bad_words)
    if model_args.peft is not None:
        # LoRA: only the adapter trains, and the Trainer saves only the adapter (adapter_model.safetensors).
        peft_model: Any = apply_peft(setup.model, model_args.peft)
        setup.model = peft_model
    return setup


def set_bad_words(setup: TrainingSetup, bad_words: list[str]) -> None:
    """The recipe's `bad_words` into the model's generation_config (`bad_words_ids`, transformers' own ban), each
    string as the tokenizer writes it: the run's samples, `lmforge generate` and a pipeline of the saved model never
    write it."""
    if not callable(getattr(setup.tokenizer, "convert_ids_to_tokens", None)):
        raise LmforgeError(f"bad_words needs a tokenizer; {type(setup.tokenizer).__name__} is not one")
    ids = [setup.tokenizer(word, add_special_tokens=False)["input_ids"] for word in bad_words]
    if not all(ids):
        empty = [word for word, word_ids in zip(bad_words, ids, strict=True) if not word_ids]
        raise LmforgeError(f"bad_words: {empty!r} gives no tokens; remove it")
    setup.model.generation_config.bad_words_ids = ids
    logger.info("generate() bans %s (tokens %s)", ", ".join(repr(word) for word in bad_words), ids)


def build_callbacks(training_args: LmforgeTrainingArguments) -> list[Any]:
    callbacks: list[Any] = [LogFileCallback(Path(str(training_args.output_dir)) / "train.log")]
    if training_args.early_stopping_patience is not None:
        if not training_args.load_best_model_at_end:
            raise LmforgeError("early_stopping_patience needs load_best_model_at_end: true in the recipe")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    return callbacks


def build_trainer(setup: TrainingSetup, training_args: LmforgeTrainingArguments) -> LmforgeTrainer:
    """The Trainer of a run (also what bench/ scripts time), with the log-file and early-stopping callbacks."""
    return LmforgeTrainer(
        model=setup.model,
        args=training_args,
        train_dataset=setup.train_dataset,
        eval_dataset=setup.eval_dataset,
        data_collator=setup.data_collator,
        processing_class=setup.tokenizer,
        compute_metrics=setup.compute_metrics,
        callbacks=build_callbacks(training_args),
    )


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


def write_run_interpolation(output_dir: Path, generator: TextGenerator, max_new_tokens: int) -> Path | None:
    """For a model with the "interpolate" mode: `interpolation.json` in the output folder, the greedy texts decoded
    between the idea vectors of two texts at alpha 0, 0.25, 0.5, 0.75 and 1 (`lmforge.interpolation`), five
    generations of at most `max_new_tokens` (the samples' `sample_max_new_tokens`). The two texts are the run's first
    two validation sources (`predictions.jsonl`, written by the `post_train` hook), else its first two sample prompts
    (`samples.json`); without either, no table (a log line, and a table of an earlier run in the folder is removed).
    Returns the file's path, or None."""
    found = interpolation_texts(output_dir)
    if found is None:
        (output_dir / INTERPOLATION_FILE).unlink(missing_ok=True)
        logger.info("No interpolation table: the run has neither two validation sources nor two sample prompts")
        return None
    (text_a, text_b), source = found
    path = save_interpolation(output_dir, interpolation_table(generator, text_a, text_b, max_new_tokens, source))
    logger.info("Interpolation between the first two texts of %s written to %s", source, path)
    return path


def hub_repo_id(model_args: ModelArguments, training_args: LmforgeTrainingArguments) -> str | None:
    """With `push_to_hub`, the repository the run pushes to, after checking that a push can work (token, network,
    a full model): `hub_model_id`, or `<user>/<output_dir name>`. None without `push_to_hub`."""
    if not training_args.push_to_hub:
        return None
    strategy = getattr(training_args.hub_strategy, "value", training_args.hub_strategy)
    if strategy != "end":
        raise LmforgeError(
            f"hub_strategy {strategy}: lmforge pushes once, at the end of the run, with the model "
            "card (checkpoints stay local); remove hub_strategy or set it to end"
        )
    if model_args.peft is not None:
        raise LmforgeError(
            "push_to_hub with a peft: section: lmforge pushes full models only; train without push_to_hub, merge the "
            "adapter (merge_and_unload, save_pretrained) and push that folder with lmforge push"
        )
    user = check_hub_access(training_args.hub_token)  # a missing token or network fails now, not after training
    return training_args.hub_model_id or f"{user}/{Path(str(training_args.output_dir)).resolve().name}"


def run_training(
    model_args: ModelArguments, data_args: DataArguments, training_args: LmforgeTrainingArguments
) -> dict[str, float]:
    """Train, evaluate and save; returns the final validation metrics (eval_loss, eval_perplexity, ...)."""
    setup_logging(training_args)
    set_seed(training_args.seed)
    repo_id = hub_repo_id(model_args, training_args)
    checkpoint = resolve_checkpoint(training_args)  # before the slow set-up, so a bad path fails at once
    check_output_dir(training_args)
    setup = build_setup(model_args, data_args, training_args)
    # The Trainer never pushes (no repository at start, no upload per checkpoint): the run pushes once, at the end.
    trainer_args = copy.copy(training_args)
    trainer_args.push_to_hub = False
    trainer = build_trainer(setup, trainer_args)
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
        generator = TextGenerator(model, setup.tokenizer)
        settings = GenerationSettings(
            max_new_tokens=training_args.sample_max_new_tokens,
            do_sample=True,
            top_k=50,
            temperature=0.8,
            seed=training_args.seed,
        )
        for prompt in training_args.sample_prompts or []:
            samples[prompt] = generator.generate(prompt, settings)
            logger.info("Sample for %r:\n%s%s", prompt, prompt, samples[prompt])
        write_run_files(output_dir, model_args, data_args, training_args, samples)
        if "interpolate" in generator.modes:
            write_run_interpolation(output_dir, generator, training_args.sample_max_new_tokens)
        add_remote_code(output_dir)  # e.g. the custom pipeline of the seq2seq models
        logger.info(
            "Done: eval_loss %.4f, eval_perplexity %.2f; model saved in %s",
            metrics.get("eval_loss", math.nan),
            metrics.get("eval_perplexity", math.nan),
            output_dir,
        )
    if repo_id is not None and trainer.is_world_process_zero():
        push(output_dir, repo_id, private=bool(training_args.hub_private_repo), token=training_args.hub_token)
        logger.info("Pushed %s to https://huggingface.co/%s (one commit, with the model card)", output_dir, repo_id)
    return metrics


__all__ = ["build_setup", "build_trainer", "hub_repo_id", "resolve_checkpoint", "run_training"]
