"""`generate()` through transformers' own compiled decoding step (static cache + `compile_config`, forced on the CPU
with `_compile_all_devices`) gives the eager greedy tokens. The contract's `compile_fullgraph` check compiles
`forward` by hand; this one goes through `generate()`'s compile path, the one `bench/generate_throughput.py` times."""

import torch
from transformers import CompileConfig


def test_compiled_static_cache_generate_equals_eager(tiny_aksis):
    ids = torch.randint(4, tiny_aksis.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(0))
    kwargs = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            eager = tiny_aksis.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
            compiled = tiny_aksis.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                cache_implementation="static",
                compile_config=config,
                **kwargs,
            )
        assert hasattr(tiny_aksis, "_compiled_call"), "generate() did not take its compiled path"
    finally:  # the model is shared by the session: leave it without the compiled call
        for name in ("_compiled_call", "_last_compile_config"):
            if hasattr(tiny_aksis, name):
                delattr(tiny_aksis, name)
        torch._dynamo.reset()
    assert torch.equal(compiled, eager), (compiled.tolist(), eager.tolist())
