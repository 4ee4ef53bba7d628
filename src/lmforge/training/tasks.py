"""Training tasks: what a run does with a model, keyed by the task its spec names (`ModelSpec.task`).

A task is a builder (the parsed recipe -> the model, tokenizer, datasets and collator the Trainer needs) and the
argument dataclasses of its recipes: `ModelArguments` / `DataArguments` or subclasses that add the task's own keys.
A recipe is checked against the keys of its model type's task, so `training_phase` is a key of question-answering
recipes and an unknown key anywhere else.

- `causal_lm` (`builders.py`): next-token prediction on text cut into blocks (Aksis, CharTransformer).
- `question_answering` (`qa.py`): question -> answer pairs from SQuAD, in three phases (AE-LLM).
- `summarization` (`summarization.py`): dialogue -> summary pairs on two frozen backbones (LatentReasoner).

A new architecture names one of them in its spec; a new task registers itself with `register_task` in its module,
which `TASK_MODULES` lists.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import LmforgeError
from .arguments import DataArguments, ModelArguments

# (model arguments, data arguments, training arguments) -> TrainingSetup
Builder = Callable[[Any, Any, Any], Any]
# The modules that register the tasks (imported when a task is first looked up).
TASK_MODULES = ("lmforge.training.builders", "lmforge.training.qa", "lmforge.training.summarization")


@dataclass(frozen=True)
class Task:
    """A training task: its builder and the dataclasses its recipes are parsed into."""

    name: str
    build: Builder
    model_arguments: type[ModelArguments] = ModelArguments
    data_arguments: type[DataArguments] = DataArguments


TASKS: dict[str, Task] = {}


def register_task(
    name: str,
    model_arguments: type[ModelArguments] = ModelArguments,
    data_arguments: type[DataArguments] = DataArguments,
) -> Callable[[Builder], Builder]:
    """Decorate a builder: it builds the runs of every model type whose spec names the task `name`."""

    def decorate(build: Builder) -> Builder:
        TASKS[name] = Task(name, build, model_arguments, data_arguments)
        return build

    return decorate


def all_tasks() -> dict[str, Task]:
    """Every registered task (its module imported first)."""
    for module in TASK_MODULES:
        importlib.import_module(module)
    return TASKS


def get_task(name: str) -> Task:
    task = all_tasks().get(name)
    if task is None:
        raise LmforgeError(f"unknown training task '{name}'; lmforge tasks are {', '.join(TASKS)}")
    return task


__all__ = ["TASKS", "TASK_MODULES", "Builder", "Task", "all_tasks", "get_task", "register_task"]
