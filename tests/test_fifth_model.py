"""Adding an architecture is its folder plus one registry line: a fifth model type, registered at run time with
`lmforge.models.register(ModelSpec(...))`, goes through train, generate, chat, its model card, LoRA and
`push --dry-run` with nothing else told about it (no table or branch outside its spec)."""

import io
import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from transformers import AutoConfig, AutoModelForCausalLM

from lmforge import models
from lmforge.cli.main import main
from lmforge.hub.cards import render_model_card
from lmforge.inference import GenerationSettings, TextGenerator

from .conftest import SAMPLE_TEXT
from .toy_decoder import ToyDecoderConfig, ToyDecoderForCausalLM, ToyDecoderModel, toy_spec

TINY = {
    "config_overrides.hidden_size": "16",
    "config_overrides.intermediate_size": "32",
    "config_overrides.num_hidden_layers": "1",
    "config_overrides.num_attention_heads": "2",
    "config_overrides.max_position_embeddings": "64",
}


@pytest.fixture(scope="module")
def toy_registered(tmp_path_factory: pytest.TempPathFactory):
    spec = toy_spec(tmp_path_factory.mktemp("toy") / "toy_decoder.md")
    models.register(spec)  # the one registry line
    yield spec
    models.SPECS.pop(spec.model_type)


@pytest.fixture(scope="module")
def toy_run(toy_registered, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-run")
    corpus = root / "corpus.txt"
    corpus.write_text(SAMPLE_TEXT * 20, encoding="utf-8")
    out = root / "toy"
    overrides = [item for key, value in TINY.items() for item in (f"--{key}", value)]
    arguments = ["--max_steps", "3", "--block_size", "16", "--tokenizer_vocab_size", "300", "--use_cpu", "true"]
    arguments += [
        "--disable_tqdm",
        "true",
        "--save_strategy",
        "no",
        "--sample_prompts",
        "[Once]",
        "--sample_max_new_tokens",
        "8",
    ]
    code = main(
        [
            "train",
            "--model",
            "toy_decoder",
            "--input-file",
            str(corpus),
            "--output-dir",
            str(out),
            *arguments,
            *overrides,
        ]
    )
    assert code == 0
    return out


def test_the_registry_knows_the_fifth_type(toy_registered) -> None:
    assert models.get_spec("toy_decoder") is toy_registered
    assert type(AutoConfig.for_model("toy_decoder")) is ToyDecoderConfig
    from lmforge.adapters import lora_config

    assert lora_config("toy_decoder", {"r": 2}).target_modules == {"qkv_proj", "o_proj"}


def test_train_saves_a_model_of_the_fifth_type(toy_run: Path) -> None:
    config = json.loads((toy_run / "config.json").read_text())
    assert config["model_type"] == "toy_decoder" and config["architectures"] == ["ToyDecoderForCausalLM"]
    assert yaml.safe_load((toy_run / "recipe.yaml").read_text())["model_type"] == "toy_decoder"
    model = AutoModelForCausalLM.from_pretrained(toy_run)
    assert type(model) is ToyDecoderForCausalLM and type(model.model) is ToyDecoderModel
    assert "Once" in json.loads((toy_run / "samples.json").read_text())


# generate and chat go through the inference layer (lmforge.inference / lmforge.loading), which reads the model's
# spec (prompt style, processor class, modes); these two tests depend on that layer.
def test_generate_and_chat(toy_run: Path, monkeypatch, capsys) -> None:
    assert main(["generate", "--model-path", str(toy_run), "--prompt", "Once", "--num-tokens", "4"]) == 0
    # the prompt, then the model's greedy continuation of it (at least one new character)
    greedy = GenerationSettings(max_new_tokens=4, do_sample=False)
    new_text = TextGenerator.from_pretrained(toy_run).generate("Once", greedy)
    assert new_text and capsys.readouterr().out == "Once" + new_text + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\n/exit\n"))
    assert main(["chat", "--model-path", str(toy_run), "--max-new-tokens", "4"]) == 0
    assert "model>" in capsys.readouterr().out


def test_card_and_push_dry_run(toy_run: Path, tmp_path: Path, capsys) -> None:
    card = render_model_card(toy_run, repo_id="someone/toy")
    meta = ModelCard(str(card)).data.to_dict()
    assert meta["pipeline_tag"] == "text-generation" and "toy_decoder" in meta["tags"]
    assert "A toy decoder trained with lmforge. Size: 1 layers, width 16" in card.text

    staging = tmp_path / "upload"
    assert (
        main(
            [
                "push",
                "--model-path",
                str(toy_run),
                "--repo-id",
                "someone/toy",
                "--dry-run",
                "--output-dir",
                str(staging),
            ]
        )
        == 0
    )
    uploaded = {p.name for p in (staging / "model").iterdir()}
    assert {"README.md", "config.json", "model.safetensors", "toy_decoder.py"} <= uploaded
    auto_map = json.loads((staging / "model" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForCausalLM"] == "toy_decoder.ToyDecoderForCausalLM"
