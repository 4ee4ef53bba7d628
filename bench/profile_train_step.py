"""Where a training step's time goes, Aksis and GPT-2 side by side: torch.profiler's top operators by self CPU time
for the exact step `bench/train_throughput.py` times (forward + loss + backward + AdamW, batch 8 x 512, reference
size), at matched attention dropout (0.1 for both) by default.

    python bench/profile_train_step.py                  # AdamW fused, as the Trainer's default
    python bench/profile_train_step.py --optim loop     # torch's per-tensor AdamW loop (the bare CPU default)

Each model is profiled in its own round, one after the other; absolute times move with a shared machine, so compare
the shares within one profile.
"""

import argparse
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from common import QUICK, REFERENCE, machine
from train_throughput import make_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 layers x 256, sequences of 128")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--optim", choices=("fused", "loop"), default="fused")
    parser.add_argument("--defaults", action="store_true", help="Aksis with its own attention dropout (0.0)")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps per model")
    parser.add_argument("--rows", type=int, default=12, help="operators to print")
    args = parser.parse_args()
    size = QUICK if args.quick else REFERENCE
    seq = 128 if args.quick else size.context
    print(f"# Training step, batch {args.batch} x {seq}, {args.steps} steps, AdamW {args.optim}, {machine()}")
    for name in ("aksis", "gpt2"):
        step = make_step(name, size, "sdpa", args.batch, seq, matched_dropout=not args.defaults, optim=args.optim)
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        print(f"\n## {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
