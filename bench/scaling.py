"""How Aksis's training cost grows: time and peak memory per step as the context grows (64 to 512) and as depth and
width grow, with the growth exponent from a least-squares fit of log(cost) on log(size).

    python bench/scaling.py --quick
    python bench/scaling.py
"""

import argparse
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import QUICK, REFERENCE, build, current_rss_mb, device, machine, peak_memory_mb, report_peak, timed


def exponent(xs: list[float], ys: list[float]) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def step_fn(size, batch: int, seq: int):
    model = build("aksis", size).to(device()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(4, size.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0)).to(device())

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--memory-child", nargs=4, type=int, metavar=("SEQ", "LAYERS", "WIDTH", "HEADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    base_size = QUICK if args.quick else REFERENCE
    repeats = args.repeats or (3 if args.quick else 5)

    if args.memory_child:
        seq, layers, width, heads = args.memory_child
        base = current_rss_mb()
        step = step_fn(
            replace(base_size, context=max(seq, 64), num_layers=layers, hidden_size=width, num_heads=heads),
            args.batch,
            seq,
        )
        step()
        report_peak(base)
        return

    print(f"# Scaling of Aksis training cost, {machine()}; batch {args.batch}, median of {repeats} steps\n")
    script = str(Path(__file__).resolve())
    quick = ["--quick"] if args.quick else []
    sweeps = {
        "context": [
            (s, base_size.num_layers, base_size.hidden_size, base_size.num_heads) for s in (64, 128, 256, 512)
        ],
        "depth": [(128, n, base_size.hidden_size, base_size.num_heads) for n in (1, 2, 4, 8)],
        "width": [(128, base_size.num_layers, w, max(1, w // 64)) for w in (128, 256, 512, 768)],
    }
    for name, points in sweeps.items():
        print(f"| {name} | ms/step | peak MiB |")
        print("| ---: | ---: | ---: |")
        times, mems, xs = [], [], []
        for seq, layers, width, heads in points:
            size = replace(base_size, context=max(seq, 64), num_layers=layers, hidden_size=width, num_heads=heads)
            step = step_fn(size, args.batch, seq)
            ms = statistics.median(timed(step) for _ in range(repeats)) * 1000
            mem = peak_memory_mb(
                script,
                [*quick, "--batch", str(args.batch), "--memory-child", str(seq), str(layers), str(width), str(heads)],
            )
            x = {"context": seq, "depth": layers, "width": width}[name]
            xs.append(x)
            times.append(ms)
            mems.append(mem)
            print(f"| {x} | {ms:,.1f} | {mem:,.0f} |")
        print(
            f"\ngrowth exponent in {name}: time ~ {name}^{exponent(xs, times):.2f}, memory ~ {name}^{exponent(xs, mems):.2f}\n"
        )


if __name__ == "__main__":
    main()
