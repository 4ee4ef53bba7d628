"""nanoGPT's own CPU command beside `recipes/char_transformer/shakespeare_nanogpt_cpu.yaml`, whole process each.

Each round runs both, back to back, alternating which goes first, as two fresh processes (so import time, data
preparation, evaluation and saving all count), and records each one's wall time and final validation loss. The
report is the median of the per-round wall-time ratios (lmforge / nanoGPT) and both median validation losses.

nanoGPT is never vendored: a checkout at the fixed commit below is cloned when the script is run (by hand; CI never
runs it), or given with `--nanogpt-dir`. Its data comes from the same Tiny Shakespeare file lmforge trains on, copied
into the checkout's `data/shakespeare_char/` before its `prepare.py` runs (so nothing is downloaded).

    python bench/nanogpt_side_by_side.py --rounds 3
    python bench/nanogpt_side_by_side.py --nanogpt-dir ~/src/nanoGPT --input-file PATH/input.txt --rounds 5

nanoGPT's command is the one its README gives for a CPU (shakespeare_char, 4 x 128, 2000 iterations, block 64,
batch 12, no compile, dropout 0). Both validation losses are nats per character of Tiny Shakespeare's last 10%.
"""

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NANOGPT_URL = "https://github.com/karpathy/nanoGPT"
NANOGPT_COMMIT = "3adf61e154c3fe3fca428ad6bc3818b27a3b8291"
NANOGPT_CPU_COMMAND = [
    "train.py",
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]
RECIPE = "recipes/char_transformer/shakespeare_nanogpt_cpu.yaml"
VAL_LOSS = re.compile(r"val loss (\d+\.\d+)")


def checkout(nanogpt_dir: str | None, workdir: Path) -> Path:
    """An existing nanoGPT checkout, or a fresh clone at NANOGPT_COMMIT."""
    if nanogpt_dir is not None:
        path = Path(nanogpt_dir).expanduser()
        if not (path / "train.py").is_file():
            sys.exit(f"--nanogpt-dir {path}: no train.py there; give a nanoGPT checkout")
        return path
    path = workdir / "nanoGPT"
    try:
        subprocess.run(["git", "clone", "--quiet", NANOGPT_URL, str(path)], check=True)
        subprocess.run(["git", "-C", str(path), "checkout", "--quiet", NANOGPT_COMMIT], check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        sys.exit(f"could not clone {NANOGPT_URL} at {NANOGPT_COMMIT[:8]} ({err}); give a checkout with --nanogpt-dir")
    return path


def prepare_nanogpt_data(nanogpt: Path, input_file: Path) -> None:
    data = nanogpt / "data" / "shakespeare_char"
    shutil.copyfile(input_file, data / "input.txt")
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True)


def run_nanogpt(nanogpt: Path, out_dir: Path) -> tuple[float, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *NANOGPT_CPU_COMMAND, f"--out_dir={out_dir}"],
        cwd=nanogpt,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"nanoGPT failed:\n{done.stderr[-2000:]}")
    losses = VAL_LOSS.findall(done.stdout)
    if not losses:
        sys.exit(f"nanoGPT printed no validation loss:\n{done.stdout[-2000:]}")
    return seconds, float(losses[-1])


def run_lmforge(input_file: Path, out_dir: Path, extra: list[str]) -> tuple[float, float]:
    command = ["lmforge", "train", RECIPE, "--train_file", str(input_file), "--output_dir", str(out_dir), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"lmforge failed:\n{done.stderr[-2000:]}")
    metrics = json.loads((out_dir / "eval_results.json").read_text())
    return seconds, float(metrics["eval_loss"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--nanogpt-dir", default=None, help=f"a nanoGPT checkout (default: clone {NANOGPT_COMMIT[:8]})"
    )
    parser.add_argument("--input-file", default="../shared/data/tinyshakespeare/input.txt", help="Tiny Shakespeare")
    parser.add_argument("--rounds", type=int, default=3)
    args, extra = parser.parse_known_args()  # extra: recipe keys for lmforge, --key value

    input_file = Path(args.input_file)
    if not input_file.is_file():
        sys.exit(f"--input-file {input_file}: not found; give the path of Tiny Shakespeare's input.txt")
    if not Path(RECIPE).is_file():
        sys.exit(f"{RECIPE} not found: run this from the repository root")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        nanogpt = checkout(args.nanogpt_dir, workdir)
        prepare_nanogpt_data(nanogpt, input_file)
        results: dict[str, list[tuple[float, float]]] = {"lmforge": [], "nanoGPT": []}
        for index in range(args.rounds):
            order = ["lmforge", "nanoGPT"] if index % 2 == 0 else ["nanoGPT", "lmforge"]
            for name in order:
                out_dir = workdir / f"{name}-{index}"
                if name == "nanoGPT":
                    results[name].append(run_nanogpt(nanogpt, out_dir))
                else:
                    results[name].append(run_lmforge(input_file, out_dir, extra))
                seconds, loss = results[name][-1]
                print(f"round {index + 1} {name:8s} wall {seconds:6.1f} s  validation loss {loss:.4f}", flush=True)
    ratios = [ours[0] / theirs[0] for ours, theirs in zip(results["lmforge"], results["nanoGPT"], strict=True)]
    print(f"\n{args.rounds} rounds, alternating order; nanoGPT at {NANOGPT_COMMIT[:8]}")
    for name, runs in results.items():
        print(
            f"{name:8s} median wall {statistics.median(s for s, _ in runs):6.1f} s, "
            f"median validation loss {statistics.median(loss for _, loss in runs):.4f}"
        )
    print(f"wall-time ratio lmforge / nanoGPT (median of paired rounds): {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
