"""Bad input, each one through the `lmforge` command line: a one-line `error:` naming what to fix, a non-zero exit,
no traceback and no half-written model. Most cases call `lmforge.cli.main.main` in-process (fast); two run the
installed command in a subprocess. docs/bad_inputs.md lists the same cases with the exact error each gets.

Also the safety rules: weights load from safetensors only (no pickle loading in lmforge, a folder holding only
`pytorch_model.bin` is refused) and remote code runs only when the caller asks for it."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lmforge.cli.main import main

from .conftest import REPO_ROOT, TINY_AKSIS
from .saved_models import golden_copy, load_auto, oracle_decode

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SRC = REPO_ROOT / "src" / "lmforge"

# (case id, argv with {placeholders} filled by the `inputs` fixture, words the one error line must contain)
CASES = [
    ("missing corpus file", ["train", "{recipe}", "--input-file", "{missing}"], "input file not found"),
    ("empty corpus", ["train", "{recipe}", "--input-file", "{empty}"], "is empty"),
    ("non-UTF-8 text", ["train", "{recipe}", "--input-file", "{latin1}"], "not UTF-8"),
    ("recipe with an unknown key", ["train", "{recipe_unknown_key}"], "unknown key 'learnin_rate'"),
    ("recipe value of the wrong type", ["train", "{recipe_wrong_type}"], "'learning_rate' has the wrong type"),
    (
        "width not divisible by heads",
        ["train", "{recipe}", "--config_overrides.hidden_size", "30"],
        "divisible",
    ),
    (
        "negative dropout",
        ["train", "{recipe}", "--config_overrides.hidden_dropout", "-0.5"],
        "hidden_dropout: ValueError",
    ),
    (
        "context <= 0",
        ["train", "{recipe}", "--config_overrides.max_position_embeddings", "0"],
        "max_position_embeddings: ValueError",
    ),
    ("unknown model type in a recipe", ["train", "{recipe}", "--model_type", "nope"], "unknown model_type 'nope'"),
    (
        "unknown model type in a model folder",
        ["generate", "--model-path", "{unknown_type_model}", "--prompt", "x"],
        "unknown model_type 'nope'",
    ),
    ("model folder without .safetensors", ["generate", "--model-path", "{no_weights}"], "no .safetensors weights"),
    ("corrupt .safetensors", ["generate", "--model-path", "{corrupt}"], "could not load the model"),
    ("tokenizer files missing", ["generate", "--model-path", "{no_tokenizer}"], "has no tokenizer files"),
    (
        "perplexity of an encoder-decoder",
        ["evaluate", "--model-path", "{ae_llm_model}", "--input-file", "{corpus}"],
        "a ae_llm model is an encoder-decoder",
    ),
    (
        "training from a folder with only pytorch_model.bin",
        ["train", "{recipe}", "--model_name_or_path", "{pickled}"],
        "no file named model.safetensors",
    ),
    (
        "Hub dataset id, offline",
        ["train", "{recipe_no_data}", "--dataset_name", "no-such-user/no-such-dataset"],
        "no-such-user/no-such-dataset",
    ),
    (
        "Hub model id, offline",
        ["train", "{recipe}", "--model_name_or_path", "no-such-user/no-such-model"],
        "no-such-user/no-such-model",
    ),
    (
        "local base model not trained yet",
        ["train", "{recipe}", "--model_name_or_path", "outputs/not-trained-yet"],
        "'outputs/not-trained-yet' is not a folder here, and the Hub is offline",
    ),
    ("base model folder that is no model", ["train", "{recipe}", "--model_name_or_path", "{empty_dir}"], "no config"),
    ("typo in config_overrides", ["train", "{recipe}", "--config_overrides.hidden_szie", "64"], "'hidden_szie'"),
    ("config_overrides not a mapping", ["train", "{recipe_overrides_list}"], "config_overrides must be a mapping"),
    ("negative learning rate", ["train", "{recipe}", "--learning_rate", "-1"], "learning_rate must be > 0, got -1"),
    ("batch of 0", ["train", "{recipe}", "--per_device_train_batch_size", "0"], "per_device_train_batch_size must"),
    ("negative seed", ["train", "{recipe}", "--seed", "-5"], "seed must be between 0 and 2**32 - 1"),
    ("empty recipe", ["train", "{empty_recipe}"], "is empty; give at least model_type"),
    ("non-UTF-8 recipe", ["train", "{latin1_recipe}"], "is not UTF-8 text"),
    ("peft section of the wrong kind", ["train", "{recipe}", "--peft", "[8, 16]"], "peft"),
    ("output dir that is a file", ["train", "{recipe}", "--output-dir", "{corpus}"], "is a file; give a folder"),
    (
        "an earlier run in the output dir",
        ["train", "{recipe}", "--output-dir", "{earlier_run}"],
        "already holds a run",
    ),
    ("negative temperature", ["generate", "--model-path", "{model}", "--temperature", "-1"], "temperature must be 0"),
    ("no beams", ["generate", "--model-path", "{model}", "--num-beams", "0"], "number of beams must be 1 or more"),
    ("top-p above 1", ["generate", "--model-path", "{model}", "--top-p", "2"], "top-p must be in (0, 1]"),
    (
        "perplexity window beyond the context",
        ["evaluate", "--model-path", "{model}", "--input-file", "{corpus}", "--max-length", "1000"],
        "max_length must be between 2 and the model's context",
    ),
    (
        "LatentReasoner folder without its encoder tokenizer",
        ["generate", "--model-path", "{no_encoder_tokenizer}", "--prompt", "x"],
        "has no encoder_tokenizer/ folder",
    ),
    (
        "config.json that no longer matches the weights",
        ["generate", "--model-path", "{config_mismatch}", "--prompt", "x"],
        "config.json does not match the weights: model.",
    ),
    (
        "chat tuning of an encoder-decoder",
        ["sft", "{sft_recipe}", "--model-path", "{ae_llm_model}", "--output-dir", "{out}"],
        "holds an encoder-decoder (ae_llm); this needs a causal model",
    ),
    (
        "an encoder-decoder as the sampling study's reference",
        ["sampling-study", "--model-path", "{model}", "--reference-model", "{ae_llm_model}", "--output-dir", "{out}"],
        "holds an encoder-decoder (ae_llm)",
    ),
    (
        "a typo in a forgetting study's LoRA section",
        ["forgetting", "{study_peft_typo}"],
        "methods.lora.peft: unknown key",
    ),
    ("empty prompt to an encoder-decoder", ["generate", "--model-path", "{ae_llm_model}", "--prompt", " "], "empty"),
    (
        "DPO on an empty preference file",
        ["dpo", "{dpo_recipe}", "--model-path", "{model}", "--preference-file", "{empty}"],
        "holds no judgements yet",
    ),
]


def tiny_recipe(corpus: Path | None, output_dir: Path, **extra: object) -> dict[str, object]:
    recipe: dict[str, object] = {
        "model_type": "aksis",
        "tokenizer_vocab_size": 200,
        "config_overrides": dict(TINY_AKSIS),
        "block_size": 32,
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    if corpus is not None:
        recipe["train_file"] = str(corpus)
    recipe.update(extra)
    return recipe


def broken_copy(trained: Path, target: Path) -> Path:
    shutil.copytree(trained, target)
    return target


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, trained_aksis_dir: Path, tiny_text_file: Path) -> dict[str, str]:
    """Every bad input of CASES, built once: files, recipes and broken copies of a trained model folder."""
    root = tmp_path_factory.mktemp("bad_inputs")
    out = root / "out"
    files = {"out": out, "missing": root / "missing.txt", "empty": root / "empty.txt", "latin1": root / "latin1.txt"}
    files["empty"].write_text("", encoding="utf-8")
    files["latin1"].write_bytes("Le café est chaud.\n".encode("latin-1") * 20)
    recipes = {
        "recipe": tiny_recipe(tiny_text_file, out),
        "recipe_unknown_key": tiny_recipe(tiny_text_file, out, learnin_rate=0.1),
        "recipe_wrong_type": tiny_recipe(tiny_text_file, out, learning_rate="fast"),
        "recipe_no_data": tiny_recipe(None, out),
        "recipe_overrides_list": tiny_recipe(tiny_text_file, out, config_overrides=[1, 2]),
    }
    for name, recipe in recipes.items():
        files[name] = root / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump(recipe), encoding="utf-8")

    unknown = broken_copy(trained_aksis_dir, root / "unknown_type_model")
    config = json.loads((unknown / "config.json").read_text(encoding="utf-8"))
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "nope"}), encoding="utf-8")
    no_weights = broken_copy(trained_aksis_dir, root / "no_weights")
    (no_weights / "model.safetensors").unlink()
    corrupt = broken_copy(trained_aksis_dir, root / "corrupt")
    (corrupt / "model.safetensors").write_bytes((corrupt / "model.safetensors").read_bytes()[:200])
    no_tokenizer = broken_copy(trained_aksis_dir, root / "no_tokenizer")
    for path in no_tokenizer.glob("tokenizer*"):
        path.unlink()
    pickled = broken_copy(trained_aksis_dir, root / "pickled")
    state = load_file(pickled / "model.safetensors")
    (pickled / "model.safetensors").unlink()
    torch.save(state, pickled / "pytorch_model.bin")  # a real pickled checkpoint, as older tools write
    files.update(unknown_type_model=unknown, no_weights=no_weights, corrupt=corrupt, no_tokenizer=no_tokenizer)
    files.update(ae_llm_model=golden_copy("ae_llm", root / "ae_llm_model"), corpus=tiny_text_file)
    files["pickled"] = pickled
    mismatch = broken_copy(trained_aksis_dir, root / "config_mismatch")
    config = json.loads((mismatch / "config.json").read_text(encoding="utf-8"))
    (mismatch / "config.json").write_text(json.dumps({**config, "hidden_size": 2 * config["hidden_size"]}))
    files.update(config_mismatch=mismatch, sft_recipe=REPO_ROOT / "recipes" / "aksis" / "chat_sft.yaml")
    files["study_peft_typo"] = root / "study_peft_typo.yaml"
    study = {
        "base": tiny_recipe(tiny_text_file, out),
        "methods": {"lora": {"peft": {"rank": 8}}},
        "pairings": [{"name": "b", "train_file": str(tiny_text_file)}],
    }
    files["study_peft_typo"].write_text(yaml.safe_dump(study), encoding="utf-8")
    files["no_encoder_tokenizer"] = golden_copy("latent_reasoner", root / "no_encoder_tokenizer")
    shutil.rmtree(files["no_encoder_tokenizer"] / "encoder_tokenizer")
    files["empty_recipe"] = root / "empty_recipe.yaml"
    files["empty_recipe"].write_text("", encoding="utf-8")
    files["latin1_recipe"] = root / "latin1_recipe.yaml"
    files["latin1_recipe"].write_bytes("# café\nmodel_type: aksis\n".encode("latin-1"))
    files["empty_dir"] = root / "empty_dir"
    files["empty_dir"].mkdir()
    files["earlier_run"] = root / "earlier_run"
    (files["earlier_run"] / "checkpoint-2").mkdir(parents=True)
    files.update(model=trained_aksis_dir, dpo_recipe=REPO_ROOT / "recipes" / "aksis" / "dpo.yaml")
    return {name: str(path) for name, path in files.items()}


def fill(argv: list[str], inputs: dict[str, str]) -> list[str]:
    return [arg.format(**inputs) for arg in argv]


def the_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    return errors[0]


@pytest.mark.parametrize(("case", "argv", "words"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_nonzero_and_writes_no_model(case, argv, words, inputs, capsys) -> None:
    assert main(fill(argv, inputs)) == 1
    line = the_error_line(capsys.readouterr().err)
    assert words in line, line
    assert not (Path(inputs["out"]) / "model.safetensors").exists()


def test_installed_command_reports_an_offline_hub_id_in_one_line(inputs) -> None:
    """The same errors through the real entry point, in a fresh process with the Hub offline."""
    for argv, words in [
        (["train", "{recipe_no_data}", "--dataset_name", "no-such-user/no-such-dataset"], "no-such-dataset"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "lmforge", *fill(argv, inputs)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert result.returncode == 1, result.stderr[-2000:]
        assert words in the_error_line(result.stderr)
    assert not (Path(inputs["out"]) / "model.safetensors").exists()


def test_prompt_longer_than_the_context_keeps_its_end_with_a_warning(tiny_model_dirs, capsys, caplog) -> None:
    folder = tiny_model_dirs["aksis"]  # its greedy text depends on the prompt (a trained tiny one repeats a letter)
    prompt = "Before we proceed any further, hear me. " + "First Citizen: speak, speak. " * 40 + "All: Resolved."
    logger = logging.getLogger("lmforge.inference")  # its parent may not propagate (set up by a training run)
    logger.addHandler(caplog.handler)
    try:
        code = main(["generate", "--model-path", str(folder), "--prompt", prompt, "--num-tokens", "8"])
    finally:
        logger.removeHandler(caplog.handler)
    assert code == 0
    assert any("Prompt longer than 56 tokens: only its last 56 tokens are used" in r.message for r in caplog.records)
    out = capsys.readouterr().out
    assert out.startswith(prompt) and len(out.rstrip("\n")) > len(prompt)
    # the new text is the oracle's greedy continuation of the prompt's last 56 tokens (not of its first 56)
    model, tokenizer, _ = load_auto("aksis", folder)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    kept_end = oracle_decode(model, tokenizer, ids[-56:], 8, strip=False)
    assert out == prompt + kept_end + "\n" and kept_end != oracle_decode(model, tokenizer, ids[:56], 8, strip=False)


# --- Safety: safetensors only, remote code only on request ---

# Pickle loading, as code tokens (so a comment or docstring that names them does not count).
PICKLE_LOADING = [
    r"\btorch \. load\b",
    r"\bpickle \. loads?\b",
    r"\bimport pickle\b",
    r"\bfrom pickle\b",
    r"\bjoblib\b",
    r"\bdill\b",
    r"\buse_safetensors = False\b",
    r"\bweights_only = False\b",
]


def code_tokens(path: Path) -> list[tuple[int, str]]:
    """(line, code) of each logical line of a Python file, strings and comments left out, tokens space-separated."""
    lines: dict[int, list[str]] = {}
    skip = {tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    with path.open("rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type not in skip and token.type != tokenize.ENCODING:
                lines.setdefault(token.start[0], []).append(token.string)
    return [(number, " ".join(words)) for number, words in sorted(lines.items())]


def find(patterns: list[str], root: Path) -> list[str]:
    hits = []
    for path in sorted(root.rglob("*.py")):
        for number, code in code_tokens(path):
            hits += [f"{path.relative_to(root)}:{number}: {code}" for p in patterns if re.search(p, code)]
    return hits


def test_the_source_scan_finds_what_it_looks_for(tmp_path) -> None:
    """The scan below would catch each pattern (and ignores it in strings and comments)."""
    (tmp_path / "bad.py").write_text(
        "import torch\nimport pickle\nfrom joblib import load\nstate = torch.load('w.bin', weights_only = False)\n"
        "m = M.from_pretrained(p, use_safetensors=False, trust_remote_code=True)\n",
        encoding="utf-8",
    )
    (tmp_path / "fine.py").write_text('"""torch.load(x) is not used"""  # nor pickle.load\nx = 1\n', encoding="utf-8")
    hits = find(PICKLE_LOADING, tmp_path)
    assert len(hits) == 5 and all(hit.startswith("bad.py") for hit in hits), hits
    assert find([r"\btrust_remote_code = True\b"], tmp_path) == [
        "bad.py:5: m = M . from_pretrained ( p , use_safetensors = False , trust_remote_code = True )"
    ]


def test_lmforge_never_loads_pickles() -> None:
    assert find(PICKLE_LOADING, SRC) == []  # nothing allowed: weights are read from safetensors only


def test_lmforge_never_trusts_remote_code_by_itself() -> None:
    """`trust_remote_code=True` is never written in lmforge's code: it is always the caller's explicit argument
    (e.g. the perplexity metric's `trust_remote_code: bool = False`). lmforge's own models are registered with the
    Auto classes when lmforge is imported, so loading them needs no remote code."""
    assert find([r"\btrust_remote_code = True\b"], SRC) == []
    passed_on = find([r"\btrust_remote_code = trust_remote_code\b"], SRC)
    for hit in passed_on:  # each one forwards a parameter that defaults to False
        text = (SRC / hit.split(":")[0]).read_text(encoding="utf-8")
        assert "trust_remote_code: bool = False" in text, hit


def test_a_folder_with_only_a_pickled_state_dict_is_refused(inputs) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmforge", "generate", "--model-path", inputs["pickled"], "--prompt", "x"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 1
    line = the_error_line(result.stderr)
    assert "no .safetensors weights" in line and "safetensors only" in line, line
    assert result.stdout == ""


def test_temperature_zero_is_greedy_decoding_as_in_the_server() -> None:
    from lmforge.inference import GenerationSettings

    options = GenerationSettings(do_sample=True, temperature=0.0, top_k=5, top_p=0.5).generation_options()
    assert options == {"max_new_tokens": 100, "do_sample": False}


def test_ports_out_of_range_are_parser_errors(capsys) -> None:
    for command in ("serve", "demo"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--model-path", "x", "--port", "99999"])
        assert stop.value.code == 2
        assert "a port is between 0 and 65535, got 99999" in capsys.readouterr().err


def test_overwrite_output_dir_starts_over_in_a_folder_with_an_earlier_run(inputs, tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    shutil.copytree(inputs["earlier_run"], earlier)
    assert main(["train", inputs["recipe"], "--output-dir", str(earlier), "--overwrite_output_dir", "true"]) == 0
    assert (earlier / "model.safetensors").is_file()
