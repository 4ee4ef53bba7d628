"""The `lmforge` command line: one entry point over the library.

    lmforge quickstart                          train a small model on the embedded corpus, then generate
    lmforge train RECIPE.yaml [--key value]     the same path as `accelerate launch recipes/train.py RECIPE.yaml`
    lmforge finetune RECIPE.yaml [--key value]  the same, from a saved model (model_name_or_path); LoRA with `peft:`
    lmforge forgetting RECIPE.yaml              full fine-tuning vs LoRA vs routed adapters: what is forgotten
    lmforge generate --model-path DIR --prompt TEXT
    lmforge chat --model-path DIR
    lmforge evaluate --model-path DIR --input-file FILE
    lmforge push --model-path DIR --repo-id USER/NAME [--dry-run] [--space USER/NAME]   (see cli/share.py)
    lmforge serve --model-path DIR [--port 8000]     an OpenAI-compatible API
    lmforge demo --model-path DIR                    a web page (gradio), with a side-by-side judging tab
    lmforge sampling-study --model-path DIR          decoding strategies compared    (see cli/research.py)
    lmforge eval-report FEEDBACK.jsonl               win rates of the side-by-side judgements
    lmforge sft RECIPE.yaml / lmforge dpo RECIPE.yaml   chat tuning / learning from feedback (TRL)

Every error the user can fix is printed as one line starting with `error:`, with exit code 1.

The character model's seed script spelled its options with underscores; they are aliases here: `--input_file`
(`--input-file`), `--model_path` (`--model-path`), `--num_tokens` (`--max-new-tokens`). Its `--seed "start text"`
was the text to continue: `lmforge generate --seed` takes a whole number as the random seed and any other text as
the start text (the prompt, as `--prompt`); to continue a text that is a number, use `--prompt`.
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from ..errors import LmforgeError
from .research import RECIPE_COMMANDS, add_research_commands
from .share import COMPILE_DECODING_HELP, add_share_commands

if TYPE_CHECKING:
    from ..inference import GenerationSettings

Handler = Callable[[argparse.Namespace, list[str]], int]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to --help), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{value}'") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {number}")
    return number


def _seed_or_text(value: str) -> int | str:
    """`--seed` of `lmforge generate`: a whole number is the random seed; any other text is the start text (the
    character model's `--seed "ROMEO:"`), which `main` moves to `--prompt`."""
    try:
        return int(value)
    except ValueError:
        return value


def _add_generation_options(parser: argparse.ArgumentParser, seed_text: bool = False) -> None:
    parser.add_argument(
        "--model-path", "--model_path", required=True, help="A saved model folder (the output_dir of a run)."
    )
    parser.add_argument(
        "--max-new-tokens",
        "--num-tokens",
        "--num_tokens",
        dest="max_new_tokens",
        type=_positive_int,
        default=100,
        help="How many new tokens to generate (default 100).",
    )
    if seed_text:
        parser.add_argument(
            "--seed",
            type=_seed_or_text,
            default=None,
            help="Random seed, for reproducible sampling; text that is not a whole number is the start text instead "
            "(as --prompt).",
        )
    else:
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for reproducible sampling.")
    parser.add_argument("--do-sample", action="store_true", help="Sample instead of greedy decoding.")
    parser.add_argument("--temperature", type=float, default=None, help="Sampling temperature (implies sampling).")
    parser.add_argument("--top-k", type=int, default=None, help="Sample from the k most likely tokens.")
    parser.add_argument("--top-p", type=float, default=None, help="Nucleus sampling threshold (0-1).")
    parser.add_argument("--num-beams", type=int, default=None, help="Beam search with this many beams.")
    parser.add_argument("--repetition-penalty", type=float, default=None, help="Penalty on repeated tokens (>1).")
    parser.add_argument("--compile-decoding", action="store_true", help=COMPILE_DECODING_HELP)


def generation_settings(args: argparse.Namespace) -> "GenerationSettings":
    """The `GenerationSettings` of the generation options (`--temperature`, `--top-k` or `--top-p` imply sampling)."""
    from ..inference import GenerationSettings

    sampling = args.do_sample or any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=sampling,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_beams=args.num_beams,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def _recipe_path(extra: list[str]) -> str | None:
    """The recipe is the first word after the command (argparse cannot tell it from the value of a --key override)."""
    return extra.pop(0) if extra and not extra[0].startswith("-") else None


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from ..training import load_recipe, run_training

    recipe_path = _recipe_path(extra)
    if recipe_path is None and not args.input_file:
        raise LmforgeError("give a recipe (lmforge train RECIPE.yaml) or --input-file FILE")
    if recipe_path is not None:  # a recipe with an `objective` (sft, dpo) runs TRL's trainer for it
        from ..training.objectives import objective_of, run_objective

        objective = objective_of(recipe_path, extra)
        if objective is not None:
            for flag, value in (("--model", args.model), ("--input-file", args.input_file)):
                if value is not None:
                    raise LmforgeError(
                        f"{flag} does not apply to {recipe_path}, a recipe of objective {objective}: its model is "
                        "model_name_or_path (--model_name_or_path DIR) and its data the recipe's data keys"
                    )
            run_objective(recipe_path, extra, {"output_dir": args.output_dir, "resume_from_checkpoint": args.resume})
            return 0
    settings = {
        "model_type": args.model,
        "train_file": args.input_file,
        "output_dir": args.output_dir,
        "resume_from_checkpoint": args.resume,
    }
    run_training(*load_recipe(recipe_path, extra, settings))
    return 0


def cmd_finetune(args: argparse.Namespace, extra: list[str]) -> int:
    from ..training import load_recipe, run_training

    recipe_path = _recipe_path(extra)
    if not recipe_path:
        raise LmforgeError("give a recipe: lmforge finetune RECIPE.yaml (with model_name_or_path and a peft: section)")
    settings = {"model_name_or_path": args.model_path, "output_dir": args.output_dir}
    model_args, data_args, training_args = load_recipe(recipe_path, extra, settings, from_saved_model=True)
    if model_args.peft is None:
        print("No peft section in the recipe: full fine-tuning (every weight trains)", file=sys.stderr)
    run_training(model_args, data_args, training_args)
    return 0


def cmd_forgetting(args: argparse.Namespace, extra: list[str]) -> int:
    from ..studies.forgetting import load_study, run_study

    recipe_path = _recipe_path(extra)
    if not recipe_path:
        raise LmforgeError("give a study recipe: lmforge forgetting RECIPE.yaml (see recipes/aksis/forgetting.yaml)")
    study = load_study(recipe_path, extra, output_dir=args.output_dir)
    results = run_study(study)
    print(f"Forgetting study done: {len(results)} results; table, plot and forgetting.md in {study.output_dir}")
    return 0


def cmd_generate(args: argparse.Namespace, extra: list[str]) -> int:
    from ..inference import TextGenerator

    if args.alpha is not None and args.interpolate_with is None:
        raise LmforgeError("--alpha is the weight of --interpolate-with TEXT_B; give both")
    generator = TextGenerator.from_pretrained(args.model_path, compile_decoding=args.compile_decoding)
    settings = generation_settings(args)
    if args.interpolate_with is not None:
        alpha = 0.5 if args.alpha is None else args.alpha
        print(generator.interpolate(args.prompt, args.interpolate_with, alpha, settings))
        return 0
    text = generator.generate(args.prompt, settings)
    print(args.prompt + text if generator.prompt_style == "continue" else text)
    return 0


def cmd_chat(args: argparse.Namespace, extra: list[str]) -> int:
    from ..inference import TextGenerator
    from .chat import run_chat

    generator = TextGenerator.from_pretrained(args.model_path, compile_decoding=args.compile_decoding)
    return run_chat(generator, generation_settings(args), system=args.system)


def cmd_evaluate(args: argparse.Namespace, extra: list[str]) -> int:
    from ..data import read_text_file
    from ..evaluation import sliding_window_perplexity
    from ..loading import load_model_and_processor

    model, tokenizer = load_model_and_processor(args.model_path)
    text = read_text_file(args.input_file)
    result = sliding_window_perplexity(
        model, tokenizer, [text], max_length=args.max_length, stride=args.stride, show_progress=True
    )
    print(f"perplexity {result.perplexity:.3f} (mean NLL {result.mean_nll:.4f} over {result.num_tokens} tokens)")
    return 0


def cmd_quickstart(args: argparse.Namespace, extra: list[str]) -> int:
    from .quickstart import run_quickstart

    return run_quickstart(args, extra)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lmforge", description="Train, run and share lmforge language models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "quickstart",
        help="Train a small model on the embedded corpus, save it, print samples.",
        usage="lmforge quickstart [--output-dir DIR] [--max-steps N] [--key value ...]",
        description="Train recipes/aksis/shakespeare.yaml on the embedded plays, save the model and print samples. "
        "Any recipe key can follow as --key value, e.g. --bf16 false.",
    )
    p.add_argument("--output-dir", default="outputs/quickstart", help="Where the model is saved.")
    p.add_argument("--max-steps", type=_positive_int, default=None, help="Training steps (default: the recipe's).")
    p.set_defaults(handler=cmd_quickstart)

    p = sub.add_parser(
        "train",
        help="Train from a YAML recipe (or one text file); any recipe key can follow as --key value.",
        usage="lmforge train [RECIPE.yaml] [--model TYPE] [--input-file FILE] [--output-dir DIR] [--resume [CHECKPOINT]] "
        "[--key value ...]",
        description="Train from a YAML recipe (see recipes/), given first, or from one text file with --input-file. "
        "Any recipe key can follow as --key value, e.g. --max_steps 200 --config_overrides.hidden_size 128.",
    )
    p.add_argument("--model", default=None, help="Model type (a key of lmforge.models.SPECS); sets model_type.")
    p.add_argument(
        "--input-file",
        "--input_file",
        default=None,
        help="Train on this UTF-8 text file (90%% train / 10%% validation).",
    )
    p.add_argument("--output-dir", default=None, help="Where checkpoints and the final model go.")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="Continue from the latest complete checkpoint in the output dir (or from CHECKPOINT).",
    )
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "finetune",
        help="Fine-tune a saved model from a YAML recipe: LoRA with a peft: section, else every weight.",
        usage="lmforge finetune RECIPE.yaml [--model-path BASE] [--output-dir DIR] [--key value ...]",
        description="Fine-tune the saved model model_name_or_path (or --model-path) as the recipe says. With a peft: "
        "section ({r: 8, lora_alpha: 16, lora_dropout: 0.05, target_modules: [...]}, targets default per model type) "
        "only a LoRA adapter trains and output_dir holds the adapter (adapter_model.safetensors). Any recipe key can "
        "follow as --key value, e.g. --peft.r 16 --max_steps 200.",
    )
    p.add_argument(
        "--model-path", "--model_path", default=None, help="The saved base model (sets model_name_or_path)."
    )
    p.add_argument("--output-dir", default=None, help="Where checkpoints and the adapter (or model) go.")
    p.set_defaults(handler=cmd_finetune)

    p = sub.add_parser(
        "forgetting",
        help="Catastrophic-forgetting study: full fine-tuning vs LoRA vs routed adapters, scored before and after.",
        usage="lmforge forgetting RECIPE.yaml [--output-dir DIR] [--key value ...]",
        description="Train (or load) a base model on corpus A, fine-tune it on each corpus B of the study recipe by "
        "every method, and write a table, a plot and forgetting.md (scores on A and B: perplexity for language models, "
        "exact match and F1 for AE-LLM; trainable parameters, time) "
        "in output_dir. See recipes/aksis/forgetting.yaml; --key value overrides a study key (--finetune.max_steps 50).",
    )
    p.add_argument("--output-dir", default=None, help="Where the study writes its runs and results.")
    p.set_defaults(handler=cmd_forgetting)

    p = sub.add_parser("generate", help="Generate text from a saved model.")
    _add_generation_options(p, seed_text=True)
    p.add_argument("--prompt", default="", help="The text to continue (or the question / dialogue to answer).")
    p.add_argument(
        "--interpolate-with",
        default=None,
        metavar="TEXT_B",
        help="LatentReasoner: decode from the mix (1 - alpha) * idea(prompt) + alpha * idea(TEXT_B) of two idea vectors.",
    )
    p.add_argument(
        "--alpha", type=float, default=None, help="Weight of --interpolate-with TEXT_B (default 0.5; 0 = the prompt)."
    )
    p.set_defaults(handler=cmd_generate)

    p = sub.add_parser("chat", help="Chat with a saved model; /reset clears the history, /exit quits.")
    _add_generation_options(p)
    p.add_argument("--system", default=None, help="A system message at the start of the conversation.")
    p.set_defaults(handler=cmd_chat)

    p = sub.add_parser("evaluate", help="Sliding-window perplexity of a saved model on a text file.")
    p.add_argument("--model-path", "--model_path", required=True, help="A saved model folder.")
    p.add_argument("--input-file", "--input_file", required=True, help="A UTF-8 text file to score.")
    p.add_argument("--max-length", type=_positive_int, default=None, help="Window length (default: the context).")
    p.add_argument("--stride", type=_positive_int, default=None, help="Window step (default: half the window).")
    p.set_defaults(handler=cmd_evaluate)

    add_share_commands(sub, _positive_int)
    add_research_commands(sub, _positive_int)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extra and args.command not in ("train", "finetune", "forgetting", "quickstart", *RECIPE_COMMANDS):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if isinstance(getattr(args, "seed", None), str):  # `--seed "start text"`: the start text, not a seed
        if args.prompt:
            parser.error("give the start text once: --prompt TEXT or --seed TEXT (a whole number is the random seed)")
        args.prompt, args.seed = args.seed, None
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.handler(args, extra))
    except LmforgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
