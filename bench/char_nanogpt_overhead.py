"""Per-iteration cost of training through the Trainer, against a bare PyTorch loop, for the nanoGPT CPU recipe.

Both sides train the same CharTransformer (same initial weights), on the same blocks of the recipe's data, with the
same batch size and the same optimizer and learning-rate schedule (built by the Trainer's own
`create_optimizer_and_scheduler`), with gradient clipping:

- bare: nanoGPT's loop: pick `batch` random blocks from one tensor, forward, backward, clip, step, zero_grad;
- trainer: `LmforgeTrainer.train()` exactly as `lmforge train` builds it (builder, collator, callbacks, logging,
  progress bar), for the same number of steps, without evaluation (timed apart, below).

ms/iteration is measured after a few warm-up steps (for the Trainer, from its `on_step_end` events), so it holds data
loading, collation, logging and callbacks; the one-off cost of `train()` (start-up, end) is reported apart.
Evaluation is timed the same way: `trainer.evaluate()` on the recipe's validation blocks against a bare no-grad loop.
With `--gpt2`, the bare loop also runs a `GPT2LMHeadModel` of the same size (nanoGPT's architecture: pre-norm, GELU,
final LayerNorm), to tell the cost of the model from the cost of the training loop.

Rounds are interleaved (alternating which side runs first) and the median of the per-round ratios is reported,
because the machines are shared and noisy. On a busy machine, `--threads 1 --clock cpu` counts the CPU time of the
process instead of the wall time, which time-slicing by other processes does not inflate (with more than one thread
the CPU time also counts threads spinning while they wait, so use the wall clock there).

    python bench/char_nanogpt_overhead.py                                 # 100 steps x 5 rounds, wall clock
    python bench/char_nanogpt_overhead.py --steps 60 --threads 1 --clock cpu --gpt2   # on a busy machine
    python bench/char_nanogpt_overhead.py --train_file PATH/input.txt     # Tiny Shakespeare elsewhere

Run it from the repository root (the recipe's train_file is relative to it). Any recipe key can follow as --key value.
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback

from lmforge.training import LmforgeTrainer, load_recipe
from lmforge.training.run import build_setup, build_trainer, setup_logging

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "char_transformer" / "shakespeare_nanogpt_cpu.yaml"
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class StepClock(TrainerCallback):
    """The clock at the end of every optimizer step."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.times: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(self.clock())


def steady_ms(times: list[float], warmup: int) -> float:
    """Mean ms per step after `warmup` steps, from the clock at the end of every step."""
    return 1000 * (times[-1] - times[warmup - 1]) / (len(times) - warmup)


def gpt2_like(config: Any) -> GPT2LMHeadModel:
    """nanoGPT's architecture at the size of a CharTransformer config (GPT-2 always has biases)."""
    return GPT2LMHeadModel._from_config(
        GPT2Config(
            vocab_size=config.vocab_size,
            n_positions=config.max_position_embeddings,
            n_embd=config.hidden_size,
            n_layer=config.num_hidden_layers,
            n_head=config.num_attention_heads,
            n_inner=config.intermediate_size,
            activation_function="gelu",
            resid_pdrop=config.hidden_dropout,
            embd_pdrop=config.hidden_dropout,
            attn_pdrop=config.attention_dropout,
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
        ),
        attn_implementation="sdpa",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE), help="the recipe to measure (default: the nanoGPT CPU one)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per timed run")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of ms/iteration at the start")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or process CPU time")
    parser.add_argument("--gpt2", action="store_true", help="also time the bare loop on a GPT-2 of the same size")
    args, overrides = parser.parse_known_args()
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        # Evaluation is timed on its own, so the training runs do not evaluate (quoted: YAML reads a bare no as false).
        model_args, data_args, training_args = load_recipe(
            args.recipe, [*overrides, "--output_dir", tmp, "--max_steps", str(args.steps), "--eval_strategy", '"no"']
        )
        setup_logging(training_args)
        torch.manual_seed(training_args.seed)
        setup = build_setup(model_args, data_args, training_args)
        initial = copy.deepcopy(setup.model.state_dict())
        reference = gpt2_like(setup.model.config) if args.gpt2 else None
        reference_initial = copy.deepcopy(reference.state_dict()) if reference is not None else None
        batch = training_args.per_device_train_batch_size
        blocks = torch.tensor(setup.train_dataset["input_ids"])  # (N, block_size), as nanoGPT's train.bin
        eval_blocks = torch.tensor(setup.eval_dataset["input_ids"])
        eval_batches = eval_blocks.split(training_args.per_device_eval_batch_size)

        def fresh_trainer() -> tuple[Any, StepClock]:
            setup.model.load_state_dict(initial)
            trainer = build_trainer(setup, training_args)
            step_clock = StepClock(clock)
            trainer.add_callback(step_clock)
            return trainer, step_clock

        def run_bare(model: Any = None) -> float:
            if model is None:
                setup.model.load_state_dict(initial)
                model = setup.model
            else:
                model.load_state_dict(reference_initial)
            # A Trainer only to build the optimizer and schedule exactly as training does.
            trainer = LmforgeTrainer(model=model, args=training_args)
            trainer.create_optimizer_and_scheduler(num_training_steps=args.steps)
            optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
            model.train()
            times = []
            for _ in range(args.steps):
                x = blocks[torch.randint(len(blocks), (batch,))]
                loss = model(input_ids=x, labels=x).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), training_args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                times.append(clock())
            return steady_ms(times, args.warmup)

        def run_trainer() -> tuple[float, float]:
            trainer, step_clock = fresh_trainer()
            start = clock()
            trainer.train()
            total = clock() - start
            per_step = steady_ms(step_clock.times, args.warmup)
            return per_step, 1000 * total - per_step * args.steps

        def eval_bare() -> float:
            model = setup.model.eval()
            start = clock()
            with torch.no_grad():
                for x in eval_batches:
                    model(input_ids=x, labels=x).loss.item()
            return 1000 * (clock() - start)

        def eval_trainer() -> float:
            trainer, _ = fresh_trainer()
            start = clock()
            trainer.evaluate()
            return 1000 * (clock() - start)

        def one_round() -> dict[str, float]:
            row: dict[str, float] = {"bare": run_bare()}
            row["trainer"], row["start"] = run_trainer()
            row["eval_bare"], row["eval_trainer"] = eval_bare(), eval_trainer()
            if reference is not None:
                row["gpt2"] = run_bare(reference)
            return row

        rows = []
        for i in range(args.rounds):
            if i % 2 == 0:
                row = one_round()
            else:  # the same measurements in the opposite order
                row = {}
                if reference is not None:
                    row["gpt2"] = run_bare(reference)
                row["eval_trainer"], row["eval_bare"] = eval_trainer(), eval_bare()
                row["trainer"], row["start"] = run_trainer()
                row["bare"] = run_bare()
            rows.append(row)
            gpt2 = f"; bare GPT-2 {row['gpt2']:.1f} ms/it" if "gpt2" in row else ""
            print(
                f"round {i + 1}: bare {row['bare']:.1f} ms/it, trainer {row['trainer']:.1f} ms/it "
                f"(ratio {row['trainer'] / row['bare']:.3f}), one-off cost of train() {row['start']:.0f} ms; "
                f"eval of {len(eval_blocks)} blocks: bare {row['eval_bare']:.0f} ms, "
                f"trainer {row['eval_trainer']:.0f} ms{gpt2}",
                flush=True,
            )

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def ratio(numerator: str, denominator: str) -> float:
        return statistics.median(r[numerator] / r[denominator] for r in rows)

    print(
        f"\n{type(setup.model).__name__}, batch {batch} x {blocks.shape[1]}, {torch.get_num_threads()} torch threads, "
        f"{args.clock} clock, {args.rounds} rounds of {args.steps} steps"
    )
    print(
        f"median ms/iteration: bare {median('bare'):.1f}, trainer {median('trainer'):.1f}; "
        f"one-off cost of train() {median('start'):.0f} ms; evaluation: bare {median('eval_bare'):.0f} ms, "
        f"trainer {median('eval_trainer'):.0f} ms"
    )
    print(
        f"median paired ratio trainer/bare: per iteration {ratio('trainer', 'bare'):.3f}, "
        f"evaluation {ratio('eval_trainer', 'eval_bare'):.3f}"
    )
    if reference is not None:
        print(f"median paired ratio bare CharTransformer / bare GPT-2 (same size): {ratio('bare', 'gpt2'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
