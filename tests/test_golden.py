"""Golden outputs: the committed tiny model of each architecture (tests/data/golden) still writes the committed greedy
token ids, through the independent oracle and through every way `generate()` is called.

A change in lmforge, transformers, torch or tokenizers that changes what a model writes fails here with the ids
side by side. When the change is deliberate, regenerate the golden files (`python -m tests.golden`, see
tests/golden.py) and commit the diff with the change that caused it.
"""

from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from lmforge.inference import GenerationSettings, TextGenerator
from lmforge.loading import load_model_and_processor

from .break_cache import plant
from .golden import ARCHITECTURES, MAX_NEW_TOKENS, golden_folder, load_golden, prompt_ids
from .models.contract import oracle_generate

DECODERS = ("aksis", "char_transformer")


def load(model_type: str) -> tuple[Any, Any]:
    """The committed folder through transformers' Auto classes (the lmforge classes, registered by `import lmforge`):
    the model and the tokenizer that reads the prompt."""
    folder = golden_folder(model_type)
    if model_type in DECODERS:
        return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    subfolder = {"subfolder": "encoder_tokenizer"} if model_type == "latent_reasoner" else {}
    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder, **subfolder)


def new_ids(model_type: str, output: torch.Tensor, prompt_length: int) -> list[list[int]]:
    """The new tokens of each row of `generate()`'s output: after the (padded) prompt of a decoder, after the decoder
    start token of an encoder-decoder."""
    start = prompt_length if model_type in DECODERS else 1
    return output[:, start:].tolist()


@pytest.fixture(scope="module", params=ARCHITECTURES)
def golden(request: pytest.FixtureRequest) -> dict[str, Any]:
    model_type = request.param
    model, tokenizer = load(model_type)
    return {"model_type": model_type, "model": model, "tokenizer": tokenizer, **load_golden(model_type)}


def test_the_golden_files_are_complete() -> None:
    for model_type in ARCHITECTURES:
        record = load_golden(model_type)
        assert record["model_type"] == model_type and record["max_new_tokens"] == MAX_NEW_TOKENS
        assert len(record["prompts"]) == 2
        for case in record["prompts"]:
            assert len(case["new_ids"]) == MAX_NEW_TOKENS and case["new_text"].strip()
        names = {path.name for path in golden_folder(model_type).iterdir()}
        assert "model.safetensors" in names and not any(name.endswith((".bin", ".py")) for name in names)


def test_the_tokenizer_reads_the_golden_prompt_ids(golden: dict[str, Any]) -> None:
    _, processor = load_model_and_processor(golden_folder(golden["model_type"]))
    for case in golden["prompts"]:
        assert prompt_ids(golden["model_type"], processor, case["text"]) == case["input_ids"], case["text"]


def test_the_oracle_writes_the_golden_ids(golden: dict[str, Any]) -> None:
    """Plain full forward passes: the forward pass itself has not changed."""
    for case in golden["prompts"]:
        got = oracle_generate(golden["model"], case["input_ids"], MAX_NEW_TOKENS)
        assert got == case["new_ids"], f"{case['text']!r}: oracle {got} != golden {case['new_ids']}"


@pytest.mark.parametrize("use_cache", [None, True, False], ids=["default", "cached", "uncached"])
def test_generate_writes_the_golden_ids(golden: dict[str, Any], use_cache: bool | None) -> None:
    """`generate()` with the model's own generation config (greedy), one prompt at a time."""
    model_type, model = golden["model_type"], golden["model"]
    options = {} if use_cache is None else {"use_cache": use_cache}
    for case in golden["prompts"]:
        ids = torch.tensor([case["input_ids"]])
        output = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS, **options
        )
        [got] = new_ids(model_type, output, ids.shape[1])
        assert got == case["new_ids"], f"{case['text']!r}: generate {got} != golden {case['new_ids']}"


def test_batched_generate_with_padding_writes_the_golden_ids(golden: dict[str, Any]) -> None:
    """Both prompts in one batch: a decoder's prompts padded on the left, an encoder-decoder's texts padded as its
    tokenizer pads them (the attention mask hides the padding)."""
    model_type, model, tokenizer = golden["model_type"], golden["model"], golden["tokenizer"]
    cases = golden["prompts"]
    if model_type in DECODERS:
        rows = [case["input_ids"] for case in cases]
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows])
        attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
    else:
        encoded = tokenizer([case["text"] for case in cases], padding=True, return_tensors="pt")
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
    assert (attention_mask == 0).any(), "the batch must really pad"
    output = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=MAX_NEW_TOKENS)
    for case, got in zip(cases, new_ids(model_type, output, input_ids.shape[1]), strict=True):
        assert got == case["new_ids"], f"{case['text']!r}: batched {got} != golden {case['new_ids']}"


def test_the_inference_layer_writes_the_golden_text(golden: dict[str, Any]) -> None:
    generator = TextGenerator.from_pretrained(golden_folder(golden["model_type"]))
    greedy = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    texts = [case["text"] for case in golden["prompts"]]
    assert [generator.generate(text, greedy) for text in texts] == [case["new_text"] for case in golden["prompts"]]
    if generator.prompt_style == "answer":  # an encoder-decoder also answers a batch
        assert generator.generate(texts, greedy, batch_size=2) == [case["new_text"] for case in golden["prompts"]]


def test_a_planted_cache_break_changes_what_generate_writes(golden: dict[str, Any]) -> None:
    """The experiment of tests/break_cache.py still plants a real break: with it, cached generation leaves the golden
    ids (so a suite run with LMFORGE_TEST_BREAK_CACHE=1 proves something) and the oracle does not."""
    model_type, model = golden["model_type"], golden["model"]
    case = golden["prompts"][0]
    ids = torch.tensor([case["input_ids"]])
    repair = plant()
    try:
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS)
        oracle = oracle_generate(model, case["input_ids"], MAX_NEW_TOKENS)
    finally:
        repair()
    assert new_ids(model_type, output, ids.shape[1])[0] != case["new_ids"]
    assert oracle == case["new_ids"]
