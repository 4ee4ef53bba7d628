"""`muon: true`: torch.optim.Muon over the hidden weight matrices and the run's AdamW over the rest, driven by the real
Trainer (scheduler, checkpoints, resume)."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lmforge import LmforgeError
from lmforge.models.aksis import AksisConfig, AksisForCausalLM
from lmforge.training import optimizers, parse_recipe, run_training
from lmforge.training.optimizers import (
    Float32Muon,
    MuonWithAdamW,
    hidden_matrices,
    muon_with_adamw,
    newton_schulz_float32,
)
from lmforge.training.run import build_setup, build_trainer

from .conftest import TINY_AKSIS
from .test_training import tiny_recipe

HIDDEN = {"self_attn.qkv_proj.weight", "self_attn.o_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}


def tiny_aksis(**overrides) -> AksisForCausalLM:
    torch.manual_seed(0)
    return AksisForCausalLM(AksisConfig(vocab_size=50, **{**TINY_AKSIS, **overrides}))


@pytest.mark.parametrize("tie", [True, False])
def test_hidden_matrices_are_the_layers_weights_only(tie):
    model = tiny_aksis(tie_word_embeddings=tie)
    expected = {f"model.layers.{i}.{name}" for i in range(TINY_AKSIS["num_hidden_layers"]) for name in HIDDEN}
    assert set(hidden_matrices(model)) == expected
    # the untied output layer is a 2-D weight outside the embeddings, and still not Muon's
    assert ("lm_head.weight" in dict(model.named_parameters())) is not tie


def test_one_scheduler_and_one_state_dict_drive_both_optimizers():
    model = tiny_aksis()
    names = dict(model.named_parameters())
    decay = [name for name in names if name.endswith("weight") and "norm" not in name]
    optimizer = muon_with_adamw(model, decay, lr=1e-2, weight_decay=0.1, adamw_kwargs={"lr": 5.0, "fused": True})
    muon_ids = {id(p) for group in optimizer.muon.param_groups for p in group["params"]}
    assert muon_ids == {id(names[name]) for name in hidden_matrices(model)}
    assert optimizer.adamw is not None and optimizer.adamw.defaults["fused"]
    assert [g["weight_decay"] for g in optimizer.adamw.param_groups] == [0.1, 0.0]  # biases and norms not decayed
    assert len(optimizer.param_groups) == 3
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    before = {name: p.detach().clone() for name, p in names.items()}
    for _ in range(2):
        model(torch.randint(0, 50, (2, 8)), labels=torch.randint(0, 50, (2, 8))).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    # the scheduler's learning rate reached both inner optimizers (the recipe lr, not the kwargs' own)
    assert [g["lr"] for g in optimizer.muon.param_groups + optimizer.adamw.param_groups] == [2.5e-3] * 3
    assert all(not torch.equal(before[name], p) for name, p in names.items())
    state = optimizer.state_dict()
    assert set(state) == {"muon", "adamw"} and len(state["muon"]["state"]) == len(muon_ids)
    fresh = muon_with_adamw(model, decay, lr=1e-2, weight_decay=0.1)
    fresh.load_state_dict(state)
    assert torch.equal(
        fresh.muon.state[names["model.layers.0.mlp.up_proj.weight"]]["momentum_buffer"],
        optimizer.muon.state[names["model.layers.0.mlp.up_proj.weight"]]["momentum_buffer"],
    )


def test_lora_matrices_all_go_to_muon():
    model = get_peft_model(tiny_aksis(), LoraConfig(r=4, target_modules=["qkv_proj"]))
    optimizer = muon_with_adamw(model, [], lr=1e-2, weight_decay=0.0)
    assert optimizer.adamw is None and len(optimizer.param_groups) == 1
    model(torch.randint(0, 50, (2, 8)), labels=torch.randint(0, 50, (2, 8))).loss.backward()
    optimizer.step()
    assert optimizer.state_dict()["adamw"] is None


def test_what_muon_cannot_take_is_a_one_line_error():
    with pytest.raises(LmforgeError, match="no hidden weight matrices"):
        muon_with_adamw(torch.nn.Embedding(4, 3), [], lr=1e-2, weight_decay=0.0)
    with pytest.raises(LmforgeError, match="plain torch optimizer"):
        muon_with_adamw(tiny_aksis(), [], lr=1e-2, weight_decay=0.0, adamw_cls=lambda: None)


def test_muon_recipe_trains_with_the_real_trainer(tmp_path, tiny_text_file):
    # Resuming a muon run from its checkpoint: test_training.py::test_resume_from_last_checkpoint_matches_uninterrupted_run
    full = tmp_path / "full"
    recipe = tiny_recipe(tiny_text_file, full, muon=True, optim="adamw_torch_fused")
    setup = build_setup(*parse_recipe(recipe))
    trainer = build_trainer(setup, parse_recipe(recipe)[2])
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, MuonWithAdamW) and optimizer.adamw is not None and optimizer.adamw.defaults["fused"]

    run_training(*parse_recipe(recipe))
    log = json.loads((full / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert losses[-1] < losses[0]
    plain = tmp_path / "plain"
    run_training(*parse_recipe(tiny_recipe(tiny_text_file, plain)))
    a, b = (AutoModelForCausalLM.from_pretrained(path).state_dict() for path in (full, plain))
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], b["model.layers.0.mlp.up_proj.weight"])


def test_muon_refuses_sharded_weights(tmp_path, tiny_text_file, monkeypatch):
    recipe = tiny_recipe(tiny_text_file, tmp_path / "out", muon=True)
    trainer = build_trainer(build_setup(*parse_recipe(recipe)), parse_recipe(recipe)[2])
    monkeypatch.setattr(trainer, "is_fsdp_enabled", True)
    with pytest.raises(LmforgeError, match=r"FSDP and DeepSpeed shard them: set muon: false \(--muon false\)"):
        trainer.create_optimizer()


@pytest.mark.parametrize("shape", [(24, 8), (8, 24), (16, 16)])
def test_fp32_newton_schulz_is_torchs_iteration_at_higher_precision(shape):
    """The fp32 orthogonalization is torch's (bf16) one to bf16 precision."""
    from torch.optim._muon import _zeropower_via_newtonschulz

    torch.manual_seed(0)
    grad = torch.randn(shape)
    ours = newton_schulz_float32(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert ours.dtype == torch.float32 and ours.shape == grad.shape
    torchs = _zeropower_via_newtonschulz(grad, (3.4445, -4.7750, 2.0315), 5, 1e-7).float()
    assert (ours - torchs).norm() / torchs.norm() < 0.03
    singular = torch.linalg.svdvals(ours)  # Muon's "roughly orthogonal": singular values near 1, not the gradient's
    assert singular.min() > 0.5 and singular.max() < 1.5
    assert not torch.equal(ours, torchs)  # it did not run in bf16


@pytest.mark.parametrize("shape", [(24, 8), (8, 24)])
def test_a_stack_of_matrices_is_orthogonalized_each_on_its_own(shape):
    torch.manual_seed(0)
    stack = torch.randn(3, *shape) * torch.tensor([1.0, 10.0, 0.1]).view(3, 1, 1)  # norms far apart
    together = newton_schulz_float32(stack, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    assert together.shape == stack.shape
    for matrix, ortho in zip(stack, together, strict=True):
        torch.testing.assert_close(ortho, newton_schulz_float32(matrix, (3.4445, -4.7750, 2.0315), 5, 1e-7))


def newton_schulz_float64(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Muon's quintic Newton-Schulz orthogonalization (torch's coefficients and normalization), in float64 here."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    tall = update.size(0) > update.size(1)
    x = update.double().T if tall else update.double()
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def step_error(optimizer: torch.optim.Optimizer, starts: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
    """The largest relative distance, over the parameters, between the update `optimizer.step()` made and Muon's
    update with a float64 orthogonalization: Nesterov momentum (from the step's buffer), the decoupled weight decay,
    and `match_rms_adamw`'s learning rate (lr * 0.2 * sqrt(max(rows, cols)))."""
    group = optimizer.param_groups[0]
    lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
    errors = []
    for param, start, grad in zip(group["params"], starts, grads, strict=True):
        update = grad.lerp(optimizer.state[param]["momentum_buffer"], momentum)
        step = lr * 0.2 * max(param.shape) ** 0.5 * newton_schulz_float64(update)
        expected = start.double() * (1 - lr * decay) - step
        errors.append(float((param.detach().double() - expected).norm() / step.norm()))
    return max(errors)


def test_fp32_muon_steps_like_torchs_muon():
    """One step of `Float32Muon` and of `torch.optim.Muon` from the same weights and gradients: the same momentum
    buffers exactly, the same weights to bf16 precision of the update."""
    torch.manual_seed(0)
    weights = [torch.randn(12, 20), torch.randn(20, 12)]
    grads = [torch.randn_like(w) for w in weights]
    results, optimizers_used = [], []
    for cls in (Float32Muon, torch.optim.Muon):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad.clone()
        optimizer = cls(params, lr=0.1, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
        optimizer.step()
        results.append((params, [optimizer.state[p]["momentum_buffer"] for p in params]))
        optimizers_used.append(optimizer)
    (ours, our_buffers), (torchs, torch_buffers) = results
    for mine, theirs, start in zip(ours, torchs, weights, strict=True):
        update = theirs.detach() - start
        assert update.abs().max() > 0.01  # the step moved the weights
        assert ((mine.detach() - start) - update).norm() / update.norm() < 0.03
    assert all(torch.equal(a, b) for a, b in zip(our_buffers, torch_buffers, strict=True))
    # ours orthogonalizes in fp32: its step is the float64 one to fp32 precision; torch's bf16 step is not
    assert step_error(optimizers_used[0], weights, grads) < 1e-4 < step_error(optimizers_used[1], weights, grads)


@pytest.mark.parametrize("native", [True, False])
def test_muon_runs_newton_schulz_in_fp32_where_the_cpu_emulates_bf16(monkeypatch, native):
    monkeypatch.setattr(optimizers, "cpu_has_native_bf16", lambda: native)
    optimizer = muon_with_adamw(tiny_aksis(), [], lr=1e-2, weight_decay=0.0)
    assert type(optimizer.muon) is (torch.optim.Muon if native else Float32Muon)
    matrices = optimizer.muon.param_groups[0]["params"]
    starts = [param.detach().clone() for param in matrices]
    grads = [torch.randn_like(param) for param in matrices]
    for param, grad in zip(matrices, grads, strict=True):
        param.grad = grad.clone()
    optimizer.step()
    # the step's orthogonalization ran in fp32 (the float64 one to 1e-4) where the CPU emulates bf16, else in bf16
    error = step_error(optimizer.muon, starts, grads)
    if native:
        assert error > 1e-3, error
    else:
        assert error < 1e-4, error


@pytest.mark.parametrize("native", [True, False])
def test_step_with_a_closure_returns_its_loss(monkeypatch, native):
    """`step(closure)`, as torch optimizers take it: the closure recomputes the loss with gradients on, and the step
    returns that loss and uses the gradients it made."""
    monkeypatch.setattr(optimizers, "cpu_has_native_bf16", lambda: native)
    model = tiny_aksis()
    optimizer = muon_with_adamw(model, [], lr=1e-2, weight_decay=0.0)
    ids = torch.randint(0, 50, (2, 8))
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(ids, labels=ids).loss
        loss.backward()
        return loss

    with torch.no_grad():
        loss = optimizer.step(closure)
    assert loss is not None and loss.requires_grad
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.weight)
    assert optimizer.step() is None
