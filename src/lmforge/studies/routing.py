"""A routed mixture of LoRA adapters: one adapter per task on one base model, and a router that picks one per input.

The router (`AdapterRouter`: layer norm and a linear layer over the mean of the base model's token embeddings) is a
small classifier trained by the `Trainer`. `RoutedAdapterModel` runs a batch with a different adapter per row through
PEFT's mixed-adapter batches (`adapter_names=`), so the adapters themselves are plain PEFT adapters. The forgetting
study (`lmforge.studies.forgetting`) compares it with full fine-tuning and plain LoRA.
"""

import json
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, concatenate_datasets
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainingArguments, default_data_collator
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import LmforgeError

ROUTER_WEIGHTS_NAME = "router.safetensors"
ROUTER_CONFIG_NAME = "router_config.json"


@torch.no_grad()
def mean_token_embedding(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The router's input: the mean of the model's input embeddings over the real tokens. (B, T) -> (B, H)"""
    embeddings: Any = model.get_input_embeddings()
    vectors = embeddings(input_ids.to(embeddings.weight.device)).float()  # (B, T, H)
    if attention_mask is None:
        return vectors.mean(dim=1)
    mask = attention_mask.to(vectors.device).unsqueeze(-1).float()  # (B, T, 1)
    return (vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class AdapterRouter(nn.Module):
    """Picks one adapter per input: layer norm and a linear layer over the mean token embedding (`features`).

    Trained as a classifier (labels = the index of each input's task in `adapter_names`), e.g. by the `Trainer`.
    """

    def __init__(self, hidden_size: int, adapter_names: list[str]) -> None:
        super().__init__()
        if len(adapter_names) < 2:
            raise LmforgeError(f"a router needs at least two adapters, got {adapter_names}")
        self.hidden_size = hidden_size
        self.adapter_names = list(adapter_names)
        self.norm = nn.LayerNorm(hidden_size)
        self.classifier = nn.Linear(hidden_size, len(adapter_names))

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        logits = self.classifier(self.norm(features.float()))  # (B, H) -> (B, n_adapters)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def fit(cls, model: Any, inputs: dict[str, Dataset], args: TrainingArguments) -> tuple["AdapterRouter", float]:
        """A router for the adapters named by `inputs` (adapter name -> rows with `input_ids` of its task), trained
        by the `Trainer` to tell the tasks apart from `model`'s mean token embeddings; (router, training seconds)."""
        names = list(inputs)
        parts = []
        for label, name in enumerate(names):
            rows = inputs[name]
            features = torch.cat(
                [
                    mean_token_embedding(model, torch.tensor(rows[start : start + 64]["input_ids"]))
                    for start in range(0, rows.num_rows, 64)
                ]
            )
            parts.append(Dataset.from_dict({"features": features.tolist(), "labels": [label] * rows.num_rows}))
        router = cls(int(features.shape[-1]), names)
        dataset = concatenate_datasets(parts).shuffle(seed=args.seed)
        trainer = Trainer(model=router, args=args, train_dataset=dataset, data_collator=default_data_collator)
        result = trainer.train()
        return router.eval(), float(result.metrics.get("train_runtime", 0.0))

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / ROUTER_WEIGHTS_NAME))
        config = {"hidden_size": self.hidden_size, "adapter_names": self.adapter_names}
        (path / ROUTER_CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "AdapterRouter":
        path = Path(path)
        if not (path / ROUTER_CONFIG_NAME).is_file() or not (path / ROUTER_WEIGHTS_NAME).is_file():
            raise LmforgeError(f"{path} has no saved router ({ROUTER_CONFIG_NAME} and {ROUTER_WEIGHTS_NAME})")
        config = json.loads((path / ROUTER_CONFIG_NAME).read_text(encoding="utf-8"))
        router = cls(config["hidden_size"], config["adapter_names"])
        router.load_state_dict(load_file(str(path / ROUTER_WEIGHTS_NAME)))
        return router.eval()


class RoutedAdapterModel(nn.Module):
    """A PEFT model holding one LoRA adapter per task, and a router choosing the adapter of each input row.

    `forward` and `generate` take the usual arguments; each row runs with its routed adapter (PEFT mixed-adapter
    batches), so the model is for evaluation and generation, not for training (train the adapters and the router
    separately).
    """

    # The Trainer must take the wrapped model's own mean token loss as it is (as for the lmforge models), not pass
    # `num_items_in_batch` through `**kwargs` to renormalise it.
    accepts_loss_kwargs = False

    def __init__(self, peft_model: PeftModel, router: AdapterRouter) -> None:
        super().__init__()
        missing = set(router.adapter_names) - set(peft_model.peft_config)
        if missing:
            raise LmforgeError(f"the router names adapters the model does not have: {sorted(missing)}")
        self.peft_model = peft_model
        self.router = router

    @property
    def config(self) -> Any:
        return self.peft_model.config

    @property
    def device(self) -> torch.device:
        return self.peft_model.device

    def route(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[str]:
        """The adapter name chosen for each row of the batch."""
        features = mean_token_embedding(self.peft_model, input_ids, attention_mask)
        with torch.no_grad():
            choice = self.router(features.to(self.router.classifier.weight.device)).logits.argmax(dim=-1)
        return [self.router.adapter_names[i] for i in choice.tolist()]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        names = self.route(input_ids, attention_mask)
        return self.peft_model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels, adapter_names=names, **kwargs
        )

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        names = self.route(input_ids, attention_mask)
        generate: Any = self.peft_model.generate
        return generate(input_ids=input_ids, attention_mask=attention_mask, adapter_names=names, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        """Each adapter in `path/<adapter name>/` (PEFT format, safetensors) and the router in `path/`."""
        path = Path(path)
        for name in self.router.adapter_names:
            self.peft_model.save_pretrained(str(path / name), selected_adapters=[name])
            # PEFT writes adapters other than "default" to a subfolder of their name; keep one level.
            nested = path / name / name
            if nested.is_dir():
                for item in nested.iterdir():
                    item.replace(path / name / item.name)
                nested.rmdir()
        self.router.save_pretrained(path)

    @classmethod
    def from_pretrained(cls, base_model: PreTrainedModel, path: str | Path) -> "RoutedAdapterModel":
        """Load the router and its adapters saved by `save_pretrained` on top of `base_model`."""
        router = AdapterRouter.from_pretrained(path)
        first, *others = router.adapter_names
        peft_model = PeftModel.from_pretrained(base_model, str(Path(path) / first), adapter_name=first)
        for name in others:
            peft_model.load_adapter(str(Path(path) / name), adapter_name=name)
        return cls(peft_model, router).eval()


__all__ = ["ROUTER_CONFIG_NAME", "ROUTER_WEIGHTS_NAME", "AdapterRouter", "RoutedAdapterModel", "mean_token_embedding"]
