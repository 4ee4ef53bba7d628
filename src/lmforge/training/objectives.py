"""Recipes of TRL objectives: `objective: sft` (chat tuning, `chat.py`) and `objective: dpo` (learning from
preferences, `preference.py`), beside the plain recipes of the model's own training task (`recipe.py`).

A recipe with `objective: sft` or `objective: dpo` goes to TRL's trainer for it; any other goes to `run_training` as
before (where AE-LLM's phases read their own objectives: `decoder`, `latent`, `latent+decoder`). Both run
through the same entry points: `lmforge train RECIPE.yaml`, `accelerate launch recipes/train.py RECIPE.yaml` (the
accelerate path: TRL's trainers are HF Trainers) and the objective's own command (`lmforge sft` / `lmforge dpo`). The
recipe is read and overridden (`--key value`) like any other; its keys are those of `ModelArguments`, the objective's
data arguments and TRL's config (`SFTConfig` / `DPOConfig`), and an unknown key is one sentence naming it.
"""

import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import LmforgeError
from .recipe import apply_overrides, parse_objective_recipe, read_recipe

OBJECTIVES = ("sft", "dpo")


def require_trl() -> None:
    try:
        import trl  # noqa: F401
    except ImportError:
        raise LmforgeError('chat tuning and DPO need TRL: pip install "lmforge[feedback]"') from None


def recipe_objective(recipe: Mapping[str, Any], source: str) -> str | None:
    """The TRL objective the recipe names, None when it names none. `objective` is one key for what a training run
    minimises: `sft` and `dpo` go to TRL's trainers; any other value is the model's own task's to check (AE-LLM's
    phases take `decoder`, `latent` or `latent+decoder`; other tasks refuse the key with a one-line error)."""
    objective = recipe.get("objective")
    return typing.cast(str, objective) if objective in OBJECTIVES else None


def objective_of(path: str | Path, overrides: list[str] | None = None) -> str | None:
    """The objective the recipe at `path` names (after the `--key value` overrides), None for a plain recipe."""
    return recipe_objective(apply_overrides(read_recipe(path), overrides or []), f"recipe {path}")


def run_objective(
    path: str | Path,
    overrides: list[str] | None = None,
    settings: Mapping[str, Any] | None = None,
    objective: str | None = None,
) -> dict[str, float] | None:
    """Run the recipe at `path` with its TRL objective (or `objective`, which the recipe must not contradict);
    None when it names none (a plain recipe: the caller runs it with `run_training`)."""
    source = f"recipe {path}"
    recipe = read_recipe(path)
    recipe.update({key: value for key, value in (settings or {}).items() if value is not None})
    recipe = apply_overrides(recipe, overrides or [])
    named = recipe_objective(recipe, source)
    if objective is not None and named not in (None, objective):
        raise LmforgeError(f"{source} is a recipe of objective {named}, not {objective}")
    chosen = objective or named
    if chosen is None:
        return None
    require_trl()
    runner: Callable[[dict[str, Any], str], dict[str, float]]
    if chosen == "sft":
        from .chat import run_sft as runner
    else:
        from .preference import run_dpo as runner
    return runner(recipe, source)


__all__ = ["OBJECTIVES", "objective_of", "parse_objective_recipe", "recipe_objective", "require_trl", "run_objective"]
