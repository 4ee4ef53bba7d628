"""Sliding-window perplexity of a causal language model over a text, the way the transformers docs describe it.

The text is tokenized once; windows of `max_length` tokens move by `stride`; in each window only the tokens not
scored by the previous window count (the rest are context, labelled -100). Perplexity = exp(total NLL / tokens).
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import LmforgeError


@dataclass
class PerplexityResult:
    perplexity: float
    mean_nll: float
    num_tokens: int


def token_stream(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> torch.Tensor:
    """All texts as one stream of ids, each followed by the end-of-sequence token when the tokenizer has one."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + eos)
    return torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def sliding_window_perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    max_length: int | None = None,
    stride: int | None = None,
    show_progress: bool = False,
) -> PerplexityResult:
    """Perplexity of `model` on `texts`; `max_length` defaults to the model's context, `stride` to half of it.

    Only a causal language model has a perplexity over a text: an encoder-decoder model (AE-LLM, LatentReasoner)
    gets a one-line `LmforgeError`."""
    if getattr(model.config, "is_encoder_decoder", False):
        raise LmforgeError(
            f"perplexity over a text needs a causal language model (one that continues text); a "
            f"{model.config.model_type} model is an encoder-decoder that answers its input"
        )
    context = int(getattr(model.config, "max_position_embeddings", 1024))
    if max_length is not None and not 2 <= max_length <= context:
        raise LmforgeError(f"max_length must be between 2 and the model's context ({context}), got {max_length}")
    max_length = max_length or context
    stride = stride or max(1, max_length // 2)
    if stride > max_length:
        raise LmforgeError(f"stride ({stride}) must not exceed max_length ({max_length})")
    ids = token_stream(tokenizer, texts)
    if ids.numel() < 2:
        raise LmforgeError("perplexity needs at least two tokens of text")
    model.eval()
    total_nll, total_tokens, prev_end = 0.0, 0, 0
    starts = range(0, ids.numel(), stride)
    for begin in tqdm(starts, desc="Perplexity", disable=not show_progress):
        end = min(begin + max_length, ids.numel())
        target_len = end - prev_end  # tokens not yet scored
        input_ids = ids[begin:end].unsqueeze(0).to(model.device)  # (1, T)
        labels = input_ids.clone()
        labels[:, :-target_len] = -100
        logits = model(input_ids=input_ids).logits[:, :-1].float()  # (1, T-1, V)
        targets = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total_nll += float(nll)
        total_tokens += int((targets != -100).sum())
        prev_end = end
        if end == ids.numel():
            break
    mean_nll = total_nll / total_tokens
    return PerplexityResult(perplexity=math.exp(mean_nll), mean_nll=mean_nll, num_tokens=total_tokens)


__all__ = ["PerplexityResult", "sliding_window_perplexity", "token_stream"]
