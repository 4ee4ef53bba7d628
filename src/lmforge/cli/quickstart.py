"""`lmforge quickstart`: the README's main job. Trains a small Aksis on the embedded Shakespeare corpus through the
Trainer (progress bar, log file, checkpoints), saves it, and prints text generated from it; under 4 minutes on 2
cores of the slowest CPU measured, an AVX2 one without AVX-512 (bench/RESULTS.md, issue 18 part 5).

Aksis, rather than CharTransformer, because it gives the better text for the same training time: on held-out plays
it scores 1.98 bits per character after its 2,000 steps, where the best CharTransformer tried
(`recipes/char_transformer/shakespeare.yaml`: width 128, 1500 steps) reaches 2.72, and it writes real words where the
character model still invents them (`bench/bits_per_character.py` compares saved models).

The recipe is `recipes/aksis/shakespeare.yaml`, read from the installed package (`recipes/` installs as
`lmforge.recipes`), with the command's `--output-dir` and `--max-steps` on top, and bf16 autocast on a machine without
an accelerator whose CPU has AVX512-BF16 or AMX (`cpu_bf16_settings`; `--bf16 false` turns it off).
"""

import argparse
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

QUICKSTART_RECIPE_PATH = ("aksis", "shakespeare.yaml")  # inside lmforge.recipes


def quickstart_recipe_path() -> Path:
    """The quickstart's recipe file in the installed `lmforge.recipes` (the repository's `recipes/` folder)."""
    return Path(str(files("lmforge.recipes").joinpath(*QUICKSTART_RECIPE_PATH)))


def run_quickstart(args: argparse.Namespace, extra: list[str]) -> int:
    from ..training import cpu_bf16_settings, load_recipe, run_training

    # bf16 autocast where the CPU has it (about 1.4x the fp32 step); `--bf16 false` turns it off
    # the quickstart is the same seeded run each time: running it again starts over in its folder
    settings: dict[str, Any] = {"output_dir": args.output_dir, "overwrite_output_dir": True, **cpu_bf16_settings()}
    if args.max_steps is not None:
        steps = max(1, args.max_steps // 3)
        settings.update(max_steps=args.max_steps, eval_steps=steps, save_steps=steps)
    model_args, data_args, training_args = load_recipe(quickstart_recipe_path(), extra, settings, source="quickstart")
    metrics = run_training(model_args, data_args, training_args)
    print(
        f"\nSaved to {training_args.output_dir} (validation loss {metrics['eval_loss']:.3f}, "
        f"perplexity {metrics['eval_perplexity']:.1f}). Try:\n"
        f"  lmforge generate --model-path {training_args.output_dir} --prompt 'ROMEO:' --do-sample --seed 0"
    )
    return 0


def __getattr__(name: str) -> Any:
    if name == "QUICKSTART_RECIPE":  # lmforge 0.1 kept a copy of the recipe here; it is read from its file now
        warnings.warn(
            "lmforge.cli.quickstart.QUICKSTART_RECIPE is deprecated: the quickstart reads "
            "quickstart_recipe_path() (recipes/aksis/shakespeare.yaml)",
            FutureWarning,
            stacklevel=2,
        )
        from ..training import read_recipe

        return read_recipe(quickstart_recipe_path())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["quickstart_recipe_path", "run_quickstart"]
