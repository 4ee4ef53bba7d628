"""Training throughput (tokens/s of forward + backward + AdamW step) and peak memory: Aksis vs GPT2LMHeadModel.

Both models have the same vocabulary, context, width, depth, heads, FFN, residual dropout, dtype, batch and sequence
length. Rows:
- "defaults": each model with its own default attention dropout (Aksis 0.0, which lets SDPA take its fused causal
  kernel; GPT-2 0.1, which sends SDPA to the math path);
- "matched": Aksis with GPT-2's attention dropout of 0.1 too, the like-for-like comparison of the two implementations;
- eager attention, and (with --compile) torch.compile of both models.
Both models take the same AdamW: by default the fused one (`fused=True`, what the Trainer's default
`optim="adamw_torch_fused"` builds), or with `--optim loop` torch's per-tensor loop (the CPU default of a bare
`torch.optim.AdamW`, which earlier runs used).
Each ratio is the median of paired, interleaved rounds (alternating order). Peak memory is measured in a fresh
process per model.

    python bench/train_throughput.py --quick        # a few minutes on 2 CPU cores
    python bench/train_throughput.py                # the reference size (6 x 512, context 512)
    python bench/train_throughput.py --only matched # only the matched-dropout timings (no memory)
    python bench/train_throughput.py --only bf16 --quick --batch 8   # Aksis: bf16 autocast against fp32
    python bench/train_throughput.py --only muon --quickstart --batch 16 --bf16   # Muon + AdamW against AdamW
    python bench/train_throughput.py --only dropout   # Aksis's CPU dropout against nn.functional.dropout
    python bench/train_throughput.py --only skip_logits --quickstart --muon   # the loss without the logits

`--only bf16` times Aksis alone, its fp32 step against the same step under bf16 autocast (`torch.autocast`, weights
and AdamW in fp32: what the Trainer's `bf16: true` does), paired, both at its default dropouts.
`--only muon` times Aksis alone, its step with AdamW against the same step with the recipe key `muon: true`'s optimizer
(`lmforge.training.optimizers`: Muon on the hidden matrices, the same AdamW on the rest), paired; `--bf16` runs both
under bf16 autocast, as `lmforge quickstart` does on a CPU with bf16 instructions.
`--only skip_logits` times Aksis alone, its step with the loss of its logits against the same step with
`skip_logits=True` (the training argument `skip_logits: true`: torch's chunked `linear_cross_entropy`, no logits
held), paired; `--muon` gives both Muon + AdamW, as the quickstart trains.
`--only dropout` times Aksis alone at matched dropout, its step with its own dropout (`dropout_from_random_bits`, a
mask from 32 random bits per element) against the same step with `nn.functional.dropout` in its place, paired; and
first the two dropouts alone, forward + backward on one layer's attention probabilities in blocks of 128 queries.
"""

import argparse
import contextlib
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch

import lmforge.models.aksis.modeling_aksis as aksis_modeling
from lmforge.training.optimizers import muon_with_adamw

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    QUICK,
    QUICKSTART,
    REFERENCE,
    build,
    current_rss_mb,
    device,
    machine,
    median_ratio,
    paired,
    peak_memory_mb,
    report_peak,
)


def make_step(
    name: str,
    size,
    attn: str,
    batch: int,
    seq: int,
    compile_model: bool = False,
    matched_dropout: bool = False,
    optim: str = "fused",
    bf16: bool = False,
    muon: bool = False,
    torch_dropout: bool = False,
    skip_logits: bool = False,
):
    model = build(name, size, attn, matched_dropout).to(device()).train()
    adamw = {"fused": optim == "fused", "foreach": False}
    if muon:
        matrices = [name for name, param in model.named_parameters() if param.ndim == 2]
        optimizer = muon_with_adamw(model, matrices, lr=1e-4, weight_decay=0.1, adamw_kwargs=adamw)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **adamw)
    forward = torch.compile(model) if compile_model else model
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, size.vocab_size, (batch, seq), generator=generator).to(device())

    def step() -> None:
        with torch.autocast(device().type, dtype=torch.bfloat16, enabled=bf16), nn_functional_dropout(torch_dropout):
            loss = forward(input_ids=ids, labels=ids, **({"skip_logits": True} if skip_logits else {})).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (allocations, compile)
    return step


def torch_dropout(hidden_states: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`nn.functional.dropout` with the signature of Aksis's `dropout_from_random_bits`."""
    return torch.nn.functional.dropout(hidden_states, p=p, training=training)


def nn_functional_dropout(enabled: bool) -> contextlib.AbstractContextManager:
    """With `enabled`, Aksis's dropouts call `nn.functional.dropout` instead of its own `dropout_from_random_bits`."""
    if not enabled:
        return contextlib.nullcontext()
    return mock.patch.object(aksis_modeling, "dropout_from_random_bits", torch_dropout)


def dropout_alone(size, batch: int, seq: int) -> None:
    """The two dropouts, forward + backward, on one layer's attention probabilities (blocks of 128 queries)."""
    probs = torch.rand(batch, size.num_heads, 128, seq, requires_grad=True)  # (B, nh, block, T)
    p = size.dropout

    def five_calls(dropout) -> None:
        for _ in range(5):
            dropout(probs, p, True).sum().backward()
            probs.grad = None

    own_t, torch_t = paired(
        lambda: five_calls(aksis_modeling.dropout_from_random_bits), lambda: five_calls(torch_dropout), 8
    )
    print(f"dropout p={p} alone, forward + backward, {tuple(probs.shape)}, 5 calls a round, 8 paired rounds:\n")
    print("| dropout | ms per call |\n| --- | ---: |")
    for label, times in (("nn.functional.dropout", torch_t), ("dropout_from_random_bits", own_t)):
        print(f"| {label} | {statistics.median(times) / 5 * 1e3:.1f} |")
    print(f"\ndropout_from_random_bits / nn.functional.dropout speed: {median_ratio(torch_t, own_t):.3f}x\n")


def repeated(step, steps: int):
    """One timed round: `steps` optimizer steps."""
    return lambda: [step() for _ in range(steps)]


def aksis_step_against(size, batch: int, seq: int, steps: int, repeats: int, optim: str, baseline, candidate) -> None:
    """Aksis alone, two variants of its step (each a label and `make_step` keywords), paired rounds."""
    (base_label, base_kwargs), (cand_label, cand_kwargs) = baseline, candidate
    print(f"size: {size}, batch {batch} x seq {seq}, {steps} steps per round, {repeats} rounds, AdamW {optim}\n")
    base_step = make_step("aksis", size, "sdpa", batch, seq, optim=optim, **base_kwargs)
    cand_step = make_step("aksis", size, "sdpa", batch, seq, optim=optim, **cand_kwargs)
    cand_t, base_t = paired(repeated(cand_step, steps), repeated(base_step, steps), repeats)
    tokens = batch * seq * steps
    print("| Aksis step | tok/s | ms per step |\n| --- | ---: | ---: |")
    for label, times in ((base_label, base_t), (cand_label, cand_t)):
        print(f"| {label} | {tokens / statistics.median(times):,.0f} | {statistics.median(times) / steps * 1e3:.1f} |")
    print(f"\n{cand_label} / {base_label} throughput (median of paired rounds): {median_ratio(base_t, cand_t):.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller model and fewer rounds")
    parser.add_argument(
        "--quickstart", action="store_true", help="the quickstart recipe's model (4 x 64, context 128), fewer rounds"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=None, help="tokens per sequence (default: the context)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per timed round")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile variants")
    parser.add_argument(
        "--optim", choices=("fused", "loop"), default="fused", help="AdamW of both models (default: fused)"
    )
    parser.add_argument(
        "--only",
        choices=("matched", "bf16", "muon", "dropout", "skip_logits"),
        default=None,
        help="time only the rows at matched attention dropout, or Aksis bf16 autocast against fp32, or Aksis with "
        "Muon + AdamW against AdamW, or Aksis's CPU dropout against nn.functional.dropout, or Aksis's loss without "
        "its logits (skip_logits) against the loss of its logits; no memory",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="with --only muon or skip_logits: both steps under bf16 autocast"
    )
    parser.add_argument("--muon", action="store_true", help="with --only skip_logits: both steps with Muon + AdamW")
    parser.add_argument("--memory-child", nargs=3, metavar=("MODEL", "ATTN", "DROPOUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = QUICKSTART if args.quickstart else QUICK if args.quick else REFERENCE
    small = args.quick or args.quickstart
    seq = args.seq or (128 if small else size.context)
    repeats = args.repeats or (6 if small else 8)
    steps = args.steps or (3 if small else 2)

    if args.memory_child:
        base = current_rss_mb()
        name, attn, dropout = args.memory_child
        step = make_step(name, size, attn, args.batch, seq, matched_dropout=dropout == "matched", optim=args.optim)
        for _ in range(2):
            step()
        report_peak(base)
        return

    print(f"# Training throughput, {machine()}")
    if args.only in ("bf16", "muon", "dropout", "skip_logits"):
        autocast = " (bf16 autocast)" if args.bf16 else ""
        pair = {
            "bf16": (("fp32", {}), ("bf16 autocast", {"bf16": True})),
            "muon": (
                (f"AdamW{autocast}", {"bf16": args.bf16}),
                (f"Muon + AdamW{autocast}", {"bf16": args.bf16, "muon": True}),
            ),
            "skip_logits": (
                (f"logits{autocast}", {"bf16": args.bf16, "muon": args.muon}),
                (f"skip_logits{autocast}", {"bf16": args.bf16, "muon": args.muon, "skip_logits": True}),
            ),
            "dropout": (
                ("nn.functional.dropout, matched dropout", {"matched_dropout": True, "torch_dropout": True}),
                ("dropout_from_random_bits, matched dropout", {"matched_dropout": True}),
            ),
        }[args.only]
        if args.only == "dropout":
            dropout_alone(size, args.batch, seq)
        aksis_step_against(size, args.batch, seq, steps, repeats, args.optim, *pair)
        return
    print(f"size: {size}, batch {args.batch} x seq {seq}, {steps} steps per round, {repeats} rounds")
    print(f"AdamW: {args.optim} (both models)\n")
    tokens = args.batch * seq * steps
    variants = [("sdpa", "defaults", False), ("sdpa", "matched", False), ("eager", "defaults", False)]
    if args.compile:
        variants += [("sdpa", "defaults", True), ("sdpa", "matched", True)]
    timed_variants = [v for v in variants if args.only is None or v[1] == args.only]
    print(
        "| attention | attention dropout | compile | Aksis tok/s | GPT-2 tok/s | Aksis / GPT-2 (median of paired rounds) |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for attn, dropout, compiled in timed_variants:
        matched = dropout == "matched"
        aksis_step = make_step("aksis", size, attn, args.batch, seq, compiled, matched, args.optim)
        gpt2_step = make_step("gpt2", size, attn, args.batch, seq, compiled, optim=args.optim)
        aksis_t, gpt2_t = paired(repeated(aksis_step, steps), repeated(gpt2_step, steps), repeats)
        ratio = median_ratio(gpt2_t, aksis_t)  # throughput ratio = time ratio inverted
        print(
            f"| {attn} | {dropout} | {compiled} | {tokens / statistics.median(aksis_t):,.0f} | "
            f"{tokens / statistics.median(gpt2_t):,.0f} | {ratio:.3f}x |"
        )

    if args.only:
        return
    print(
        "\n| attention | attention dropout | Aksis peak MiB | GPT-2 peak MiB | Aksis / GPT-2 (median of paired rounds) |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    script = str(Path(__file__).resolve())
    extra = ["--batch", str(args.batch), "--seq", str(seq), "--optim", args.optim] + (
        ["--quick"] if args.quick else []
    )
    for attn, dropout, _ in variants[:3]:
        aksis_m, gpt2_m = [], []
        for i in range(3):
            order = [("aksis", aksis_m), ("gpt2", gpt2_m)]
            for name, sink in order if i % 2 == 0 else order[::-1]:
                sink.append(peak_memory_mb(script, [*extra, "--memory-child", name, attn, dropout]))
        print(
            f"| {attn} | {dropout} | {statistics.median(aksis_m):,.0f} | {statistics.median(gpt2_m):,.0f} | "
            f"{median_ratio(aksis_m, gpt2_m):.3f}x |"
        )


if __name__ == "__main__":
    main()
