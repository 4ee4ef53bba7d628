"""Muon for a model's hidden weight matrices and the run's own optimizer (AdamW by default) for the rest, as the one
optimizer the Trainer drives (the recipe key `muon: true`).

This is torch.optim.Muon used as its documentation says: only for the hidden 2-D weights, while "the input embedding,
final output layer, and any internal gains or biases should be optimized using a standard method such as AdamW". Muon
runs in its `match_rms_adamw` mode, so the recipe's one `learning_rate` and `weight_decay` (and the Trainer's scheduler)
serve both halves. On a CPU without bf16 instructions its Newton-Schulz iterations run in fp32 (`Float32Muon`)."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim._muon import _adjust_lr  # torch's learning-rate adjustment of Muon's update (private, torch <2.14)

from ..errors import LmforgeError
from .arguments import cpu_has_native_bf16


def hidden_matrices(model: nn.Module) -> list[str]:
    """The names of the trainable 2-D weights Muon takes: every one but the weights of embedding layers and of the
    output layer (tied to the input embeddings or not)."""
    excluded = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    if output is not None:
        excluded.add(id(output.weight))
    return [
        name
        for name, param in model.named_parameters()
        if param.requires_grad and param.ndim == 2 and id(param) not in excluded
    ]


def closure_loss(closure: Any) -> Any:
    """What an optimizer's `step(closure)` returns: the loss the closure recomputes, with gradients on (or None)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def newton_schulz_float32(
    grad: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float
) -> torch.Tensor:
    """torch's Muon orthogonalization (`torch.optim._muon._zeropower_via_newtonschulz`: the same quintic iteration,
    coefficients and normalization) computed in fp32 instead of bf16; of one (rows, cols) matrix, or of a stack of
    matrices of one shape, (n, rows, cols), each on its own."""
    a, b, c = ns_coefficients
    stack = grad.float() if grad.dim() == 3 else grad.float().unsqueeze(0)  # (n, rows, cols)
    tall = stack.size(1) > stack.size(2)
    ortho = stack.mT if tall else stack  # (n, r, c) with r <= c
    ortho = ortho / ortho.norm(dim=(1, 2), keepdim=True).clamp(min=eps)  # spectral norms at most 1
    for _ in range(ns_steps):
        gram = ortho @ ortho.mT  # (n, r, r)
        ortho = torch.baddbmm(ortho, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), ortho, beta=a)
    ortho = ortho.mT if tall else ortho
    return ortho if grad.dim() == 3 else ortho.squeeze(0)


class Float32Muon(torch.optim.Muon):
    """`torch.optim.Muon` with its Newton-Schulz iterations in fp32, for a CPU without bf16 instructions (AVX512-BF16,
    AMX). torch runs them in bf16, which such a CPU emulates: the quickstart's 16 matrices took 150 ms a step there
    against 37 ms in fp32, a third of the whole training step. The matrices of one shape (the same projection in
    every layer) are orthogonalized together, as one stack: on a 2-core AVX2 CPU 25 ms a step against 36 ms one by
    one for the quickstart's 16 matrices. The rest of the update is torch's: momentum (Nesterov), the learning-rate
    adjustment and the decoupled weight decay, with the same hyper-parameters and state."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure_loss(closure)
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            buffers: list[torch.Tensor] = []
            self._init_group(group, params, grads, buffers)
            by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for param, grad, buffer in zip(params, grads, buffers, strict=True):
                buffer.lerp_(grad, 1 - group["momentum"])
                update = grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer
                by_shape.setdefault(tuple(param.shape), []).append((param, update))
            for same_shape in by_shape.values():
                updates = newton_schulz_float32(
                    torch.stack([update for _, update in same_shape]),
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                )  # (n, rows, cols)
                for (param, _), update in zip(same_shape, updates, strict=True):
                    param.mul_(1 - group["lr"] * group["weight_decay"])
                    param.add_(update, alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], param.shape))
        return loss


class MuonWithAdamW(torch.optim.Optimizer):
    """Two torch optimizers stepped as one: `torch.optim.Muon` over the hidden matrices and `adamw_cls` (AdamW, or the
    run's `optim`) over the other parameters. The param groups are shared with the two, so a learning-rate scheduler
    of this optimizer drives both; the state dict holds both."""

    def __init__(
        self,
        muon_params: Iterable[torch.Tensor],
        adamw_groups: list[dict[str, Any]],
        lr: float,
        weight_decay: float,
        adamw_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
        adamw_kwargs: dict[str, Any] | None = None,
    ) -> None:
        muon_params = list(muon_params)
        on_emulating_cpu = all(p.device.type == "cpu" for p in muon_params) and not cpu_has_native_bf16()
        muon_cls = Float32Muon if on_emulating_cpu else torch.optim.Muon
        self.muon = muon_cls(
            [{"params": muon_params}], lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"
        )
        # None when Muon takes every trainable parameter (LoRA's matrices, say)
        self.adamw = adamw_cls(adamw_groups, **{**(adamw_kwargs or {}), "lr": lr}) if adamw_groups else None
        adamw_param_groups = self.adamw.param_groups if self.adamw is not None else []
        super().__init__([*self.muon.param_groups, *adamw_param_groups], defaults={})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure_loss(closure)
        self.muon.step()
        if self.adamw is not None:
            self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.muon.load_state_dict(state_dict["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])


def muon_with_adamw(
    model: nn.Module,
    decay_names: Iterable[str],
    lr: float,
    weight_decay: float,
    adamw_cls: Any = torch.optim.AdamW,
    adamw_kwargs: dict[str, Any] | None = None,
) -> MuonWithAdamW:
    """Muon over `hidden_matrices(model)`; `adamw_cls` over the rest, with `weight_decay` on the parameters named in
    `decay_names` (the Trainer's choice: no decay on biases and norms) and none on the others."""
    if not (isinstance(adamw_cls, type) and issubclass(adamw_cls, torch.optim.Optimizer)):
        raise LmforgeError(
            f"muon: true pairs Muon with a plain torch optimizer (optim: adamw_torch); not {adamw_cls!r}"
        )
    matrices, decay = set(hidden_matrices(model)), set(decay_names)
    if not matrices:
        raise LmforgeError(f"muon: true found no hidden weight matrices to train in {type(model).__name__}")
    muon: list[torch.Tensor] = []
    decayed: list[torch.Tensor] = []
    not_decayed: list[torch.Tensor] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (muon if name in matrices else decayed if name in decay else not_decayed).append(param)
    adamw_groups = [
        {"params": params, "weight_decay": rate}
        for params, rate in ((decayed, weight_decay), (not_decayed, 0.0))
        if params
    ]
    return MuonWithAdamW(muon, adamw_groups, lr, weight_decay, adamw_cls, adamw_kwargs)


__all__ = ["Float32Muon", "MuonWithAdamW", "hidden_matrices", "muon_with_adamw", "newton_schulz_float32"]
