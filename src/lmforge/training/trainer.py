"""The HF Trainer with perplexity in its logs and JSON training arguments, and a callback that writes a log a person
can read."""

import inspect
import math
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer import TRAINING_ARGS_NAME

from ..errors import LmforgeError
from .optimizers import muon_with_adamw

# The training arguments saved next to the model and in every checkpoint, as JSON (the Trainer writes a pickle,
# training_args.bin, which nothing reads back: resuming reads trainer_state.json, the weights, optimizer, scheduler
# and RNG states).
TRAINING_ARGS_JSON = "training_args.json"


def add_perplexity(logs: dict[str, float]) -> dict[str, float]:
    """`loss` -> `perplexity` and `eval_loss` -> `eval_perplexity` (exp of the mean token NLL), in place."""
    for loss_key, ppl_key in (("loss", "perplexity"), ("eval_loss", "eval_perplexity")):
        if loss_key in logs and ppl_key not in logs:
            logs[ppl_key] = math.exp(min(logs[loss_key], 50.0))
    return logs


class JsonTrainingArgumentsMixin:
    """For a `Trainer` (or a subclass such as TRL's): saves its arguments as JSON (`training_args.json`, no pickle)
    with the model and in every checkpoint, instead of the pickled `training_args.bin`."""

    args: Any

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict=state_dict)  # type: ignore[misc]
        if not self.args.should_save:
            return
        folder = Path(output_dir if output_dir is not None else str(self.args.output_dir))
        (folder / TRAINING_ARGS_NAME).unlink(missing_ok=True)
        (folder / TRAINING_ARGS_JSON).write_text(self.args.to_json_string(), encoding="utf-8")


class LmforgeTrainer(JsonTrainingArgumentsMixin, Trainer):
    """`Trainer` whose logged and returned metrics carry perplexity next to every loss, which saves its arguments as
    JSON (`training_args.json`, no pickle) with the model and in every checkpoint, and whose own Hub pushes (when it
    is used on its own; `run_training` pushes with `lmforge push`) carry the lmforge model card."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.args, "skip_logits", False):
            get_base_model = getattr(self.model, "get_base_model", None)  # a PEFT model passes its keywords on
            base_model: Any = get_base_model() if callable(get_base_model) else self.model
            if "skip_logits" not in inspect.signature(base_model.forward).parameters:
                raise LmforgeError(
                    f"skip_logits: true needs a model whose forward takes skip_logits (Aksis and CharTransformer do); "
                    f"{type(base_model).__name__} does not: set skip_logits: false"
                )
            if self.args.label_smoothing_factor:
                raise LmforgeError(
                    "skip_logits: true leaves the Trainer no logits to smooth the labels of: set skip_logits: false "
                    "or label_smoothing_factor: 0"
                )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        super().log(add_perplexity(logs), start_time)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """The Trainer's loss; with `skip_logits: true`, a training step's forward gets `skip_logits=True` (the loss
        without the logits)."""
        return super().compute_loss(
            model, self.skipping_logits(inputs, model.training), return_outputs, num_items_in_batch
        )

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> Any:
        """The Trainer's evaluation step; with `skip_logits: true`, an evaluation that only needs the loss (no
        `compute_metrics`) gets it without the logits too, as transformers' Trainer does with Liger's fused loss.
        Evaluations and predictions that need the logits keep them."""
        return super().prediction_step(
            model, self.skipping_logits(inputs, prediction_loss_only), prediction_loss_only, ignore_keys
        )

    def skipping_logits(self, inputs: dict[str, Any], only_the_loss: bool) -> dict[str, Any]:
        """`inputs` with `skip_logits=True` added when `skip_logits: true` is set, the step needs only the loss, and
        there are labels to compute it from; else `inputs` unchanged."""
        if getattr(self.args, "skip_logits", False) and only_the_loss and "labels" in inputs:
            return {**inputs, "skip_logits": True}
        return inputs

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, or with `muon: true` Muon over the hidden matrices and `optim` over the rest
        (`lmforge.training.optimizers`)."""
        if not getattr(self.args, "muon", False) or self.optimizer is not None:
            return super().create_optimizer(model)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            raise LmforgeError(
                "muon: true needs whole weight matrices on each process, and FSDP and DeepSpeed shard them: set "
                "muon: false (--muon false) or train with DDP"
            )
        opt_model: Any = self.model if model is None else model
        adamw_cls, adamw_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = muon_with_adamw(
            opt_model,
            self.get_decay_parameter_names(opt_model),
            self.args.learning_rate,
            self.args.weight_decay,
            adamw_cls,
            adamw_kwargs,
        )
        return self.optimizer

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
    ) -> None:
        """Write the lmforge model card (the one `lmforge push` renders) into output_dir, where the Trainer's own
        draft would go; `push_to_hub` calls this right before the upload. A LoRA adapter folder keeps the Trainer's
        (PEFT) card."""
        if not self.is_world_process_zero():
            return
        from ..hub.cards import write_model_card
        from ..hub.remote_code import add_remote_code

        output_dir = Path(str(self.args.output_dir))
        if not (output_dir / "config.json").is_file():
            super().create_model_card(
                language, license, tags, model_name, finetuned_from, tasks, dataset_tags, dataset, dataset_args
            )
            return
        add_remote_code(output_dir)
        extra_tags = [tags] if isinstance(tags, str) else list(tags or [])
        repo_id = self.hub_model_id or self.args.hub_model_id
        write_model_card(output_dir, repo_id=repo_id, license=license or "mit", tags=extra_tags)


class LogFileCallback(TrainerCallback):
    """Appends one readable line per log event to `<output_dir>/train.log` (main process only)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.start = time.monotonic()

    def _write(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self._write(f"start: {state.max_steps} steps, output in {args.output_dir}")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()]
        elapsed = time.monotonic() - self.start
        self._write(f"step {state.global_step}/{state.max_steps} [{elapsed:.0f}s] " + " ".join(parts))


__all__ = ["TRAINING_ARGS_JSON", "LmforgeTrainer", "LogFileCallback", "add_perplexity"]


def train_evaluate_save(
    trainer: Trainer, recipe: dict[str, Any], resume_from_checkpoint: str | None = None
) -> dict[str, float]:
    """Train (from `resume_from_checkpoint` when given), save the model (or adapter) and its tokenizer, evaluate when
    there is held-out data, and write the metrics and the recipe beside the model (the main process only): the end of
    a TRL objective's run."""
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model()
    metrics: dict[str, float] = trainer.evaluate() if trainer.eval_dataset is not None else {}
    if trainer.is_world_process_zero():
        if metrics:
            trainer.log_metrics("eval", metrics)
            trainer.save_metrics("eval", metrics)
        output_dir = Path(str(trainer.args.output_dir))
        (output_dir / "recipe.yaml").write_text(yaml.safe_dump(dict(recipe), sort_keys=False), encoding="utf-8")
    return metrics
