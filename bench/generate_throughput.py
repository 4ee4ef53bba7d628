"""Generation throughput (new tokens/s) for 256 new tokens at batch 1 and 8: Aksis with its KV cache, Aksis without
a cache, and GPT2LMHeadModel with its cache, all the same size, greedy, through `generate()`.

Ratios are medians of paired, interleaved rounds (alternating order).

    python bench/generate_throughput.py --quick
    python bench/generate_throughput.py
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import QUICK, REFERENCE, build, device, machine, median_ratio, paired


def make_generate(model: torch.nn.Module, batch: int, prompt_len: int, new_tokens: int, use_cache: bool):
    ids = torch.randint(4, model.config.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device())
    kwargs = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        use_cache=use_cache,
        pad_token_id=0,
        eos_token_id=None,
    )

    @torch.no_grad()
    def run() -> None:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        assert out.shape[1] == prompt_len + new_tokens

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument(
        "--plain-linear",
        action="store_true",
        help="Aksis's linear layers without their decoding path (plain nn.Linear, the state before issue 9)",
    )
    args = parser.parse_args()
    size = QUICK if args.quick else REFERENCE
    if args.prompt_len + args.new_tokens > size.context:
        size.context = args.prompt_len + args.new_tokens
    repeats = args.repeats or (4 if args.quick else 6)
    aksis = build("aksis", size).to(device()).eval()
    if args.plain_linear:
        for module in aksis.modules():
            if hasattr(module, "max_transposed_rows"):
                module.max_transposed_rows = 0
    gpt2 = build("gpt2", size).to(device()).eval()
    print(f"# Generation throughput, {machine()}")
    head = "plain nn.Linear" if args.plain_linear else "(in, out) weight copies while decoding"
    print(
        f"size: {size}, prompt {args.prompt_len}, {args.new_tokens} new tokens, greedy, {repeats} rounds, "
        f"Aksis linear layers: {head}\n"
    )
    print(
        "| batch | Aksis cached tok/s | GPT-2 cached tok/s | Aksis uncached tok/s | Aksis/GPT-2 (cached) | Aksis cached/uncached |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in (int(b) for b in args.batches.split(",")):
        cached = make_generate(aksis, batch, args.prompt_len, args.new_tokens, True)
        baseline = make_generate(gpt2, batch, args.prompt_len, args.new_tokens, True)
        uncached = make_generate(aksis, batch, args.prompt_len, args.new_tokens, False)
        cached(), baseline()  # warm-up
        a_t, g_t = paired(cached, baseline, repeats)
        rounds = max(2, repeats // 2)  # the uncached run is slow: fewer rounds
        a2_t, u_t = paired(cached, uncached, rounds)
        new = batch * args.new_tokens
        print(
            f"| {batch} | {new / statistics.median(a_t):,.0f} | {new / statistics.median(g_t):,.0f} | "
            f"{new / statistics.median(u_t):,.0f} | {median_ratio(g_t, a_t):.3f}x | {median_ratio(u_t, a2_t):.2f}x |"
        )


if __name__ == "__main__":
    main()
