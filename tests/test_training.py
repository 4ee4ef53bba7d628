"""Recipes and training runs: parsing and checking recipes, a real Trainer run, accelerate launch, resume."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge import LmforgeError
from lmforge.cli.quickstart import quickstart_recipe_path
from lmforge.training import (
    apply_overrides,
    cpu_bf16_settings,
    load_recipe,
    parse_recipe,
    read_recipe,
    run_training,
)
from lmforge.training.objectives import objective_of

from .conftest import REPO_ROOT, TINY_AKSIS

RECIPES = REPO_ROOT / "recipes"


def tiny_recipe(tiny_text_file: Path, output_dir: Path, **extra) -> dict:
    recipe = {
        "model_type": "aksis",
        "tokenizer_vocab_size": 200,
        "config_overrides": dict(TINY_AKSIS),
        "train_file": str(tiny_text_file),
        "block_size": 32,
        "output_dir": str(output_dir),
        "max_steps": 12,
        "per_device_train_batch_size": 8,
        "learning_rate": 3e-3,
        "logging_steps": 4,
        "eval_strategy": "steps",
        "eval_steps": 6,
        "save_strategy": "steps",
        "save_steps": 6,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 7,
    }
    recipe.update(extra)
    return recipe


def test_every_shipped_recipe_parses():
    recipes = sorted(RECIPES.glob("*/*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        if path.parent.name == "accelerate_configs":
            continue
        if "pairings" in read_recipe(path):  # a study recipe of `lmforge forgetting`: see tests/test_peft.py
            continue
        if objective_of(path) is not None:  # a TRL recipe (sft, dpo): see tests/test_chat_tuning.py
            continue
        model_args, _, training_args = load_recipe(path)
        assert model_args.model_type and training_args.output_dir


def test_quickstart_reads_the_shakespeare_recipe_from_the_package():
    # recipes/ installs as lmforge.recipes: the quickstart reads the file itself, there is no copy to keep in step.
    path = quickstart_recipe_path()
    assert path.samefile(RECIPES / "aksis" / "shakespeare.yaml")
    model_args, data_args, training_args = load_recipe(path, ["--max_steps", "5"], {"output_dir": "x"})
    assert (model_args.model_type, data_args.block_size, training_args.max_steps) == ("aksis", 128, 5)
    assert training_args.output_dir == "x"
    with pytest.warns(FutureWarning, match="quickstart_recipe_path"):
        from lmforge.cli.quickstart import QUICKSTART_RECIPE
    assert read_recipe(path) == QUICKSTART_RECIPE


def test_quickstart_trains_saves_and_writes_samples(tmp_path, capsys):
    """`lmforge quickstart` end to end, on the embedded corpus, with --max-steps 2 and a tiny model on top of the
    recipe: the model is saved and loads, and samples.json holds a seeded sample for each of the recipe's prompts,
    the draw of the sampling oracle from the saved model (top-k 50, temperature 0.8, the recipe's seed)."""
    from lmforge.cli.main import main
    from lmforge.models import AksisForCausalLM

    from .models.contract import oracle_sample

    out = tmp_path / "quickstart"
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "max_position_embeddings": 64}  # fmt: skip
    overrides = [item for key, value in tiny.items() for item in (f"--config_overrides.{key}", str(value))]
    overrides += ["--tokenizer_vocab_size", "300", "--block_size", "32", "--max_train_samples", "64"]
    overrides += ["--max_eval_samples", "4", "--per_device_train_batch_size", "2", "--sample_max_new_tokens", "5"]
    code = main(["quickstart", "--output-dir", str(out), "--max-steps", "2", *overrides, "--disable_tqdm", "true"])
    assert code == 0
    eval_results = json.loads((out / "eval_results.json").read_text())
    printed = capsys.readouterr().out
    assert f"Saved to {out} (validation loss {eval_results['eval_loss']:.3f}, " in printed
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert isinstance(model, AksisForCausalLM) and model.config.hidden_size == 32
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["max_steps"] == 2 and recipe["block_size"] == 32 and recipe["sample_prompts"] == QUICKSTART_PROMPTS
    assert recipe["muon"] is True  # the recipe trains its weight matrices with Muon
    assert recipe.get("bf16", False) == cpu_bf16_settings().get("bf16", False)  # bf16 autocast where the CPU has it
    samples = json.loads((out / "samples.json").read_text(encoding="utf-8"))
    assert list(samples) == QUICKSTART_PROMPTS
    # The recipe's bad_words: no run of blank lines in the samples, nor in any generate() of the saved model.
    banned = model.generation_config.bad_words_ids
    assert recipe["bad_words"] == ["\n\n\n"]
    assert banned == [tokenizer("\n\n\n", add_special_tokens=False)["input_ids"]]
    for prompt, text in samples.items():
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        drawn = oracle_sample(
            model.eval(), ids, 5, seed=42, temperature=0.8, top_k=50, eos_token_id=3, bad_words_ids=banned
        )
        assert text == tokenizer.decode(drawn, skip_special_tokens=True), prompt


QUICKSTART_PROMPTS = ["ROMEO:", "To be, or not to be"]


def test_bad_words_are_never_generated(trained_aksis_dir):
    """`bad_words` (recipe): each string's tokens go into the model's generation_config.bad_words_ids, which
    generate() honours. The first two tokens of the greedy continuation, banned as one string, are not written in a
    row; the first one still is."""
    from types import SimpleNamespace

    from lmforge.training.run import set_bad_words

    model = AutoModelForCausalLM.from_pretrained(trained_aksis_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained_aksis_dir)
    prompt = tokenizer("First Citizen:", return_tensors="pt")
    start = prompt["input_ids"].shape[1]
    free = model.generate(**prompt, max_new_tokens=6, do_sample=False)[0, start:].tolist()
    word = tokenizer.decode(free[:2])
    assert tokenizer(word, add_special_tokens=False)["input_ids"] == free[:2]
    setup = SimpleNamespace(model=model, tokenizer=tokenizer)
    set_bad_words(setup, [word])  # type: ignore[arg-type]
    assert model.generation_config.bad_words_ids == [free[:2]]
    written = model.generate(**prompt, max_new_tokens=6, do_sample=False)[0].tolist()
    assert written[start] == free[0] and written[start + 1] != free[1]
    assert all(list(pair) != free[:2] for pair in zip(written[start - 1 :], written[start:], strict=False))
    with pytest.raises(LmforgeError, match="gives no tokens"):
        set_bad_words(setup, ["", "x"])  # type: ignore[arg-type]
    with pytest.raises(LmforgeError, match="bad_words needs a tokenizer; object is not one"):
        set_bad_words(SimpleNamespace(model=model, tokenizer=object()), ["x"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("accelerator", "avx512_bf16", "amx", "expected"),
    [
        (False, True, False, {"bf16": True, "use_cpu": True}),
        (False, False, True, {"bf16": True, "use_cpu": True}),
        (False, False, False, {}),  # bf16 emulated: slower than fp32, so left off
        (True, True, True, {}),  # an accelerator: the recipe decides
    ],
)
def test_cpu_bf16_settings_follow_the_hardware(monkeypatch, tmp_path, accelerator, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: accelerator)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert cpu_bf16_settings() == expected
    if expected:  # transformers accepts the pair on a CPU
        *_, training_args = load_recipe(quickstart_recipe_path(), [], {"output_dir": str(tmp_path), **expected})
        assert training_args.bf16 and training_args.use_cpu


def test_validation_file_and_max_train_samples(tmp_path, tiny_text_file):
    """`validation_file`: the validation blocks come from that file, not from a split of the train file;
    `max_train_samples`: the first N training blocks only."""
    from lmforge.training.run import build_setup

    validation = tmp_path / "validation.txt"
    validation.write_text("Second Citizen:\nWould you proceed especially against Caius Marcius?\n" * 20)
    recipe = tiny_recipe(tiny_text_file, tmp_path / "out", validation_file=str(validation), max_train_samples=3)
    setup = build_setup(*parse_recipe(recipe))
    assert setup.train_dataset.num_rows == 3
    tokenizer = setup.tokenizer
    validation_text = "".join(tokenizer.decode(row) for row in setup.eval_dataset["input_ids"])
    assert "Second Citizen:" in validation_text and "First Citizen" not in validation_text
    train_text = "".join(tokenizer.decode(row) for row in setup.train_dataset["input_ids"])
    assert train_text and "Second Citizen" not in train_text
    full = build_setup(*parse_recipe(tiny_recipe(tiny_text_file, tmp_path / "out", validation_file=str(validation))))
    assert full.train_dataset.num_rows > 3  # the limit, not the file, made it 3
    assert full.train_dataset["input_ids"][:3] == setup.train_dataset["input_ids"]  # the first three


def test_pyproject_installs_the_recipes_as_package_data():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert setuptools["package-dir"]["lmforge.recipes"] == "recipes"
    assert "lmforge.recipes" in setuptools["packages"] and "lmforge.studies" in setuptools["packages"]
    assert "*/*.yaml" in setuptools["package-data"]["lmforge.recipes"]


def test_one_recipe_parser_for_every_entry_point(tmp_path, tiny_text_file):
    """`load_recipe`: file < command-line settings < --key value overrides; model_type from the saved model;
    one default output_dir rule."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"train_file": str(tiny_text_file), "max_steps": 3, "output_dir": "a"}))
    model_args, _, training_args = load_recipe(path, ["--output-dir", "c"], {"output_dir": "b"})
    assert (training_args.output_dir, training_args.max_steps) == ("c", 3)
    assert model_args.model_type == "aksis"  # the registry's first architecture, when nothing names one
    model_args, _, training_args = load_recipe(None, [], {"train_file": str(tiny_text_file), "model_type": None})
    assert training_args.output_dir == "outputs/aksis" and training_args.hub_strategy == "end"
    with pytest.raises(LmforgeError, match="fine-tuning starts from a saved model"):
        load_recipe(path, from_saved_model=True)


def test_model_type_and_output_dir_come_from_the_saved_model(tmp_path, trained_char_dir):
    recipe = {"model_name_or_path": str(trained_char_dir)}
    model_args, _, training_args = parse_recipe(recipe)
    assert model_args.model_type == "char_transformer"
    assert training_args.output_dir == "outputs/char_transformer-finetuned"
    with pytest.raises(LmforgeError, match="model_type aksis does not match the saved model's"):
        parse_recipe({**recipe, "model_type": "aksis"})


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"training_phase": "autoencoder"}, "unknown key 'training_phase' for model_type aksis .*question_answering"),
        ({"model_type": "ae_llm", "block_size": 64}, "unknown key 'block_size' for model_type ae_llm .*causal_lm"),
        ({"model_type": "aksis", "decoder_gguf_file": "x.gguf"}, "a key of summarization recipes: latent_reasoner"),
        ({"model_type": "latent_reasoner", "qa_input": "question"}, "unknown key 'qa_input'"),
    ],
)
def test_task_keys_are_refused_for_other_tasks(recipe, message):
    with pytest.raises(LmforgeError, match=message):
        parse_recipe(recipe)


def test_task_arguments_come_from_the_spec_task():
    from lmforge.training.qa import QuestionAnsweringModelArguments
    from lmforge.training.summarization import SummarizationModelArguments

    model_args, data_args, _ = parse_recipe({"model_type": "ae_llm", "training_phase": "autoencoder"})
    assert isinstance(model_args, QuestionAnsweringModelArguments) and model_args.training_phase == "autoencoder"
    assert data_args.qa_input == "question" and not hasattr(data_args, "block_size")
    model_args, data_args, _ = parse_recipe({"model_type": "latent_reasoner", "decoder_gguf_file": "x.gguf"})
    assert isinstance(model_args, SummarizationModelArguments) and data_args.max_source_length is None


def test_overrides_parse_yaml_scalars_and_nested_keys():
    recipe = apply_overrides(
        {"config_overrides": {"hidden_size": 8}},
        [
            "--learning-rate",
            "1e-3",
            "--config_overrides.num_hidden_layers",
            "3",
            "--bf16=false",
            "--do_eval",
            "--eval_strategy",
            "no",
        ],
    )
    assert recipe == {
        "config_overrides": {"hidden_size": 8, "num_hidden_layers": 3},
        "learning_rate": 1e-3,
        "bf16": False,
        "do_eval": True,
        "eval_strategy": "no",
    }


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"learnin_rate": 0.1}, "unknown key 'learnin_rate'"),
        ({"learning_rate": "fast"}, "'learning_rate' has the wrong type"),
        ({"max_steps": 1.5}, "'max_steps' has the wrong type"),
        ({"block_size": "big"}, "'block_size' has the wrong type"),
        ({"config_overrides": "[1, 2]"}, "config_overrides must be a mapping"),
    ],
)
def test_bad_recipes_fail_with_the_key_named(recipe, message):
    with pytest.raises(LmforgeError, match=message):
        parse_recipe(recipe)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(LmforgeError, match="recipe not found"):
        read_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(LmforgeError, match="not valid YAML"):
        read_recipe(bad)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"model_type": "nope"}, "unknown model_type 'nope'"),
        ({"config_overrides": {"hidden_size": 30, "num_attention_heads": 4}}, "divisible"),
        ({"config_overrides": {"hidden_dropout": -0.5}}, "config value does not fit"),
        ({"config_overrides": {"max_position_embeddings": 0}}, "config value does not fit"),
        ({"block_size": 100}, "longer than the model's context"),
        ({"early_stopping_patience": 2}, "load_best_model_at_end"),
    ],
)
def test_config_values_that_do_not_fit(tmp_path, tiny_text_file, extra, message):
    with pytest.raises(LmforgeError, match=message):
        run_training(*parse_recipe(tiny_recipe(tiny_text_file, tmp_path / "out", **extra)))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_training_run_lowers_loss_and_saves_a_loadable_model(trained_aksis_dir):
    state = json.loads((trained_aksis_dir / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0] - 0.5
    eval_results = json.loads((trained_aksis_dir / "eval_results.json").read_text())
    assert eval_results["eval_perplexity"] == pytest.approx(torch.tensor(eval_results["eval_loss"]).exp().item())
    assert (trained_aksis_dir / "model.safetensors").is_file()
    # No pickle anywhere: the training arguments are JSON, next to the model and in every checkpoint.
    assert not list(trained_aksis_dir.rglob("*.bin"))
    for folder in [trained_aksis_dir, *trained_aksis_dir.glob("checkpoint-*")]:
        args = json.loads((folder / "training_args.json").read_text())
        assert args["max_steps"] == 30 and args["hub_token"] in (None, "<HUB_TOKEN>")
    assert "step 30/30" in (trained_aksis_dir / "train.log").read_text()
    recipe = yaml.safe_load((trained_aksis_dir / "recipe.yaml").read_text())
    assert recipe["model_type"] == "aksis" and recipe["max_steps"] == 30
    model = AutoModelForCausalLM.from_pretrained(trained_aksis_dir)
    tokenizer = AutoTokenizer.from_pretrained(trained_aksis_dir)
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 64


def test_early_stopping_and_best_model(tmp_path, tiny_text_file, monkeypatch):
    import transformers.trainer

    warnings: list[str] = []
    monkeypatch.setattr(
        transformers.trainer.logger, "warning", lambda message, *args, **kwargs: warnings.append(message)
    )
    recipe = tiny_recipe(
        tiny_text_file,
        tmp_path / "out",
        max_steps=40,
        eval_steps=2,
        save_steps=2,
        learning_rate=0.5,  # diverges, so evaluation stops improving
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        early_stopping_patience=1,
    )
    run_training(*parse_recipe(recipe))
    out = tmp_path / "out"
    state = json.loads((out / "trainer_state.json").read_text())
    evals = {entry["step"]: entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry}
    best_step = min(evals, key=evals.__getitem__)
    # the best checkpoint is the one of the lowest validation loss, and training stopped at the first evaluation
    # after it that did not improve (patience 1)
    assert state["best_model_checkpoint"] == str(out / f"checkpoint-{best_step}")
    assert state["best_metric"] == pytest.approx(evals[best_step])
    assert state["global_step"] == best_step + 2 < 40
    # load_best_model_at_end: the saved model is the best checkpoint's, not the last step's
    final = AutoModelForCausalLM.from_pretrained(out).state_dict()
    best = AutoModelForCausalLM.from_pretrained(out / f"checkpoint-{best_step}").state_dict()
    last = AutoModelForCausalLM.from_pretrained(out / f"checkpoint-{state['global_step']}").state_dict()
    assert all(torch.equal(final[name], best[name]) for name in final)
    assert not all(torch.equal(final[name], last[name]) for name in final)
    # loading the best checkpoint, whose tied head is not saved, tied it again without a "missing keys" warning
    assert not [message for message in warnings if "missing keys" in message], warnings


# With muon: true, the checkpoint holds both optimizers' states (Muon's and AdamW's).
@pytest.mark.parametrize("optimizer", [{}, {"muon": True, "optim": "adamw_torch_fused"}], ids=["adamw", "muon"])
def test_resume_from_last_checkpoint_matches_uninterrupted_run(tmp_path, tiny_text_file, optimizer):
    import shutil

    full = tmp_path / "full"
    run_training(*parse_recipe(tiny_recipe(tiny_text_file, full, **optimizer)))
    # A run that stopped right after checkpoint-6 (its folder holds only that checkpoint), then resumed.
    crashed = tmp_path / "crashed"
    shutil.copytree(full / "checkpoint-6", crashed / "checkpoint-6")
    (crashed / "checkpoint-12").mkdir()  # a save cut short: no trainer_state.json, must be skipped
    (crashed / "checkpoint-12" / "model.safetensors").write_bytes(b"partial")
    run_training(*parse_recipe(tiny_recipe(tiny_text_file, crashed, resume_from_checkpoint="auto", **optimizer)))
    assert not list(crashed.rglob("*.bin")) and (crashed / "checkpoint-12" / "training_args.json").is_file()
    a = AutoModelForCausalLM.from_pretrained(full).state_dict()
    b = AutoModelForCausalLM.from_pretrained(crashed).state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    log_full = json.loads((full / "trainer_state.json").read_text())["log_history"]
    log_resumed = json.loads((crashed / "trainer_state.json").read_text())["log_history"]
    last_loss = [e["loss"] for e in log_full if "loss" in e][-1]
    assert [e["loss"] for e in log_resumed if "loss" in e][-1] == pytest.approx(last_loss, rel=1e-5)


def test_incomplete_checkpoints_are_never_resumed_from(tmp_path):
    from lmforge.training.run import is_complete_checkpoint, latest_complete_checkpoint

    good, torn = tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"
    for folder in (good, torn):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
    (good / "trainer_state.json").write_text("{}", encoding="utf-8")
    (torn / "trainer_state.json").write_text('{"global_st', encoding="utf-8")
    assert is_complete_checkpoint(good) and not is_complete_checkpoint(torn)
    assert latest_complete_checkpoint(tmp_path) == good
    with pytest.raises(LmforgeError, match="incomplete"):
        run_training(*parse_recipe({"output_dir": str(tmp_path), "resume_from_checkpoint": str(torn)}))


def test_accelerate_launch_writes_a_checkpoint_that_loads(tmp_path, tiny_text_file):
    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(
        yaml.safe_dump(tiny_recipe(tiny_text_file, tmp_path / "run", max_steps=6)), encoding="utf-8"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(RECIPES / "accelerate_configs" / "cpu.yaml"),
            str(RECIPES / "train.py"),
            str(recipe_path),
            "--max_steps",
            "6",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = tmp_path / "run" / "checkpoint-6"
    assert (checkpoint / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    assert model.config.model_type == "aksis"


def test_train_script_reports_bad_recipe_in_one_line(tmp_path):
    recipe_path = tmp_path / "bad.yaml"
    recipe_path.write_text("model_type: aksis\nwarmup: 3\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(RECIPES / "train.py"), str(recipe_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: recipe {recipe_path}: unknown key 'warmup' (did you mean warmup_steps?)"
    ]


def test_accelerate_configs_are_valid():
    from accelerate.commands.config.config_args import load_config_from_file

    for path in [*sorted((RECIPES / "accelerate_configs").glob("*.yaml")), REPO_ROOT / "accelerate_config.yaml"]:
        config = load_config_from_file(str(path))
        assert config.compute_environment.value == "LOCAL_MACHINE", path
    root = load_config_from_file(str(REPO_ROOT / "accelerate_config.yaml"))
    assert root.mixed_precision == "fp16"


def test_char_training_run_lowers_loss_and_saves_a_loadable_model(trained_char_dir):
    state = json.loads((trained_char_dir / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0] - 0.5
    assert (trained_char_dir / "model.safetensors").is_file() and (trained_char_dir / "vocab.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(trained_char_dir)
    tokenizer = AutoTokenizer.from_pretrained(trained_char_dir)
    assert (
        type(model).__name__ == "CharTransformerForCausalLM" and type(tokenizer).__name__ == "CharTransformerTokenizer"
    )
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 64
    assert model.config.vocab_size == len(tokenizer)
    eval_results = json.loads((trained_char_dir / "eval_results.json").read_text())
    assert eval_results["eval_loss"] < 3.0  # well below the uniform guess, ln(len(vocab)) ~ 3.6


def test_char_vocabulary_comes_from_the_train_split(tmp_path):
    from lmforge.training.run import build_setup

    from .conftest import SAMPLE_TEXT, TINY_CHAR

    # The euro sign is only in the last 10% of the file, the validation part.
    path = tmp_path / "text.txt"
    path.write_text(SAMPLE_TEXT * 29 + "Five €uro.\n" + SAMPLE_TEXT, encoding="utf-8")
    recipe = {
        "model_type": "char_transformer",
        "config_overrides": dict(TINY_CHAR),
        "train_file": str(path),
        "block_size": 16,
        "output_dir": str(tmp_path / "out"),
        "report_to": "none",
        "use_cpu": True,
    }
    setup = build_setup(*parse_recipe(recipe))
    tokenizer = setup.tokenizer
    assert "€" not in tokenizer.get_vocab() and set(SAMPLE_TEXT) <= set(tokenizer.get_vocab())
    assert setup.model.config.vocab_size == len(tokenizer)
    validation_ids = {i for row in setup.eval_dataset["input_ids"] for i in row}
    train_ids = {i for row in setup.train_dataset["input_ids"] for i in row}
    assert tokenizer.unk_token_id in validation_ids and tokenizer.unk_token_id not in train_ids
    # Full blocks carry their labels: the collator only stacks them (no padding, no attention mask).
    batch = setup.data_collator([setup.train_dataset[i] for i in range(3)])
    assert set(batch) == {"input_ids", "labels"} and batch["input_ids"].shape == (3, 16)
    assert torch.equal(batch["labels"], batch["input_ids"])


def test_random_offsets_train_on_windows_at_every_start(tmp_path, tiny_text_file):
    """`random_offsets`: the train rows are the windows at every token of the stream the fixed blocks were cut from
    (validation keeps the blocks), the Trainer's sampler draws starts that fixed blocks never have, and it trains."""
    from lmforge.data import TokenWindows
    from lmforge.training.run import build_setup, build_trainer

    fixed = build_setup(*parse_recipe(tiny_recipe(tiny_text_file, tmp_path / "fixed")))
    model_args, data_args, training_args = parse_recipe(
        tiny_recipe(tiny_text_file, tmp_path / "windows", random_offsets=True, max_steps=4, eval_strategy="no")
    )
    setup = build_setup(model_args, data_args, training_args)
    windows = setup.train_dataset
    assert isinstance(windows, TokenWindows)
    stream = [token for row in fixed.train_dataset["input_ids"] for token in row]
    assert len(windows) == len(stream) - 32 + 1
    assert windows[5]["input_ids"].tolist() == stream[5:37] == windows[5]["labels"].tolist()
    assert setup.eval_dataset["input_ids"] == fixed.eval_dataset["input_ids"]

    trainer = build_trainer(setup, training_args)
    starts = {
        int(index)
        for batch in trainer.get_train_dataloader().batch_sampler
        for index in batch  # type: ignore[union-attr]
    }
    assert any(start % 32 for start in starts)  # not only the fixed blocks' starts
    result = trainer.train()
    assert result.global_step == 4 and math.isfinite(result.training_loss)


def test_random_offsets_need_a_stream_of_one_block():
    from lmforge.data import TokenWindows

    with pytest.raises(LmforgeError, match="block_size=8"):
        TokenWindows(torch.arange(5), 8)
