"""`generate()` through transformers' own compiled decoding step (static cache + `compile_config`, forced on the CPU
with `_compile_all_devices`) gives the eager greedy tokens. The contract's `compile_fullgraph` check compiles
`forward` by hand; this one goes through `generate()`'s compile path, the one `bench/generate_throughput.py` times."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CompileConfig, StoppingCriteria

import lmforge.models.aksis.modeling_aksis as modeling
from lmforge.models.aksis.modeling_aksis import AksisLinear


class CopiesSeen(StoppingCriteria):
    """At every step: which `AksisLinear` layers hold an (in, out) weight copy; never stops generation."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.linears = {name: m for name, m in model.named_modules() if isinstance(m, AksisLinear)}
        self.seen: set[str] = set()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.seen |= {name for name, m in self.linears.items() if m._transposed is not None}
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def test_compiled_static_cache_generate_equals_eager(tiny_aksis, monkeypatch):
    one_query = []  # the compiled step's attention: traced through `eager_attention_forward`, not SDPA
    original = modeling.eager_attention_forward

    def spy(*args, **kwargs):
        one_query.append(args[1].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(modeling, "eager_attention_forward", spy)
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
    finally:  # the model is shared by the session: leave it without the compiled call
        for name in ("_compiled_call", "_last_compile_config"):
            if hasattr(tiny_aksis, name):
                delattr(tiny_aksis, name)
        torch._dynamo.reset()
    assert torch.equal(compiled, eager), (compiled.tolist(), eager.tolist())
    # Eager decoding multiplies one row by (in, out) copies of the weights; the compiled step reduces over the weights
    # themselves, so no layer but the output head (whose copy the eager prefill's last row makes) holds a copy.
    assert eager_copies.seen == set(eager_copies.linears)
    assert compiled_copies.seen <= {"lm_head"}
    assert one_query and all(shape[-2] == 1 for shape in one_query)  # traced once per layer, one query each


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_eager_attention_of_one_query_is_sdpa_with_either_mask(mask_kind):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 4, 1, 8, generator=generator)  # (B, nh, 1, hs)
    key, value = (torch.randn(2, 4, 7, 8, generator=generator) for _ in range(2))  # (B, nh, S, hs)
    attend = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    attend[0, :, :, 5:] = False  # a static cache's unwritten slots
    attend[1, :, :, :2] = False  # left padding
    mask = {
        "bool": attend,
        "additive": torch.zeros(attend.shape).masked_fill(~attend, torch.finfo(torch.float32).min),
        "none": None,
    }[mask_kind]
    out, weights = modeling.eager_attention_forward(nn.Module().eval(), query, key, value, mask, scaling=8**-0.5)
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)  # (B, 1, nh, hs)
    torch.testing.assert_close(out, expected)
    assert weights.shape == (2, 4, 1, 7)
    if mask is not None:
        assert torch.all(weights[~attend.expand_as(weights)] == 0)
