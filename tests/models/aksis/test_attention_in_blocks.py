"""Aksis's causal attention in blocks of queries: the path a CPU training step with attention dropout takes instead of
SDPA's math path. The same attention, without the blocks above the diagonal."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lmforge.models.aksis.modeling_aksis as modeling
from lmforge.models import AksisConfig, AksisForCausalLM


def qkv(batch: int = 2, heads: int = 3, seq: int = 37, head_dim: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, heads, seq, head_dim, generator=generator, requires_grad=True) for _ in range(3)]


def training_module() -> nn.Module:
    return nn.Module().train()


@pytest.mark.parametrize("block_size", [1, 5, 16, 37, 64])
def test_without_dropout_it_is_sdpa_causal_attention_with_its_gradients(block_size):
    query, key, value = qkv()
    scaling = query.shape[-1] ** -0.5
    out, weights = modeling.causal_attention_in_blocks(
        training_module(), query, key, value, None, scaling=scaling, dropout=0.0, block_size=block_size
    )
    assert weights is None
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=True).transpose(1, 2)  # (B, T, nh, hs)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (query, key, value), grad)
    want = torch.autograd.grad(expected, (query, key, value), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_dropout_drops_a_fraction_p_of_the_probabilities_and_rescales_the_rest():
    # equal scores: the probabilities of row i are 1 / (i + 1); with values of 1 every output is the sum of the kept
    # probabilities over (1 - p), 1 on average
    batch, heads, seq, p = 16, 16, 256, 0.25
    query = torch.zeros(batch, heads, seq, 8)
    value = torch.ones(batch, heads, seq, 8)
    torch.manual_seed(0)
    out, _ = modeling.causal_attention_in_blocks(
        training_module(), query, query, value, None, scaling=1.0, dropout=p, block_size=64
    )
    assert out.shape == (batch, seq, heads, 8)
    assert abs(out.mean().item() - 1.0) < 0.02
    first = out[:, 0].unique()  # the first query sees one key: kept (scaled by 1 / (1 - p)) or dropped
    torch.testing.assert_close(first, torch.tensor([0.0, 1 / (1 - p)]))
    assert 0.17 < (out[:, 0, :, 0] == 0).float().mean().item() < 0.33  # 256 draws: p within 3 standard deviations
    # the positions above the diagonal stay out of it: a change of a later value leaves earlier outputs alone
    torch.manual_seed(0)
    changed = value.clone()
    changed[:, :, 200:] = 100.0
    again, _ = modeling.causal_attention_in_blocks(
        training_module(), query, query, changed, None, scaling=1.0, dropout=p, block_size=64
    )
    torch.testing.assert_close(again[:, :200], out[:, :200])


def tiny(attention_dropout: float, attn_implementation: str = "sdpa") -> AksisForCausalLM:
    config = AksisConfig(
        vocab_size=64,
        max_position_embeddings=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_dropout=0.0,
        attention_dropout=attention_dropout,
    )
    torch.manual_seed(0)
    return AksisForCausalLM._from_config(config, attn_implementation=attn_implementation)


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    seen: list[int] = []
    original = modeling.causal_attention_in_blocks

    def spy(*args, **kwargs):
        seen.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(modeling, "causal_attention_in_blocks", spy)
    return seen


def test_a_training_step_with_attention_dropout_takes_it_and_matches_sdpa(calls):
    model = tiny(attention_dropout=1e-9).train()  # dropout on, but too small to drop anything
    ids = torch.randint(4, 64, (2, 300), generator=torch.Generator().manual_seed(1))  # 3 blocks of 128, the last short
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    assert len(calls) == 2  # one per layer
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.0  # SDPA's fused causal kernel
    expected = model(input_ids=ids, labels=ids)
    expected.loss.backward()
    assert len(calls) == 2
    torch.testing.assert_close(out.logits, expected.logits)
    torch.testing.assert_close(out.loss, expected.loss)
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want)


def test_it_is_left_out_in_eval_with_a_cache_with_padding_and_with_eager_attention(calls):
    ids = torch.randint(4, 64, (2, 20), generator=torch.Generator().manual_seed(1))
    padding = torch.ones_like(ids)
    padding[0, :3] = 0
    model = tiny(attention_dropout=0.1)
    with torch.no_grad():
        model.eval()(input_ids=ids)
        model.train()(input_ids=ids, use_cache=True)
        model.train()(input_ids=ids, attention_mask=padding)
        tiny(attention_dropout=0.1, attn_implementation="eager").train()(input_ids=ids)
        tiny(attention_dropout=0.0).train()(input_ids=ids)
    assert calls == []
