"""Training through the HF Trainer from YAML recipes (run by `accelerate launch recipes/train.py RECIPE`)."""

import sys
from typing import Any

from ..errors import LmforgeError
from .arguments import (
    CausalLMDataArguments,
    DataArguments,
    LmforgeTrainingArguments,
    ModelArguments,
    Seq2SeqDataArguments,
    cpu_bf16_settings,
)
from .builders import TrainingSetup, register_builder
from .recipe import apply_overrides, check_recipe, default_output_dir, load_recipe, parse_recipe, read_recipe
from .run import run_training
from .tasks import TASKS, Task, get_task, register_task
from .trainer import LmforgeTrainer, LogFileCallback, add_perplexity


def main(argv: list[str] | None = None) -> int:
    """`recipes/train.py RECIPE.yaml [--key value ...]`: the entry point `accelerate launch` runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: train.py RECIPE.yaml [--key value ...]   (keys: any recipe key; see recipes/)")
        return 0 if argv else 2
    try:
        from .objectives import objective_of, run_objective

        if objective_of(argv[0], argv[1:]) is not None:  # `objective: sft` / `dpo`: TRL's trainer (objectives.py)
            run_objective(argv[0], argv[1:])
        else:
            run_training(*load_recipe(argv[0], argv[1:]))
    except LmforgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def __getattr__(name: str) -> Any:
    if name == "BUILDERS":  # lmforge 0.1's model_type -> builder table (deprecated, see builders.py)
        from . import builders

        return builders.BUILDERS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TASKS",
    "CausalLMDataArguments",
    "DataArguments",
    "LmforgeTrainer",
    "LmforgeTrainingArguments",
    "LogFileCallback",
    "ModelArguments",
    "Seq2SeqDataArguments",
    "Task",
    "TrainingSetup",
    "add_perplexity",
    "apply_overrides",
    "check_recipe",
    "cpu_bf16_settings",
    "default_output_dir",
    "get_task",
    "load_recipe",
    "main",
    "parse_recipe",
    "read_recipe",
    "register_builder",
    "register_task",
    "run_training",
]
