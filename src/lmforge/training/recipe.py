"""YAML recipes: read, apply `--key value` overrides, check every key and type, parse into the argument dataclasses.

Every entry point turns its recipe into arguments with `load_recipe`: `recipes/train.py` (what `accelerate launch`
runs), `lmforge train`, `lmforge finetune` and `lmforge quickstart`. The command line only maps its flags into it
(`settings`). The same rules hold for all of them:

- precedence: the recipe file, then the command line's flags (`--output-dir`, `--model-path`...), then its
  `--key value` overrides;
- `model_type`: the recipe's; else the saved model's (`model_name_or_path`, a folder); else the first architecture
  of the registry (`lmforge.models.SPECS`). A recipe whose `model_type` differs from its saved model's is refused;
- the keys: those of the model type's training task (`tasks.py`), so a key of another task is refused by name;
- `output_dir`: `outputs/<model_type>` for a new model, `outputs/<model_type>-finetuned` for a run that starts
  from a saved model (`default_output_dir`).
"""

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ..errors import LmforgeError
from ..models import SPECS, get_spec
from .arguments import DataArguments, LmforgeTrainingArguments, ModelArguments
from .tasks import Task, all_tasks, get_task

# The keys every recipe understands; a task's own dataclasses subclass the first two.
ARGUMENT_CLASSES = (ModelArguments, DataArguments, LmforgeTrainingArguments)
FINETUNED_SUFFIX = "-finetuned"


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe's mapping; a missing file or malformed YAML is one sentence."""
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"recipe not found: {path}")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise LmforgeError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError as err:
        raise LmforgeError(f"recipe {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    if recipe is None:
        raise LmforgeError(f"recipe {path} is empty; give at least model_type (see recipes/)")
    if not isinstance(recipe, dict):
        raise LmforgeError(f"recipe {path} must be a mapping of argument names to values")
    return recipe


def _scalar(raw: str) -> Any:
    """A command-line value as YAML would read it, plus `1e-3` as a float (YAML 1.1 wants `1.0e-3`)."""
    if raw.lower() in {"no", "yes", "on", "off", "y", "n"}:
        return raw  # YAML 1.1 would read these as booleans; `--eval_strategy no` means the string
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            return value
    return value


def apply_overrides(recipe: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`["--learning_rate", "1e-3", "--config_overrides.hidden_size", "64"]` -> an updated copy of the recipe.

    Values are read as YAML scalars (so `1e-3` is a float and `true` a bool); dashes in names become underscores.
    """
    recipe = dict(recipe)
    i = 0
    while i < len(overrides):
        key = overrides[i]
        if not key.startswith("--"):
            raise LmforgeError(f"expected an option like --learning_rate, got '{key}'")
        key = key[2:].replace("-", "_")
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(overrides) and not overrides[i + 1].startswith("--"):
            raw = overrides[i + 1]
            i += 2
        else:
            raw, i = "true", i + 1
        value = _scalar(raw)
        if "." in key:
            outer, inner = key.split(".", 1)
            nested = dict(recipe.get(outer) or {})
            nested[inner] = value
            recipe[outer] = nested
        else:
            recipe[key] = value
    return recipe


def _accepts(annotation: Any, value: Any) -> bool:
    """A coarse type check of a YAML value against a dataclass field's annotation."""
    if value is None or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(annotation))
    if origin in (list, tuple):
        return isinstance(value, list | tuple | str)
    if origin is dict or annotation is dict:
        return isinstance(value, dict | str)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, str):  # str enums (IntervalStrategy...)
        return isinstance(value, str)
    return True


def default_model_type() -> str:
    """The model type of a recipe that names none and starts from no saved model: the registry's first."""
    return next(iter(SPECS))


def saved_model_type(model_name_or_path: Any) -> str | None:
    """The `model_type` in the `config.json` of a saved model folder (None for a Hub id, or no readable config)."""
    config = Path(str(model_name_or_path)) / "config.json" if model_name_or_path else None
    if config is None or not config.is_file():
        return None
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None  # the builder reports the broken folder when it loads it
    return str(model_type) if model_type else None


def resolve_model_type(recipe: Mapping[str, Any], source: str = "recipe") -> str:
    """The recipe's model type (see the module docstring); an unknown one, or one that is not the saved model's, is
    one sentence."""
    given = recipe.get("model_type") or None
    saved = saved_model_type(recipe.get("model_name_or_path"))
    if given and saved and given != saved:
        raise LmforgeError(
            f"{source}: model_type {given} does not match the saved model's ({saved}) in {recipe['model_name_or_path']}"
        )
    model_type = str(given or saved or default_model_type())
    get_spec(model_type)
    return model_type


def task_of(model_type: str) -> Task:
    """The training task of `model_type` (its spec's `task`)."""
    return get_task(get_spec(model_type).task)


def argument_classes(model_type: str) -> tuple[type, type, type]:
    """The dataclasses a recipe of `model_type` is parsed into: its task's model and data arguments, and
    `LmforgeTrainingArguments`."""
    task = task_of(model_type)
    return task.model_arguments, task.data_arguments, LmforgeTrainingArguments


def _fields(classes: tuple[type, ...]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                fields[f.name] = hints.get(f.name, Any)
    return fields


def check_recipe(recipe: Mapping[str, Any], source: str = "recipe", model_type: str | None = None) -> None:
    """Unknown keys and values of the wrong type fail here, with the key named, before anything runs. The keys are
    those of the model type's task (`model_type`, else the recipe's, see `resolve_model_type`)."""
    model_type = model_type or resolve_model_type(recipe, source)
    fields = _fields(argument_classes(model_type))
    for key, value in recipe.items():
        if key not in fields:
            owners = [
                task.name
                for task in all_tasks().values()
                if key in _fields((task.model_arguments, task.data_arguments))
            ]
            if owners:
                types_of = [t for t, spec in SPECS.items() if spec.task in owners]
                raise LmforgeError(
                    f"{source}: unknown key '{key}' for model_type {model_type} (a key of {' and '.join(owners)} "
                    f"recipes: {', '.join(types_of)})"
                )
            close = [name for name in fields if name.startswith(key[:4])][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise LmforgeError(f"{source}: unknown key '{key}'{hint}")
        if not _accepts(fields[key], value):
            raise LmforgeError(
                f"{source}: '{key}' has the wrong type ({type(value).__name__} {value!r}); "
                f"expected {getattr(fields[key], '__name__', str(fields[key]))}"
            )


def default_output_dir(model_type: str, model_name_or_path: str | None = None) -> str:
    """Where a run writes when its recipe names no output_dir, whatever the entry point."""
    return f"outputs/{model_type}{FINETUNED_SUFFIX if model_name_or_path else ''}"


def parse_recipe(recipe: Mapping[str, Any], source: str = "recipe") -> tuple[Any, Any, LmforgeTrainingArguments]:
    """Check a recipe mapping and build its three argument dataclasses with `HfArgumentParser.parse_dict`:
    (model arguments, data arguments, training arguments), the first two of its task's classes."""
    check_recipe(recipe, source)
    recipe = dict(recipe)
    recipe["model_type"] = resolve_model_type(recipe, source)
    recipe.setdefault("output_dir", default_output_dir(recipe["model_type"], recipe.get("model_name_or_path")))
    parser = HfArgumentParser(argument_classes(recipe["model_type"]))  # type: ignore[arg-type]
    try:
        model_args, data_args, training_args = parser.parse_dict(recipe, allow_extra_keys=False)
    except (ValueError, TypeError) as err:
        raise LmforgeError(f"{source}: {str(err).splitlines()[0]}") from None
    overrides = model_args.config_overrides
    if isinstance(overrides, str):
        overrides = yaml.safe_load(overrides)
    if overrides is not None and not isinstance(overrides, dict):
        raise LmforgeError(f"{source}: config_overrides must be a mapping, got {model_args.config_overrides!r}")
    model_args.config_overrides = overrides
    check_training_numbers(training_args, source)
    return model_args, data_args, training_args


def check_training_numbers(training_args: Any, source: str) -> None:
    """Values `TrainingArguments` accepts but the run would fail on later (in the optimizer, the data loader or the
    seeding), named before anything runs."""
    rules = [
        ("learning_rate", lambda value: value > 0, "must be > 0"),
        ("per_device_train_batch_size", lambda value: value >= 1, "must be 1 or more"),
        ("per_device_eval_batch_size", lambda value: value >= 1, "must be 1 or more"),
        ("gradient_accumulation_steps", lambda value: value >= 1, "must be 1 or more"),
        ("seed", lambda value: 0 <= value < 2**32, "must be between 0 and 2**32 - 1"),
    ]
    for name, fits, rule in rules:
        value = getattr(training_args, name, None)
        if isinstance(value, int | float) and not fits(value):
            raise LmforgeError(f"{source}: {name} {rule}, got {value}")


def load_recipe(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    *,
    from_saved_model: bool = False,
    source: str | None = None,
) -> tuple[Any, Any, LmforgeTrainingArguments]:
    """The arguments of a run, for every entry point: the recipe file at `path` (none: an empty recipe), updated
    with `settings` (recipe keys from command-line flags; None values are left out), then with the `--key value`
    `overrides`, checked and parsed by `parse_recipe`. `from_saved_model` (fine-tuning) requires
    `model_name_or_path`."""
    recipe = read_recipe(path) if path is not None else {}
    recipe.update({key: value for key, value in (settings or {}).items() if value is not None})
    recipe = apply_overrides(recipe, overrides or [])
    source = source or (f"recipe {path}" if path is not None else "command line")
    if from_saved_model and not recipe.get("model_name_or_path"):
        raise LmforgeError(
            f"{source}: fine-tuning starts from a saved model; set model_name_or_path (or --model-path)"
        )
    return parse_recipe(recipe, source=source)


def parse_objective_recipe(recipe: Mapping[str, Any], classes: tuple[type, ...], source: str) -> tuple[Any, ...]:
    """A recipe of a TRL objective (`objective: sft` / `dpo`, training/objectives.py): check its keys and types against
    `classes` and parse it into them (`HfArgumentParser`)."""
    recipe = {key: value for key, value in recipe.items() if key != "objective"}
    fields = _fields(classes)
    for key, value in recipe.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise LmforgeError(f"{source}: unknown key '{key}'{hint}")
        if not _accepts(fields[key], value):
            expected = getattr(fields[key], "__name__", str(fields[key]))
            raise LmforgeError(
                f"{source}: '{key}' has the wrong type ({type(value).__name__} {value!r}); expected {expected}"
            )
    if not recipe.get("model_name_or_path"):
        raise LmforgeError(f"{source}: set model_name_or_path (or --model-path): the saved model to tune")
    recipe["model_type"] = resolve_model_type(recipe, source)
    try:
        parsed = tuple(HfArgumentParser(classes).parse_dict(recipe, allow_extra_keys=False))  # type: ignore[arg-type]
    except (ValueError, TypeError) as err:
        raise LmforgeError(f"{source}: {str(err).splitlines()[0]}") from None
    check_training_numbers(parsed[-1], source)
    return parsed


__all__ = [
    "ARGUMENT_CLASSES",
    "apply_overrides",
    "argument_classes",
    "check_recipe",
    "default_model_type",
    "default_output_dir",
    "load_recipe",
    "parse_objective_recipe",
    "parse_recipe",
    "read_recipe",
    "resolve_model_type",
    "saved_model_type",
]
