"""Muon for a model's hidden weight matrices and the run's own optimizer (AdamW by default) for the rest, as the one
optimizer the Trainer drives (the recipe key `muon: true`).

This is torch.optim.Muon used as its documentation says: only for the hidden 2-D weights, while "the input embedding,
final output layer, and any internal gains or biases should be optimized using a standard method such as AdamW". Muon
runs in its `match_rms_adamw` mode, so the recipe's one `learning_rate` and `weight_decay` (and the Trainer's scheduler)
serve both halves."""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import LmforgeError


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
        self.muon = torch.optim.Muon(
            [{"params": list(muon_params)}], lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"
        )
        # None when Muon takes every trainable parameter (LoRA's matrices, say)
        self.adamw = adamw_cls(adamw_groups, **{**(adamw_kwargs or {}), "lr": lr}) if adamw_groups else None
        adamw_param_groups = self.adamw.param_groups if self.adamw is not None else []
        super().__init__([*self.muon.param_groups, *adamw_param_groups], defaults={})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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


__all__ = ["MuonWithAdamW", "hidden_matrices", "muon_with_adamw"]
