"""Where the time goes: torch.profiler's top operators for one model, in a training step (forward + backward + AdamW)
or in cached decoding steps (one new token per sequence, the cache held at `--cache-len` tokens).

The "before" and "after" of issue 9 are two runs of this script:

    python bench/profile_step.py --mode train --quick --attention-dropout 0.1   # before: GPT-2's attention dropout
    python bench/profile_step.py --mode train --quick                           # after: Aksis's default of 0.0
    python bench/profile_step.py --mode decode --batch 1 --plain-linear --dynamic-cache  # before
    python bench/profile_step.py --mode decode --batch 1                                # after
    python bench/profile_step.py --mode decode --batch 1 --model gpt2                   # the baseline
"""

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

sys.path.insert(0, str(Path(__file__).parent))
from common import QUICK, REFERENCE, build, device, machine


def train_step(model: torch.nn.Module, batch: int, seq: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(4, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device())
    model.train()

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def decode_step(model: torch.nn.Module, batch: int, cache_len: int, dynamic_cache: bool = False):
    """One cached decoding step; the cache is cropped back afterwards so every step sees the same length."""
    model.eval()
    ids = torch.randint(4, model.config.vocab_size, (batch, cache_len), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device())
    with torch.no_grad():  # the model's own cache (AksisCache for Aksis, DynamicCache for GPT-2) or a DynamicCache
        cache = DynamicCache(config=model.config) if dynamic_cache else None
        cache = model(input_ids=ids, past_key_values=cache, use_cache=True).past_key_values
    new = ids[:, -1:]
    mask = torch.ones(batch, cache_len + 1, dtype=torch.long, device=device())
    position_ids = torch.full((batch, 1), cache_len, device=device())

    @torch.no_grad()
    def step() -> None:
        model(
            input_ids=new,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.crop(-1)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("aksis", "gpt2"), default="aksis")
    parser.add_argument("--mode", choices=("train", "decode"), default="train")
    parser.add_argument("--quick", action="store_true", help="4 layers x 256 instead of the reference 6 x 512")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=None, help="training tokens per sequence (default 128 / 512)")
    parser.add_argument("--cache-len", type=int, default=128, help="cached tokens in decode mode")
    parser.add_argument("--steps", type=int, default=None, help="profiled steps (default 3 train, 100 decode)")
    parser.add_argument("--attention-dropout", type=float, default=None, help="Aksis only (default: its config's)")
    parser.add_argument(
        "--plain-linear",
        action="store_true",
        help="Aksis only: no decoding path in its linear layers (plain nn.Linear)",
    )
    parser.add_argument(
        "--dynamic-cache", action="store_true", help="decode with a DynamicCache (Aksis: not AksisCache)"
    )
    parser.add_argument("--rows", type=int, default=15, help="operators to print")
    args = parser.parse_args()
    size = QUICK if args.quick else REFERENCE
    model = build(args.model, size).to(device())
    if args.model == "aksis":
        if args.attention_dropout is not None:
            for layer in model.model.layers:
                layer.self_attn.attention_dropout = args.attention_dropout
        if args.mode == "decode" and not args.plain_linear:
            for module in model.modules():  # decode mode stands for generate(), which turns the decoding path on
                if hasattr(module, "start_decoding"):
                    module.start_decoding()
    if args.mode == "train":
        seq = args.seq or (128 if args.quick else size.context)
        step, steps = train_step(model, args.batch, seq), args.steps or 3
        what = f"training step, batch {args.batch} x {seq}"
    else:
        step, steps = decode_step(model, args.batch, args.cache_len, args.dynamic_cache), args.steps or 100
        cache = "DynamicCache" if args.dynamic_cache or args.model == "gpt2" else "AksisCache"
        what = f"decoding step, batch {args.batch}, {args.cache_len} cached tokens in a {cache}"
    for _ in range(2):
        step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(f"# {args.model}, {what}, {steps} steps, {machine()}")
    dropout = model.config.attention_dropout if args.model == "aksis" else model.config.attn_pdrop
    if args.model == "aksis" and args.attention_dropout is not None:
        dropout = args.attention_dropout
    decoding = args.model == "aksis" and args.mode == "decode" and not args.plain_linear
    linear = "(in, out) weight copies while decoding" if decoding else "plain nn.Linear"
    print(f"size: {size}, attention dropout {dropout}, linear layers: {linear}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
