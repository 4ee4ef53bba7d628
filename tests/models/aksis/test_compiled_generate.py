"""`generate()` through transformers' own compiled decoding step (static cache + `compile_config`, forced on the CPU
with `_compile_all_devices`) gives the eager greedy tokens. The contract's `compile_fullgraph` check compiles
`forward` by hand; this one goes through `generate()`'s compile path, the one `bench/generate_throughput.py` times."""

import copy

import pytest
import torch
from torch._dynamo.comptime import comptime
from transformers import CompileConfig, StoppingCriteria

from lmforge.models.aksis import modeling_aksis
from lmforge.models.aksis.modeling_aksis import AksisLinear

from ..contract import exported_step, greedy_through_step

TRACED_QUERIES: list[tuple[int, ...]] = []  # the query shapes `one_query_attention` was traced with (a global:
# `comptime` takes no closure)


class CopiesSeen(StoppingCriteria):
    """At every step: which `AksisLinear` layers hold an (in, out) weight copy; never stops generation."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.linears = {name: m for name, m in model.named_modules() if isinstance(m, AksisLinear)}
        self.seen: set[str] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.seen |= {name for name, m in self.linears.items() if m._transposed is not None}
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


@pytest.mark.parametrize("plain_products", [False, True], ids=["reductions", "plain-products"])
def test_compiled_static_cache_generate_equals_eager(tiny_aksis, monkeypatch, plain_products):
    """Both product paths (Inductor's reductions, or the plain product where MKL streams it on every core) are
    tested on any CPU; the compiled step's attention is `one_query_attention`."""
    for module in tiny_aksis.modules():
        if isinstance(module, AksisLinear):
            module._plain_products = plain_products
    TRACED_QUERIES.clear()

    def spied_attention(module, query, *args, **kwargs):
        comptime(lambda ctx: TRACED_QUERIES.append(tuple(ctx.get_local("query").as_fake().shape)))  # at trace time
        return one_query_attention(module, query, *args, **kwargs)

    one_query_attention = modeling_aksis.one_query_attention
    monkeypatch.setattr(modeling_aksis, "one_query_attention", spied_attention)
    ids = torch.randint(4, tiny_aksis.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(0))
    kwargs = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True
    torch._dynamo.reset()
    eager_copies, compiled_copies = CopiesSeen(tiny_aksis), CopiesSeen(tiny_aksis)
    try:
        with torch.no_grad():
            eager = tiny_aksis.generate(
                ids, attention_mask=torch.ones_like(ids), stopping_criteria=[eager_copies], **kwargs
            )
            compiled = tiny_aksis.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                cache_implementation="static",
                compile_config=config,
                stopping_criteria=[compiled_copies],
                **kwargs,
            )
            assert hasattr(tiny_aksis, "_compiled_call"), "generate() did not take its compiled path"
            # the README's guard-check skip, for a repeated call once the graph exists: the same tokens
            calls = []
            compiled_call = tiny_aksis._compiled_call
            tiny_aksis._compiled_call = lambda *a, **k: calls.append(1) or compiled_call(*a, **k)
            with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
                unguarded = tiny_aksis.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    cache_implementation="static",
                    compile_config=config,
                    **kwargs,
                )
    finally:  # the model is shared by the session: leave it without the compiled call
        for name in ("_compiled_call", "_last_compile_config"):
            if hasattr(tiny_aksis, name):
                delattr(tiny_aksis, name)
        torch._dynamo.reset()
    assert torch.equal(compiled, eager), (compiled.tolist(), eager.tolist())
    assert len(calls) == kwargs["max_new_tokens"] - 1, "the repeated call did not decode through the compiled step"
    assert torch.equal(unguarded, eager), (unguarded.tolist(), eager.tolist())
    heads = tiny_aksis.config.num_attention_heads
    assert set(TRACED_QUERIES) == {(1, heads, 1, tiny_aksis.config.hidden_size // heads)}, "compiled without it"
    if plain_products:  # no copies anywhere
        assert eager_copies.seen == compiled_copies.seen == set()
        return
    # Eager decoding multiplies one row by (in, out) copies of the weights; the compiled step reduces over the weights
    # themselves, so no layer but the output head (whose copy the eager prefill's last row makes) holds a copy.
    assert eager_copies.seen == set(eager_copies.linears)
    assert compiled_copies.seen <= {"lm_head"}


def test_aot_compiled_exported_step_gives_eager_logits_and_tokens(tiny_aksis, tmp_path):
    """The exported decoding step (transformers' `convert_and_export_with_cache`), compiled ahead of time with
    AOTInductor as docs/scaling.md shows: the eager logits at every prompt position, and `generate()`'s greedy
    tokens, one token a call."""
    model = copy.deepcopy(tiny_aksis).eval()
    ids = torch.randint(4, model.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(0))
    new = 6
    exported = exported_step(model, ids, new)
    package = torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp_path / "step.pt2"))
    sequence = greedy_through_step(torch._inductor.aoti_load_package(package), model, ids, new)
    with torch.no_grad():
        want = model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, eos_token_id=None)
    assert sequence == want[0].tolist()
