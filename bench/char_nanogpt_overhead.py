"""Per-iteration cost of training through the Trainer, against a bare PyTorch loop, for the nanoGPT CPU recipe.

Both sides train the same CharTransformer (same initial weights), on the same blocks of the recipe's data, with the
same batch size and the same optimizer and learning-rate schedule (built by the Trainer's own
`create_optimizer_and_scheduler`), with gradient clipping:

- bare: nanoGPT's loop: pick `batch` random blocks from one tensor, forward, backward, clip, step, zero_grad;
- trainer: `LmforgeTrainer.train()` exactly as `lmforge train` builds it (builder, collator, callbacks, logging,
  progress bar), for the same number of steps.

ms/iteration is measured after a few warm-up steps (per step, from the Trainer's `on_step_end` events), so it holds
data loading, collation, logging and callbacks but not the one-off start of `train()`, which is reported apart.
Evaluation is timed the same way: `trainer.evaluate()` on the recipe's validation blocks against a bare no-grad loop.
Rounds are interleaved (alternating which side runs first) and the median of the per-round ratios is reported,
because the machines are shared and noisy. On a busy machine, `--threads 1 --clock cpu` counts the CPU time of the
process instead of the wall time, which time-slicing by other processes does not inflate (with more than one thread
the CPU time also counts threads spinning while they wait, so use the wall clock there).

    python bench/char_nanogpt_overhead.py                         # 100 steps x 5 rounds, the recipe's data
    python bench/char_nanogpt_overhead.py --steps 60 --threads 1 --clock cpu     # on a busy machine
    python bench/char_nanogpt_overhead.py --train_file PATH/input.txt              # data elsewhere

Run it from the repository root (the recipe's train_file is relative to it). Any recipe key can follow as --key value.
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from lmforge.training import load_recipe
from lmforge.training.run import build_setup, build_trainer, setup_logging

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "char_transformer" / "shakespeare_nanogpt_cpu.yaml"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


class StepClock(TrainerCallback):
    """The time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(clock())


def steady_ms(times: list[float], warmup: int) -> float:
    """Mean ms per step after `warmup` steps, from a list of end-of-step times."""
    return 1000 * (times[-1] - times[warmup - 1]) / (len(times) - warmup)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE), help="the recipe to measure (default: the nanoGPT CPU one)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per timed run")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of ms/iteration at the start")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved (bare, trainer) pairs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or process CPU time")
    args, overrides = parser.parse_known_args()
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_args, data_args, training_args = load_recipe(
            args.recipe,
            [*overrides, "--output_dir", tmp, "--max_steps", str(args.steps), "--disable_tqdm", "false"],
        )
        setup_logging(training_args)
        torch.manual_seed(training_args.seed)
        setup = build_setup(model_args, data_args, training_args)
        initial = copy.deepcopy(setup.model.state_dict())
        batch = training_args.per_device_train_batch_size
        blocks = torch.tensor(setup.train_dataset["input_ids"])  # (N, block_size), as nanoGPT's train.bin
        eval_blocks = torch.tensor(setup.eval_dataset["input_ids"])
        eval_batches = eval_blocks.split(training_args.per_device_eval_batch_size)

        def fresh_trainer() -> tuple[Any, StepClock]:
            setup.model.load_state_dict(initial)
            trainer = build_trainer(setup, training_args)
            step_clock = StepClock()
            trainer.add_callback(step_clock)
            return trainer, step_clock

        def run_bare() -> float:
            trainer, _ = fresh_trainer()  # only for its optimizer and schedule
            trainer.create_optimizer_and_scheduler(num_training_steps=args.steps)
            optimizer, scheduler, model = trainer.optimizer, trainer.lr_scheduler, setup.model
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
            return per_step, 1000 * total - per_step * args.steps  # one-off cost of train() beyond its steps

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

        rows = []
        for i in range(args.rounds):
            if i % 2 == 0:
                bare = run_bare()
                (step, startup), ev_t, ev_b = run_trainer(), eval_trainer(), eval_bare()
            else:
                (step, startup), ev_t, ev_b = run_trainer(), eval_trainer(), eval_bare()
                bare = run_bare()
            rows.append((bare, step, startup, ev_b, ev_t))
            print(
                f"round {i + 1}: bare {bare:.1f} ms/it, trainer {step:.1f} ms/it (ratio {step / bare:.3f}), "
                f"train() start {startup:.0f} ms; eval of {len(eval_blocks)} blocks: bare {ev_b:.0f} ms, "
                f"trainer {ev_t:.0f} ms",
                flush=True,
            )

    bare_ms = statistics.median(r[0] for r in rows)
    trainer_ms = statistics.median(r[1] for r in rows)
    startup_ms = statistics.median(r[2] for r in rows)
    eval_ratio = statistics.median(r[4] / r[3] for r in rows)
    ratio = statistics.median(r[1] / r[0] for r in rows)
    threads = torch.get_num_threads()
    print(
        f"\n{type(setup.model).__name__}, batch {batch} x {blocks.shape[1]}, {threads} torch threads, {args.clock} clock"
    )
    print(f"median ms/iteration: bare {bare_ms:.1f}, trainer {trainer_ms:.1f}; train() start {startup_ms:.0f} ms")
    print(f"median paired ratio trainer/bare, per iteration: {ratio:.3f}; evaluation: {eval_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
