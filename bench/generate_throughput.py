"""Generation throughput (new tokens/s) for 256 new tokens, greedy, through `generate()`, every batch-1 figure beside
its bound.

Batch 1 runs these variants, all the same size, interleaved in each round (order reversed every other round):
- Aksis eager: its `AksisCache` (dynamic), fp32;
- Aksis static + compile: `cache_implementation="static"` with transformers' own compiled decoding step
  (`compile_config`, which on the CPU needs `_compile_all_devices`), fp32;
- Aksis bf16 static + compile: the same with bf16 weights (against its own bound);
- GPT-2 eager (`DynamicCache`) and GPT-2 static + compile, fp32: "GPT-2 best" is the faster of the two;
- Aksis fp32 matrix-vector products alone (`matvec_steps`), the products with the model's linear and head weights at
  batch 1, 256 times, with nothing else, through the kernels Aksis's decoding takes on this CPU: where MKL streams the
  product on every core (an Intel CPU, `mkl_products_stream_on_every_core`), the plain product, eager and compiled;
  elsewhere eager `torch.mm` on the (in, out) copies Aksis's eager decoding uses, and compiled the multiply-and-sum
  reductions Aksis's compiled step runs. They read what a step's weights cost and show the ceiling each kind of kernel
  leaves on this machine below the bandwidth bound (their bound counts the weights only);
- Aksis and GPT-2 exported + AOTInductor: each model's decoding step exported with transformers' ExecuTorch entry
  point (`convert_and_export_with_cache`) and compiled ahead of time (`aoti_compile_and_package`), driven by a greedy
  loop of the bench's own, one token a call, prompt included (`make_exported`). No `generate()` and no Dynamo guards
  around the step: it shows how much of the bound the step itself reaches outside transformers' decoding loop. Its
  tokens must equal eager's;
- Aksis uncached (fewer rounds, paired with Aksis eager);
- where the compiled step's time goes: Aksis static + compile again, with a timer around its compiled forward, split
  into the forward (Dynamo's guard check and the compiled graph) and the rest of `generate()`'s loop; beside it the
  products alone, and the fraction of the bound the step would reach if its forward took only its products;
- both models' static + compile again under `torch.compiler.set_stance(skip_guard_eval_unsafe=True)`, which skips
  Dynamo's guard check once a graph is compiled. PyTorch calls it unsafe (a changed model or input would not be
  noticed), so it is not either model's "best"; it shows what the guard check costs. Its tokens must equal eager's.

Bound: the memory bandwidth measured in the same run (`measure_bandwidth`, the better of copy and triad, measured once
per round between the variants; the median of the rounds) divided by
the bytes a decoding step reads per token (weights in their dtype + the KV cache at the mean cached length of the
run, `decode_bytes_per_token`). The fraction is tokens/s over that bound. The compiled path must give the eager
path's greedy tokens (asserted, fp32). Batches above 1 keep the former row: Aksis cached, GPT-2 cached, uncached.

Ratios are medians of the per-round ratios.

    python bench/generate_throughput.py --quick
    python bench/generate_throughput.py --batches 1 --repeats 3
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import CompileConfig

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    QUICK,
    REFERENCE,
    build,
    decode_bytes_per_token,
    device,
    machine,
    matvec_steps,
    measure_bandwidth,
    median_ratio,
    paired,
    rounds,
    timed,
)

MATVEC = "Aksis fp32 matrix-vector products alone, eager"
MATVEC_COMPILED = "Aksis fp32 matrix-vector products alone, compiled"
BANDWIDTH = "bandwidth"
NO_GUARDS = " static + compile, guard check skipped (unsafe)"
EXPORTED = " exported + AOTInductor, own greedy loop (no generate())"


def compile_config() -> CompileConfig:
    """transformers' compiled decoding step on any device: `generate()` compiles only on accelerators unless
    `_compile_all_devices` is set (`GenerationMixin._valid_auto_compile_criteria`). "default" mode: "reduce-overhead"
    means CUDA graphs, which the CPU has not."""
    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True
    return config


def make_generate(
    model: torch.nn.Module, batch: int, prompt_len: int, new_tokens: int, use_cache: bool, compiled: bool = False
):
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
    if compiled:
        kwargs.update(cache_implementation="static", compile_config=compile_config())
    result: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def run() -> torch.Tensor:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
        assert out.shape[1] == prompt_len + new_tokens
        result["last"] = out
        return out

    return run


def make_exported(model: torch.nn.Module, prompt_len: int, new_tokens: int) -> Callable[[], torch.Tensor]:
    """Batch-1 greedy decoding through the model's exported step, compiled ahead of time: transformers' ExecuTorch
    entry point (`convert_and_export_with_cache`: one token and its cache position in, logits out, a static cache
    inside), then AOTInductor (`aoti_compile_and_package`). No `generate()` and no Dynamo guards: a loop feeds the
    prompt one token at a time, then each greedy token (docs/scaling.md). Returns the same (1, prompt + new) tokens
    as `make_generate`'s run, for the same prompt."""
    from transformers.integrations.executorch import convert_and_export_with_cache

    ids = torch.randint(4, model.config.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(0))
    exportable = copy.deepcopy(model)  # the export sets a static cache in the generation config: not on `model`
    exportable.generation_config.cache_implementation = "static"
    exportable.generation_config.cache_config = {"batch_size": 1, "max_cache_len": prompt_len + new_tokens}
    with torch.no_grad():
        exported = convert_and_export_with_cache(exportable, ids[:, :1], torch.tensor([0]))
    with tempfile.TemporaryDirectory() as folder:  # the package is only read while loading
        package = torch._inductor.aoti_compile_and_package(exported, package_path=str(Path(folder) / "step.pt2"))
        step = torch._inductor.aoti_load_package(package)
    positions = [torch.tensor([i]) for i in range(prompt_len + new_tokens)]

    @torch.no_grad()
    def run() -> torch.Tensor:
        tokens = ids[0].tolist()
        for position in range(prompt_len + new_tokens - 1):
            logits = step(input_ids=torch.tensor([[tokens[position]]]), cache_position=positions[position])
            if position >= prompt_len - 1:
                tokens.append(int(logits[0, -1].argmax()))
        return torch.tensor([tokens])

    return run


def guard_check_skipped(run: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """`run` (a compiled `generate()`, compiled already) with Dynamo's guard check skipped: only the guards that tell
    apart the graphs compiled for one function still run (`torch.compiler.set_stance`)."""

    def skipped() -> torch.Tensor:
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return run()

    return skipped


def step_split(model: torch.nn.Module, run: Callable[[], torch.Tensor], repeats: int) -> dict[str, float]:
    """Seconds per run of `run` (a compiled `generate()`, compiled already): `total`, and `forward`, the part spent
    inside the model's compiled call (transformers' `get_compiled_call`; the Dynamo guard check and the graph), for
    each of `repeats` runs. The rest is `generate()`'s own loop and the eager prefill."""
    compiled_call = model._compiled_call
    spent: list[float] = []

    def timed_call(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        out = compiled_call(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out

    model._compiled_call = timed_call
    totals, forwards = [], []
    try:
        for _ in range(repeats):
            spent.clear()
            totals.append(timed(run))
            forwards.append(sum(spent))
    finally:
        model._compiled_call = compiled_call
    return {"total": statistics.median(totals), "forward": statistics.median(forwards)}


def plain_products(model: torch.nn.Module) -> bool:
    """Whether the model's linear layers decode with the plain product (MKL on an Intel CPU streams it on every core:
    `mkl_products_stream_on_every_core`), not with their decoding paths."""
    return any(getattr(module, "_plain_products", False) for module in model.modules())


def batch_one(aksis, gpt2, args, size, repeats: int, bandwidth: float) -> None:
    """The batch-1 table and ratios; `bandwidth` (bytes/s) is the first of the per-round bandwidth measurements."""
    aksis_bf16 = copy.deepcopy(aksis).to(torch.bfloat16)
    p, n = args.prompt_len, args.new_tokens
    variants = {
        "Aksis eager (AksisCache)": (aksis, make_generate(aksis, 1, p, n, True)),
        "Aksis static + compile": (aksis, make_generate(aksis, 1, p, n, True, compiled=True)),
        "Aksis bf16 static + compile": (aksis_bf16, make_generate(aksis_bf16, 1, p, n, True, compiled=True)),
        "GPT-2 eager (DynamicCache)": (gpt2, make_generate(gpt2, 1, p, n, True)),
        "GPT-2 static + compile": (gpt2, make_generate(gpt2, 1, p, n, True, compiled=True)),
    }
    # warm-up (and compilation); the compiled path must give the eager greedy tokens
    outs = {name: fn() for name, (_, fn) in variants.items()}
    for model_name, eager_name in (("Aksis", "Aksis eager (AksisCache)"), ("GPT-2", "GPT-2 eager (DynamicCache)")):
        model, compiled = variants[f"{model_name} static + compile"]
        variants[model_name + NO_GUARDS] = (model, guard_check_skipped(compiled))
        outs[model_name + NO_GUARDS] = variants[model_name + NO_GUARDS][1]()
        for name in (f"{model_name} static + compile", model_name + NO_GUARDS):
            assert torch.equal(outs[name], outs[eager_name]), f"{name}: greedy tokens differ from eager"
    # the exported, AOT-compiled step: no generate(), no guards (a decoding loop outside transformers' generate())
    for model_name, model, eager_name in (
        ("Aksis", aksis, "Aksis eager (AksisCache)"),
        ("GPT-2", gpt2, "GPT-2 eager (DynamicCache)"),
    ):
        variants[model_name + EXPORTED] = (model, make_exported(model, p, n))
        outs[model_name + EXPORTED] = variants[model_name + EXPORTED][1]()
        assert torch.equal(outs[model_name + EXPORTED], outs[eager_name]), f"{model_name}{EXPORTED}: tokens differ"
    bf16_eager = make_generate(aksis_bf16, 1, p, n, True)()
    bf16_same = (bf16_eager == outs["Aksis bf16 static + compile"])[0, p:].float().mean().item()
    # the kernels' ceilings: the same weight reads with nothing around them
    plain = plain_products(aksis)
    matvec, matvec_compiled = matvec_steps(aksis, n, plain=plain), matvec_steps(aksis, n, compiled=True, plain=plain)
    matvec(), matvec_compiled()
    bandwidths = [bandwidth]  # bytes/s, one measurement per round besides the one before the rounds

    def measure() -> None:
        bandwidths.append(measure_bandwidth(repeats=3).best_gbs * 1e9)

    candidates = {name: fn for name, (_, fn) in variants.items()}
    times = rounds({**candidates, MATVEC: matvec, MATVEC_COMPILED: matvec_compiled, BANDWIDTH: measure}, repeats)
    bandwidth = statistics.median(bandwidths)
    print(
        f"bandwidth over the rounds (the better of copy and triad, {len(bandwidths)} measurements): median "
        f"{bandwidth / 1e9:.1f} GB/s, range {min(bandwidths) / 1e9:.1f}-{max(bandwidths) / 1e9:.1f}; the bounds use "
        "the median\n"
    )
    uncached = make_generate(aksis, 1, p, n, False)
    e_t, u_t = paired(variants["Aksis eager (AksisCache)"][1], uncached, max(2, repeats // 2))
    split = step_split(aksis, variants["Aksis static + compile"][1], repeats)

    print(
        f"fp32 compiled greedy tokens == eager: yes (asserted); bf16 compiled == bf16 eager: {bf16_same:.0%} of tokens\n"
    )
    print("| batch 1 variant | weights MB | KV MB (mean) | tok/s | bound tok/s | fraction of bound |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, (model, _) in variants.items():
        b = decode_bytes_per_token(model, 1, p, n)
        rate = n / statistics.median(times[name])
        bound = bandwidth / b["per_token"]
        print(
            f"| {name} | {b['weights'] / 1e6:.1f} | {b['kv'] / 1e6:.1f} | {rate:,.1f} | {bound:,.0f} | {rate / bound:.0%} |"
        )
    b = decode_bytes_per_token(aksis, 1, p, n)
    for name in (MATVEC, MATVEC_COMPILED):
        rate, bound = n / statistics.median(times[name]), bandwidth / b["weights"]
        print(f"| {name} | {b['weights'] / 1e6:.1f} | 0 | {rate:,.1f} | {bound:,.0f} | {rate / bound:.0%} |")
    # uncached: each step recomputes the whole sequence; its bound is the cached one (same weights, no more needed)
    rate = n / statistics.median(u_t)
    bound = bandwidth / b["per_token"]
    print(f"| Aksis uncached | {b['weights'] / 1e6:.1f} | 0 | {rate:,.1f} | {bound:,.0f} | {rate / bound:.0%} |")

    step_table(times, split, n, bound)  # the cached bound, as the uncached row's

    g_best = min(("GPT-2 eager (DynamicCache)", "GPT-2 static + compile"), key=lambda k: statistics.median(times[k]))
    a_best = min(("Aksis eager (AksisCache)", "Aksis static + compile"), key=lambda k: statistics.median(times[k]))
    print("\n| ratio (median of paired rounds) | value |")
    print("| --- | ---: |")
    ratios = [
        ("Aksis static + compile / Aksis eager", times["Aksis eager (AksisCache)"], times["Aksis static + compile"]),
        (f"Aksis best ({a_best}) / GPT-2 best ({g_best})", times[g_best], times[a_best]),
        (
            "Aksis static + compile / GPT-2 static + compile",
            times["GPT-2 static + compile"],
            times["Aksis static + compile"],
        ),
        ("Aksis eager / GPT-2 eager", times["GPT-2 eager (DynamicCache)"], times["Aksis eager (AksisCache)"]),
        (
            "Aksis bf16 / fp32 (static + compile)",
            times["Aksis static + compile"],
            times["Aksis bf16 static + compile"],
        ),
        ("Aksis static + compile / its products alone", times[MATVEC_COMPILED], times["Aksis static + compile"]),
        ("Aksis eager / its products alone", times[MATVEC], times["Aksis eager (AksisCache)"]),
        ("compiled products / eager products", times[MATVEC], times[MATVEC_COMPILED]),
        (
            "Aksis guard check skipped / Aksis static + compile",
            times["Aksis static + compile"],
            times["Aksis" + NO_GUARDS],
        ),
        (
            "GPT-2 guard check skipped / GPT-2 static + compile",
            times["GPT-2 static + compile"],
            times["GPT-2" + NO_GUARDS],
        ),
        ("Aksis / GPT-2, both with the guard check skipped", times["GPT-2" + NO_GUARDS], times["Aksis" + NO_GUARDS]),
        ("Aksis exported / Aksis eager", times["Aksis eager (AksisCache)"], times["Aksis" + EXPORTED]),
        ("Aksis exported / Aksis static + compile", times["Aksis static + compile"], times["Aksis" + EXPORTED]),
        ("Aksis exported / GPT-2 exported", times["GPT-2" + EXPORTED], times["Aksis" + EXPORTED]),
        ("Aksis exported / GPT-2 best through generate()", times[g_best], times["Aksis" + EXPORTED]),
    ]
    for label, base, cand in ratios:
        print(f"| {label} | {median_ratio(base, cand):.2f}x |")
    print(f"| Aksis eager / uncached | {median_ratio(u_t, e_t):.2f}x |")


def step_table(times: dict[str, list[float]], split: dict[str, float], n: int, bound: float) -> None:
    """Where Aksis's compiled decoding step spends a token's time, per token in ms; `bound` in tokens/s."""
    total, forward = split["total"] / n * 1e3, split["forward"] / n * 1e3
    products = statistics.median(times[MATVEC_COMPILED]) / n * 1e3
    # the guard check: median over the paired rounds of (compiled step - the same with the guard check skipped)
    paired_gaps = zip(times["Aksis static + compile"], times["Aksis" + NO_GUARDS], strict=True)
    guards = statistics.median(a - b for a, b in paired_gaps) / n * 1e3
    budget = 1e3 / bound
    print(
        f"\nWhere Aksis's compiled step spends a token ({len(times[MATVEC])} rounds; the bound allows {budget:.2f} ms):\n"
    )
    print("| per token | ms | share of the step |")
    print("| --- | ---: | ---: |")
    rows = [
        ("whole step (`generate()`, timed with its forward)", total),
        ("compiled forward (Dynamo's guard check + the graph)", forward),
        ("- of which its products alone (the compiled products row)", products),
        ("- of which the guard check (static + compile minus guard check skipped, paired)", guards),
        ("- of which the rest of the graph (attention, norms, cache writes, calls)", forward - products - guards),
        ("`generate()`'s own loop (outside the forward)", total - forward),
    ]
    for label, ms in rows:
        print(f"| {label} | {ms:.2f} | {ms / total:.0%} |")
    ceiling = budget / (products + total - forward)
    print(
        f"\nIf the forward took only its products (and `generate()`'s loop stayed), the step would reach {ceiling:.0%} "
        "of the bound."
    )


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
    bw = measure_bandwidth()
    print(f"# Generation throughput, {machine()}")
    if args.plain_linear:
        head = "plain nn.Linear (--plain-linear)"
    elif plain_products(aksis):
        head = (
            "plain products (MKL streams them on every core on this CPU), attention written out in the compiled step"
        )
    else:
        head = "decoding paths on (eager: (in, out) copies; compiled: reductions), attention written out in the compiled step"
    print(
        f"size: {size}, prompt {args.prompt_len}, {args.new_tokens} new tokens, greedy, {repeats} rounds, "
        f"Aksis linear layers: {head}\n"
        f"bandwidth before the rounds: copy {bw.copy_gbs:.1f} GB/s, triad {bw.triad_gbs:.1f} GB/s\n"
    )
    batches = [int(b) for b in args.batches.split(",")]
    if 1 in batches:
        batch_one(aksis, gpt2, args, size, repeats, bw.best_gbs * 1e9)
    wider = [b for b in batches if b != 1]
    if not wider:
        return
    print(
        "\n| batch | Aksis cached tok/s | GPT-2 cached tok/s | Aksis uncached tok/s | Aksis/GPT-2 (cached) | Aksis cached/uncached |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in wider:
        cached = make_generate(aksis, batch, args.prompt_len, args.new_tokens, True)
        baseline = make_generate(gpt2, batch, args.prompt_len, args.new_tokens, True)
        uncached = make_generate(aksis, batch, args.prompt_len, args.new_tokens, False)
        cached(), baseline()  # warm-up
        a_t, g_t = paired(cached, baseline, repeats)
        rounds_uncached = max(2, repeats // 2)  # the uncached run is slow: fewer rounds
        a2_t, u_t = paired(cached, uncached, rounds_uncached)
        new = batch * args.new_tokens
        print(
            f"| {batch} | {new / statistics.median(a_t):,.0f} | {new / statistics.median(g_t):,.0f} | "
            f"{new / statistics.median(u_t):,.0f} | {median_ratio(g_t, a_t):.3f}x | {median_ratio(u_t, a2_t):.2f}x |"
        )


if __name__ == "__main__":
    main()
