"""A routed mixture of adapters: one PEFT adapter per task on one base model, and a router that picks one per input.

The router (`AdapterRouter`) is a small classifier trained by the `Trainer` on two views of an input that every
architecture has: the mean of the base model's token embeddings (layer norm and a linear layer) and its bag of tokens
(the share of each vocabulary entry among its tokens, through a linear layer: one weight per token and adapter, which
is what tells topics and registers apart). `RoutedAdapterModel` runs each group of rows routed to the same adapter with
that adapter active, and puts the rows back in order: any PEFT adapter works (LoRA on linear and embedding layers, and
`modules_to_save`, whole trained copies of modules such as a GRU that LoRA cannot adapt), on decoders and
encoder-decoders alike. The forgetting study (`lmforge.studies.forgetting`) compares it with full fine-tuning and plain
LoRA.
"""

import json
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, concatenate_datasets
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel, Trainer, TrainingArguments, default_data_collator
from transformers.modeling_outputs import ModelOutput, SequenceClassifierOutput

from ..errors import LmforgeError

ROUTER_WEIGHTS_NAME = "router.safetensors"
ROUTER_CONFIG_NAME = "router_config.json"


@torch.no_grad()
def mean_token_embedding(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The mean of the model's input embeddings over the real tokens. (B, T) -> (B, H)

    On a PEFT model these are the base model's embeddings, whatever adapter is active: an adapter may change the
    embeddings (LoRA on them, or a trained copy), and the router must see the same input whichever ran last."""
    embeddings: Any = model.get_input_embeddings()
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            vectors = embeddings(input_ids.to(model.device)).float()  # (B, T, H)
    else:
        vectors = embeddings(input_ids.to(embeddings.weight.device)).float()  # (B, T, H)
    if attention_mask is None:
        return vectors.mean(dim=1)
    mask = attention_mask.to(vectors.device).unsqueeze(-1).float()  # (B, T, 1)
    return (vectors * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def bag_of_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, vocab_size: int) -> torch.Tensor:
    """The share of each vocabulary entry among the real tokens of each row. (B, T) -> (B, V), rows adding up to 1."""
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.device)
    counts = torch.zeros(input_ids.shape[0], vocab_size, device=input_ids.device)
    counts.scatter_add_(1, input_ids.clamp(0, vocab_size - 1), mask.float())
    return counts / counts.sum(dim=1, keepdim=True).clamp(min=1.0)


def router_features(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, vocab_size: int | None
) -> torch.Tensor:
    """The router's input: the mean token embedding, then (with `vocab_size`) the bag of tokens. (B, T) -> (B, H [+ V])"""
    features = mean_token_embedding(model, input_ids, attention_mask)
    if vocab_size is None:
        return features
    return torch.cat([features, bag_of_tokens(input_ids, attention_mask, vocab_size).to(features.device)], dim=-1)


class AdapterRouter(nn.Module):
    """Picks one adapter per input: layer norm and a linear layer over the mean token embedding, plus (with
    `vocab_size`) a linear layer over the bag of tokens; `features` are `router_features(...)`.

    Trained as a classifier (labels = the index of each input's task in `adapter_names`), e.g. by the `Trainer`.
    """

    def __init__(self, hidden_size: int, adapter_names: list[str], vocab_size: int | None = None) -> None:
        super().__init__()
        if len(adapter_names) < 2:
            raise LmforgeError(f"a router needs at least two adapters, got {adapter_names}")
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.adapter_names = list(adapter_names)
        self.norm = nn.LayerNorm(hidden_size)
        self.classifier = nn.Linear(hidden_size, len(adapter_names))
        self.tokens = nn.Linear(vocab_size, len(adapter_names), bias=False) if vocab_size else None

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        features = features.float()
        logits = self.classifier(self.norm(features[:, : self.hidden_size]))  # (B, H) -> (B, n_adapters)
        if self.tokens is not None:
            logits = logits + self.tokens(features[:, self.hidden_size :])  # (B, V) -> (B, n_adapters)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def fit(
        cls,
        model: Any,
        inputs: dict[str, Dataset],
        args: TrainingArguments,
        vocab_size: int | None = None,
    ) -> tuple["AdapterRouter", float]:
        """A router for the adapters named by `inputs` (adapter name -> rows with `input_ids` of its task), trained
        by the `Trainer` to tell the tasks apart from `model`'s token embeddings (and bags of tokens over
        `vocab_size` entries, when given); (router, training seconds)."""
        names = list(inputs)
        parts = []
        features = torch.empty(0)
        for label, name in enumerate(names):
            rows = inputs[name]
            features = torch.cat(
                [
                    router_features(model, *pad_rows(rows, start, 64), vocab_size)
                    for start in range(0, rows.num_rows, 64)
                ]
            )
            parts.append(Dataset.from_dict({"features": features.tolist(), "labels": [label] * rows.num_rows}))
        hidden_size = int(features.shape[-1]) - (vocab_size or 0)
        router = cls(hidden_size, names, vocab_size)
        dataset = concatenate_datasets(parts).shuffle(seed=args.seed)
        trainer = Trainer(model=router, args=args, train_dataset=dataset, data_collator=default_data_collator)
        result = trainer.train()
        return router.eval(), float(result.metrics.get("train_runtime", 0.0))

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / ROUTER_WEIGHTS_NAME))
        config = {"hidden_size": self.hidden_size, "adapter_names": self.adapter_names, "vocab_size": self.vocab_size}
        (path / ROUTER_CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "AdapterRouter":
        path = Path(path)
        if not (path / ROUTER_CONFIG_NAME).is_file() or not (path / ROUTER_WEIGHTS_NAME).is_file():
            raise LmforgeError(f"{path} has no saved router ({ROUTER_CONFIG_NAME} and {ROUTER_WEIGHTS_NAME})")
        config = json.loads((path / ROUTER_CONFIG_NAME).read_text(encoding="utf-8"))
        router = cls(config["hidden_size"], config["adapter_names"], config.get("vocab_size"))
        router.load_state_dict(load_file(str(path / ROUTER_WEIGHTS_NAME)))
        return router.eval()


def pad_rows(rows: Dataset, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `start` to `start + size` of `input_ids` (of any lengths), right-padded with 0, and their mask."""
    sequences = [torch.tensor(ids, dtype=torch.long) for ids in rows[start : start + size]["input_ids"]]
    input_ids = nn.utils.rnn.pad_sequence(sequences, batch_first=True)
    mask = nn.utils.rnn.pad_sequence([torch.ones_like(ids) for ids in sequences], batch_first=True)
    return input_ids, mask


class RoutedAdapterModel(nn.Module):
    """A PEFT model holding one adapter per task, and a router choosing the adapter of each input row.

    `forward` and `generate` take the usual arguments; the rows routed to the same adapter run together with that
    adapter active, and come back in their order. The model is for evaluation and generation, not for training (train
    the adapters and the router separately). Its loss is the token-level cross-entropy of the labels over the whole
    batch, as the models' own losses are (shifted by one token for a decoder).
    """

    # The Trainer must take this model's mean token loss as it is, not pass `num_items_in_batch` to renormalise it.
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
    def generation_config(self) -> Any:
        return self.peft_model.generation_config

    @property
    def device(self) -> torch.device:
        return self.peft_model.device

    def route(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[str]:
        """The adapter name chosen for each row of the batch."""
        features = router_features(self.peft_model, input_ids, attention_mask, self.router.vocab_size)
        with torch.no_grad():
            choice = self.router(features.to(self.router.classifier.weight.device)).logits.argmax(dim=-1)
        return [self.router.adapter_names[i] for i in choice.tolist()]

    def _groups(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Adapter name -> the indices of the rows routed to it."""
        names = self.route(input_ids, attention_mask)
        return {
            name: torch.tensor([i for i, chosen in enumerate(names) if chosen == name], device=input_ids.device)
            for name in dict.fromkeys(names)
        }

    @staticmethod
    def _rows(value: Any, rows: torch.Tensor, batch_size: int) -> Any:
        """The given rows of a per-row tensor argument; anything else as it is."""
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch_size:
            return value.index_select(0, rows.to(value.device))
        return value

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ModelOutput:
        batch_size = input_ids.shape[0]
        logits: torch.Tensor | None = None
        for name, rows in self._groups(input_ids, attention_mask).items():
            self.peft_model.set_adapter(name)
            group = {
                key: self._rows(value, rows, batch_size)
                for key, value in {"input_ids": input_ids, "attention_mask": attention_mask, **kwargs}.items()
            }
            out = self.peft_model(**group)
            if logits is None:
                logits = out.logits.new_zeros((batch_size, *out.logits.shape[1:]))
            logits[rows.to(logits.device)] = out.logits
        assert logits is not None
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            scored, targets = (logits, labels) if self.config.is_encoder_decoder else (logits[:, :-1], labels[:, 1:])
            loss = F.cross_entropy(scored.float().reshape(-1, scored.shape[-1]), targets.reshape(-1))
        return ModelOutput(loss=loss, logits=logits) if loss is not None else ModelOutput(logits=logits)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """`generate()` per group of rows with its adapter; the sequences come back in order, padded on the right."""
        batch_size = input_ids.shape[0]
        config = kwargs.get("generation_config")
        pad = getattr(config, "pad_token_id", None)
        pad = pad if pad is not None else kwargs.get("pad_token_id", self.config.pad_token_id)
        pieces = []
        for name, rows in self._groups(input_ids, attention_mask).items():
            self.peft_model.set_adapter(name)
            generate: Any = self.peft_model.generate
            group = {key: self._rows(value, rows, batch_size) for key, value in kwargs.items()}
            mask = self._rows(attention_mask, rows, batch_size) if attention_mask is not None else None
            pieces.append((rows, generate(input_ids=input_ids[rows], attention_mask=mask, **group)))
        length = max(sequences.shape[1] for _, sequences in pieces)
        output = input_ids.new_full((batch_size, length), pad if pad is not None else 0)
        for rows, sequences in pieces:
            output[rows, : sequences.shape[1]] = sequences.to(output.device)
        return output

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


__all__ = [
    "ROUTER_CONFIG_NAME",
    "ROUTER_WEIGHTS_NAME",
    "AdapterRouter",
    "RoutedAdapterModel",
    "bag_of_tokens",
    "mean_token_embedding",
    "pad_rows",
    "router_features",
]
