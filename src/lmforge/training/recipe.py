"""YAML recipes: read, apply `--key value` overrides, check every key and type, parse into the argument dataclasses."""

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ..errors import LmforgeError
from .arguments import DataArguments, LmforgeTrainingArguments, ModelArguments

ARGUMENT_CLASSES = (ModelArguments, DataArguments, LmforgeTrainingArguments)


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The recipe's mapping; a missing file or malformed YAML is one sentence."""
    path = Path(path)
    if not path.is_file():
        raise LmforgeError(f"recipe not found: {path}")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise LmforgeError(f"recipe {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if recipe is None:
        return {}
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


def check_recipe(recipe: dict[str, Any], source: str = "recipe") -> None:
    """Unknown keys and values of the wrong type fail here, with the key named, before anything runs."""
    fields: dict[str, Any] = {}
    for cls in ARGUMENT_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                fields[f.name] = hints.get(f.name, Any)
    for key, value in recipe.items():
        if key not in fields:
            close = [name for name in fields if name.startswith(key[:4])][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise LmforgeError(f"{source}: unknown key '{key}'{hint}")
        if not _accepts(fields[key], value):
            raise LmforgeError(
                f"{source}: '{key}' has the wrong type ({type(value).__name__} {value!r}); "
                f"expected {getattr(fields[key], '__name__', str(fields[key]))}"
            )


def parse_recipe(
    recipe: dict[str, Any], source: str = "recipe"
) -> tuple[ModelArguments, DataArguments, LmforgeTrainingArguments]:
    """Check the mapping and build the three argument dataclasses with `HfArgumentParser.parse_dict`."""
    check_recipe(recipe, source)
    recipe = dict(recipe)
    recipe.setdefault("output_dir", "outputs/run")
    parser = HfArgumentParser(ARGUMENT_CLASSES)  # type: ignore[arg-type]
    try:
        model_args, data_args, training_args = parser.parse_dict(recipe, allow_extra_keys=False)
    except (ValueError, TypeError) as err:
        raise LmforgeError(f"{source}: {str(err).splitlines()[0]}") from None
    if isinstance(model_args.config_overrides, str):
        loaded = yaml.safe_load(model_args.config_overrides)
        if not isinstance(loaded, dict):
            raise LmforgeError(f"{source}: config_overrides must be a mapping, got {model_args.config_overrides!r}")
        model_args.config_overrides = loaded
    return model_args, data_args, training_args


def load_recipe(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[ModelArguments, DataArguments, LmforgeTrainingArguments]:
    """Read a recipe file, apply overrides and parse it."""
    recipe = apply_overrides(read_recipe(path), overrides or [])
    return parse_recipe(recipe, source=f"recipe {path}")


__all__ = ["apply_overrides", "check_recipe", "load_recipe", "parse_recipe", "read_recipe"]
