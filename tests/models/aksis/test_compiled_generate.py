"""`generate()` through transformers' own compiled decoding step (static cache + `compile_config`, forced on the CPU
with `_compile_all_devices`) gives the eager greedy tokens. The contract's `compile_fullgraph` check compiles
`forward` by hand; this one goes through `generate()`'s compile path, the one `bench/generate_throughput.py` times."""

import torch
from transformers import CompileConfig, StoppingCriteria

from lmforge.models.aksis.modeling_aksis import AksisLinear


class CopiesSeen(StoppingCriteria):
    """At every step: which `AksisLinear` layers hold an (in, out) weight copy; never stops generation."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.linears = {name: m for name, m in model.named_modules() if isinstance(m, AksisLinear)}
        self.seen: set[str] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.seen |= {name for name, m in self.linears.items() if m._transposed is not None}
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def test_compiled_static_cache_generate_equals_eager(tiny_aksis):
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
    # Eager decoding multiplies one row by (in, out) copies of the weights; the compiled step reduces over the weights
    # themselves, so no layer but the output head (whose copy the eager prefill's last row makes) holds a copy.
    assert eager_copies.seen == set(eager_copies.linears)
    assert compiled_copies.seen <= {"lm_head"}
