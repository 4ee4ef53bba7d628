"""Aksis's dropout on the CPU: `nn.functional.dropout`'s behaviour, with a mask drawn from 32 random bits per element."""

import pytest
import torch
from torch import nn

import lmforge.models.aksis.modeling_aksis as modeling
from lmforge.models import AksisConfig, AksisForCausalLM

from ...conftest import TINY_AKSIS

dropout = modeling.dropout_from_random_bits


def tiny_config(dropout: float) -> AksisConfig:
    """The tests' tiny Aksis, with `dropout` on the residuals, the embeddings and the attention probabilities."""
    return AksisConfig(vocab_size=64, **TINY_AKSIS, hidden_dropout=dropout, attention_dropout=dropout)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_it_drops_a_fraction_p_and_scales_the_rest_by_one_over_one_minus_p(p):
    torch.manual_seed(0)
    out = dropout(torch.ones(1_000_001), p, training=True)  # an odd count: the last 64-bit word is half used
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / out.numel()) ** 0.5
    torch.testing.assert_close(out[out != 0].unique(), torch.tensor([1 / (1 - p)]))
    assert abs(out.mean().item() - 1.0) < 0.01


def test_the_mask_is_random_per_element_and_repeats_with_the_seed():
    x = torch.ones(64, 33)  # no pattern along rows or columns
    torch.manual_seed(3)
    first = dropout(x, 0.5, training=True)
    torch.manual_seed(3)
    again = dropout(x, 0.5, training=True)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, dropout(x, 0.5, training=True))  # the generator moved on
    kept_per_column = (first != 0).float().mean(0)
    assert kept_per_column.min() > 0.2 and kept_per_column.max() < 0.8


def test_the_gradient_is_the_same_mask_and_scale():
    x = torch.randn(8, 16, 32, requires_grad=True)
    torch.manual_seed(0)
    out = dropout(x, 0.3, training=True)
    out.sum().backward()
    assert x.grad.unique().tolist() == pytest.approx([0.0, 1 / 0.7])  # the noise: 0 or 1 / 0.7 per element
    torch.testing.assert_close(out, x.detach() * x.grad)  # the noise the forward multiplied by


def test_it_keeps_the_dtype_and_works_on_a_non_contiguous_input():
    x = torch.ones(32, 64, dtype=torch.bfloat16).t()  # (64, 32), not contiguous
    out = dropout(x, 0.1, training=True)
    assert out.dtype == torch.bfloat16 and out.shape == (64, 32)
    assert set(out.unique().tolist()) == {0.0, torch.tensor(1 / 0.9, dtype=torch.bfloat16).item()}


def test_eval_p_zero_and_p_one_behave_as_nn_functional_dropout():
    x = torch.randn(10, 10)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.5, training=True)


def test_the_model_uses_it_for_every_dropout_and_eval_switches_it_off():
    model = AksisForCausalLM(tiny_config(dropout=0.2))
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3 and all(isinstance(m, modeling.AksisDropout) and m.p == 0.2 for m in dropouts)
    ids = torch.randint(4, 64, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.train()
        torch.manual_seed(0)
        a = model(input_ids=ids).logits
        torch.manual_seed(0)
        b = model(input_ids=ids).logits
        c = model(input_ids=ids).logits
        model.eval()
        d, e = model(input_ids=ids).logits, model(input_ids=ids).logits
    torch.testing.assert_close(a, b)  # seeded training forwards repeat
    assert not torch.allclose(a, c)  # and differ from an unseeded one
    torch.testing.assert_close(d, e)  # eval: no dropout
    assert not torch.allclose(a, d)


def test_gradient_checkpointing_replays_the_same_masks():
    config = tiny_config(dropout=0.3)
    ids = torch.randint(4, 64, (2, 32), generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = AksisForCausalLM(config).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        torch.manual_seed(1)
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append([p.grad for p in model.parameters()])
    for plain, replayed in zip(*grads, strict=True):
        torch.testing.assert_close(plain, replayed)
