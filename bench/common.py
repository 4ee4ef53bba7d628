"""Shared helpers of the benchmark scripts: same-size model pairs, paired interleaved timing, peak memory.

The machines are shared and noisy, so every comparison interleaves candidate and baseline, alternates which runs
first, repeats, and reports the median of the per-round ratios (never two separate averages).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import lmforge  # noqa: F401  (registers the Auto classes)
from lmforge.models import AksisConfig, AksisForCausalLM


@dataclass
class Size:
    vocab_size: int = 10004
    context: int = 512
    hidden_size: int = 512
    num_layers: int = 6
    num_heads: int = 8
    dropout: float = 0.1


REFERENCE = Size()
QUICK = Size(context=256, hidden_size=256, num_layers=4, num_heads=4)
# The model of recipes/aksis/shakespeare.yaml (`lmforge quickstart`); 4 x 192 with 3 heads before 2026-12-01
QUICKSTART = Size(context=128, hidden_size=64, num_layers=4, num_heads=2, dropout=0.0)


def build(name: str, size: Size, attn: str = "sdpa", matched_dropout: bool = False) -> torch.nn.Module:
    """`aksis` or `gpt2` at exactly the same size (GELU, 4x FFN, tied head, same residual and embedding dropout).

    Each model keeps its own default attention dropout (Aksis 0.0, GPT-2 0.1) unless `matched_dropout`, which gives
    Aksis GPT-2's 0.1 too: the like-for-like comparison of the two implementations.
    """
    torch.manual_seed(0)
    if name == "aksis":
        config = AksisConfig(
            vocab_size=size.vocab_size,
            max_position_embeddings=size.context,
            hidden_size=size.hidden_size,
            intermediate_size=4 * size.hidden_size,
            num_hidden_layers=size.num_layers,
            num_attention_heads=size.num_heads,
            hidden_dropout=size.dropout,
            attention_dropout=size.dropout if matched_dropout else AksisConfig().attention_dropout,
        )
        return AksisForCausalLM._from_config(config, attn_implementation=attn)
    if name == "gpt2":
        config = GPT2Config(
            vocab_size=size.vocab_size,
            n_positions=size.context,
            n_embd=size.hidden_size,
            n_layer=size.num_layers,
            n_head=size.num_heads,
            n_inner=4 * size.hidden_size,
            activation_function="gelu",
            resid_pdrop=size.dropout,
            embd_pdrop=size.dropout,
            attn_pdrop=size.dropout,
            bos_token_id=2,
            eos_token_id=3,
        )
        return GPT2LMHeadModel._from_config(config, attn_implementation=attn)
    raise ValueError(f"unknown model {name}")


def timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paired(
    candidate: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds of each, measured in alternating order, `repeats` rounds."""
    cand, base = [], []
    for i in range(repeats):
        if i % 2 == 0:
            cand.append(timed(candidate))
            base.append(timed(baseline))
        else:
            base.append(timed(baseline))
            cand.append(timed(candidate))
    return cand, base


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def peak_memory_mb(script: str, args: list[str]) -> float:
    """Peak memory of one measurement run in a fresh process: CUDA max allocated on a GPU, else peak RSS."""
    out = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, check=True, env={**os.environ}
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mb"])


def current_rss_mb() -> float:
    """Resident memory now (Linux /proc), in MiB; also resets the peak (VmHWM) so it counts from here."""
    Path("/proc/self/clear_refs").write_text("5")
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_peak(base_rss_mb: float) -> None:
    """Print the peak memory of this process's measurement as the last line (JSON), for `peak_memory_mb`.

    On a GPU: CUDA max allocated. On the CPU: peak RSS minus the RSS before the model was built (so the
    interpreter and libraries, the same for every model, do not dilute the ratio).
    """
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else _peak_rss_mb() - base_rss_mb
    print(json.dumps({"peak_mb": peak}))


def machine() -> str:
    cpu = "?"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores: {cpu})"
    return f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Bandwidth:
    """Memory bandwidth of this machine in GB/s (1e9 bytes/s), medians over repeats."""

    copy_gbs: float  # dst.copy_(src): bytes read + bytes written
    triad_gbs: float  # a = b + s * c (STREAM triad): two arrays read, one written

    @property
    def best_gbs(self) -> float:
        """The bound used for decoding: the better of the two (the kinder bound to the hardware)."""
        return max(self.copy_gbs, self.triad_gbs)


def measure_bandwidth(megabytes: int = 256, repeats: int = 9) -> Bandwidth:
    """Copy and STREAM-triad bandwidth over fp32 arrays of `megabytes` MB each (far larger than any cache).

    The triad runs as `torch.add(b, c, alpha=s, out=a)`: one fused pass, no temporary, so exactly 3 arrays move.
    Bytes count only the arrays' own traffic (no write-allocate reads), as STREAM does.
    """
    n = megabytes * 10**6 // 4
    src = torch.rand(n)
    dst = torch.empty(n)
    b, c, a = torch.rand(n), torch.rand(n), torch.empty(n)
    nbytes = n * 4
    dst.copy_(src), torch.add(b, c, alpha=3.0, out=a)  # warm-up: page in every array
    copy = statistics.median(timed(lambda: dst.copy_(src)) for _ in range(repeats))
    triad = statistics.median(timed(lambda: torch.add(b, c, alpha=3.0, out=a)) for _ in range(repeats))
    return Bandwidth(copy_gbs=2 * nbytes / copy / 1e9, triad_gbs=3 * nbytes / triad / 1e9)


def decode_bytes_per_token(model: torch.nn.Module, batch: int, prompt_len: int, new_tokens: int) -> dict[str, float]:
    """Bytes a batch-`batch` decoding step must read, per generated token: every weight once per step, in the dtype it
    is held in (a tied head counts once; an input-only embedding table, such as the positions, contributes only the
    `batch` rows it looks up), plus the KV cache at the mean cached length over the run, divided by the `batch`
    tokens the step produces.

    KV cache at cached length L: 2 (keys, values) x layers x batch x L x hidden x element size; the mean cached length
    over the run is prompt_len + (new_tokens - 1) / 2.
    """
    output = model.get_output_embeddings()
    head_ptr = output.weight.data_ptr() if output is not None else None
    lookup_only = {
        m.weight.data_ptr(): m.weight
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.weight.data_ptr() != head_ptr
    }
    seen: set[int] = set()
    weights = 0.0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        if p.data_ptr() in lookup_only:
            weights += batch * p.shape[-1] * p.element_size()
        else:
            weights += p.numel() * p.element_size()
    config = model.config
    element = next(model.parameters()).element_size()
    mean_len = prompt_len + (new_tokens - 1) / 2
    kv = 2 * config.num_hidden_layers * batch * mean_len * config.hidden_size * element
    return {"weights": weights, "kv": kv, "per_token": (weights + kv) / batch}


def matvec_steps(
    model: torch.nn.Module, steps: int, compiled: bool = False, plain: bool = False
) -> Callable[[], object]:
    """`steps` decoding steps' weight reads and nothing else, the ceiling the matrix-vector kernels leave below the
    bandwidth bound: at batch 1, a product with every distinct weight matrix of the model's linear layers and output
    head (no embeddings, attention, cache, norms or generate() loop), with the kernels Aksis's decoding uses.

    `plain=True` (where MKL streams the product on every core, `mkl_products_stream_on_every_core`): the plain
    product with each (out, in) weight, `F.linear`, eager or compiled. Otherwise eager (`compiled=False`) is
    `torch.mm` with each weight in the (in, out) layout Aksis's eager decoding uses, and `compiled=True` each product as
    Aksis's compiled decoding step computes it, a multiply-and-sum over the (out, in) weight, compiled by Inductor into
    one reduction kernel per weight."""
    output = model.get_output_embeddings()
    linears = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    distinct = {w.data_ptr(): w for w in [*linears, *([output.weight] if output is not None else [])]}
    layout_out_in = plain or compiled  # only eager decoding's copies are (in, out)
    if layout_out_in:
        weights = [w.detach() for w in distinct.values()]  # (out, in)
    else:
        weights = [w.detach().t().contiguous() for w in distinct.values()]  # (in, out)
    inputs = [torch.randn(1, w.shape[1 if layout_out_in else 0], dtype=w.dtype, device=w.device) for w in weights]

    def products(xs: list[torch.Tensor], ws: list[torch.Tensor]) -> list[torch.Tensor]:
        pairs = zip(xs, ws, strict=True)
        if plain:
            return [torch.nn.functional.linear(x, w) for x, w in pairs]
        if compiled:  # Inductor turns each into one reduction kernel
            return [(x * w).sum(-1) for x, w in pairs]
        return [torch.mm(x, w) for x, w in pairs]

    step = torch.compile(products, dynamic=False) if compiled else products

    @torch.no_grad()
    def run() -> None:
        for _ in range(steps):
            step(inputs, weights)

    return run


def rounds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each of several candidates, `repeats` interleaved rounds, the order reversed every other round, so
    that any two of them form paired rounds (for `median_ratio`)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(timed(fns[name]))
    return times
