"""Training through the HF Trainer from YAML recipes (run by `accelerate launch recipes/train.py RECIPE`)."""

import sys

from ..errors import LmforgeError
from . import tasks
from .arguments import DataArguments, LmforgeTrainingArguments, ModelArguments
from .builders import BUILDERS, TrainingSetup, register_builder
from .recipe import apply_overrides, load_recipe, parse_recipe, read_recipe
from .run import run_training
from .trainer import LmforgeTrainer, LogFileCallback, add_perplexity


def main(argv: list[str] | None = None) -> int:
    """`recipes/train.py RECIPE.yaml [--key value ...]`: the entry point `accelerate launch` runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: train.py RECIPE.yaml [--key value ...]   (keys: any recipe key; see recipes/)")
        return 0 if argv else 2
    try:
        model_args, data_args, training_args = load_recipe(argv[0], argv[1:])
        run_training(model_args, data_args, training_args)
    except LmforgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "BUILDERS",
    "DataArguments",
    "LmforgeTrainer",
    "LmforgeTrainingArguments",
    "LogFileCallback",
    "ModelArguments",
    "TrainingSetup",
    "add_perplexity",
    "apply_overrides",
    "load_recipe",
    "main",
    "parse_recipe",
    "read_recipe",
    "register_builder",
    "run_training",
    "tasks",
]
