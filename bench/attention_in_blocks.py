"""Aksis's causal attention in blocks against SDPA's math path, at attention dropout 0.1 on the CPU (the training
step of `bench/train_throughput.py`'s "matched" row): the same model, once as shipped and once with
`causal_attention_in_blocks` swapped for transformers' SDPA function (what Aksis ran before). Also the attention
alone, forward + backward of one layer's (B, nh, T, hs) queries, keys and values.

    python bench/attention_in_blocks.py --repeats 6

Each ratio is the median of paired, interleaved rounds (alternating order).
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import lmforge.models.aksis.modeling_aksis as modeling

sys.path.insert(0, str(Path(__file__).parent))
from common import QUICK, REFERENCE, machine, median_ratio, paired
from train_throughput import make_step


def with_attention(step, attention):
    """`step`, run with `attention` as Aksis's blocked attention function."""

    def run() -> None:
        shipped = modeling.causal_attention_in_blocks
        modeling.causal_attention_in_blocks = attention
        try:
            step()
        finally:
            modeling.causal_attention_in_blocks = shipped

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--optim", choices=("fused", "loop"), default="fused")
    args = parser.parse_args()
    size = QUICK if args.quick else REFERENCE
    seq = 128 if args.quick else size.context
    print(f"# Attention in blocks against SDPA's math path, {machine()}")
    print(f"size: {size}, batch {args.batch} x seq {seq}, attention dropout 0.1, {args.repeats} rounds\n")
    print("| what | blocks s | SDPA math s | speed-up (median of paired rounds) |")
    print("| --- | ---: | ---: | ---: |")

    heads, head_dim = size.num_heads, size.hidden_size // size.num_heads
    qkv = torch.randn(args.batch, seq, 3, heads, head_dim, requires_grad=True)

    def attention_step(function):
        def run() -> None:
            query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            out, _ = function(module, query, key, value, None, scaling=head_dim**-0.5, dropout=0.1)
            out.sum().backward()
            qkv.grad = None

        return run

    module = torch.nn.Module().train()
    blocks, math = attention_step(modeling.causal_attention_in_blocks), attention_step(sdpa_attention_forward)
    blocks(), math()
    blocks_t, math_t = paired(blocks, math, args.repeats)
    print(
        f"| one layer's attention, forward + backward | {statistics.median(blocks_t):.3f} | "
        f"{statistics.median(math_t):.3f} | {median_ratio(math_t, blocks_t):.3f}x |"
    )

    step = make_step("aksis", size, "sdpa", args.batch, seq, matched_dropout=True, optim=args.optim)
    blocks, math = step, with_attention(step, sdpa_attention_forward)
    math()
    blocks_t, math_t = paired(blocks, math, args.repeats)
    print(
        f"| Aksis training step (AdamW {args.optim}) | {statistics.median(blocks_t):.3f} | "
        f"{statistics.median(math_t):.3f} | {median_ratio(math_t, blocks_t):.3f}x |"
    )


if __name__ == "__main__":
    main()
