"""The `lmforge` command line, run as a user runs it: in a subprocess, checking exit codes and output; and every
command that reads a saved model (generate, chat, evaluate) on a tiny saved model of each architecture, in process.
(`lmforge serve` and `lmforge demo` on each architecture: tests/test_serve.py and tests/test_demo.py.)"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.cli.main import main
from lmforge.inference import GenerationSettings, TextGenerator
from lmforge.models import SPECS

from .conftest import TINY_AKSIS, TINY_CHAR
from .saved_models import PROMPTS, reference_text

ARCHITECTURES = ["aksis", "char_transformer", "ae_llm", "latent_reasoner"]

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def lmforge(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmforge", *args], input=stdin, capture_output=True, text=True, env=ENV, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert words in errors[0], errors[0]


def test_help_everywhere():
    result = lmforge("--help")
    assert result.returncode == 0
    for command in ("quickstart", "train", "generate", "chat", "evaluate"):
        assert command in result.stdout
        sub = lmforge(command, "--help")
        assert sub.returncode == 0 and "usage: lmforge " + command in sub.stdout


def test_train_from_one_text_file_then_generate(tmp_path, tiny_text_file):
    out = tmp_path / "model"
    overrides = [f"--config_overrides.{k}={v}" for k, v in TINY_AKSIS.items()]
    result = lmforge(
        "train",
        "--model",
        "aksis",
        "--input-file",
        str(tiny_text_file),
        "--output-dir",
        str(out),
        "--max_steps",
        "5",
        "--block_size",
        "32",
        "--tokenizer_vocab_size",
        "200",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        *overrides,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.safetensors").is_file()
    assert "eval_perplexity" in result.stdout


def test_generate_greedy_and_sampling(trained_aksis_dir):
    greedy = lmforge(
        "generate", "--model-path", str(trained_aksis_dir), "--prompt", "First Citizen:", "--num-tokens", "12"
    )
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    assert greedy.stdout.startswith("First Citizen:") and len(greedy.stdout) > len("First Citizen:")
    again = lmforge(
        "generate", "--model-path", str(trained_aksis_dir), "--prompt", "First Citizen:", "--num-tokens", "12"
    )
    assert again.stdout == greedy.stdout
    args = ["--model-path", str(trained_aksis_dir), "--prompt", "All:", "--max-new-tokens", "12", "--seed", "1"]
    sampled = [lmforge("generate", *args, "--do-sample", "--top-k", "20", "--temperature", "0.9") for _ in range(2)]
    assert sampled[0].returncode == 0 and sampled[0].stdout == sampled[1].stdout
    beams = lmforge("generate", *args, "--num-beams", "3")
    assert beams.returncode == 0, beams.stderr[-2000:]
    top_p = lmforge("generate", *args, "--top-p", "0.8")
    assert top_p.returncode == 0, top_p.stderr[-2000:]


def test_chat_reads_stdin_and_keeps_history(trained_aksis_dir):
    result = lmforge(
        "chat",
        "--model-path",
        str(trained_aksis_dir),
        "--max-new-tokens",
        "8",
        stdin="hello there\nhow are you\n/reset\nagain\n/exit\nnever read\n",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model> ") == 3
    assert "(conversation cleared)" in result.stdout


def test_evaluate_prints_perplexity(trained_aksis_dir, tiny_text_file):
    result = lmforge("evaluate", "--model-path", str(trained_aksis_dir), "--input-file", str(tiny_text_file))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("perplexity ")


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--model", "aksis", "--input-file", "/no/such/file.txt"], "input file not found"),
        (["train", "recipes/none.yaml"], "recipe not found"),
        (["generate", "--model-path", "/no/such/model", "--prompt", "x"], "model folder not found"),
        (["generate", "--model-path", "{model}", "--num-tokens", "-3"], "must be a positive number"),
        (["generate", "--model-path", "{model}", "--num-tokens", "100"], "must be below the model's context"),
        (["train", "--model", "aksis", "--input-file", "{empty}"], "is empty"),
        (["train", "--model", "nope", "--input-file", "{text}"], "unknown model_type 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args, words, tmp_path, trained_aksis_dir, tiny_text_file):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    values = {"model": str(trained_aksis_dir), "empty": str(empty), "text": str(tiny_text_file)}
    result = (
        lmforge(*[a.format(**values) for a in args], "--output-dir", str(tmp_path / "o"))
        if args[0] == "train"
        else lmforge(*[a.format(**values) for a in args])
    )
    assert_one_line_error(result, words)
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_model_folder_without_weights_or_tokenizer(tmp_path, trained_aksis_dir):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_aksis_dir, broken)
    (broken / "model.safetensors").unlink()
    assert_one_line_error(lmforge("generate", "--model-path", str(broken)), "no .safetensors weights")
    shutil.copy(trained_aksis_dir / "model.safetensors", broken / "model.safetensors")
    (broken / "model.safetensors").write_bytes(b"corrupt" * 10)
    assert_one_line_error(lmforge("generate", "--model-path", str(broken)), "could not load the model")
    shutil.copy(trained_aksis_dir / "model.safetensors", broken / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    assert_one_line_error(lmforge("generate", "--model-path", str(broken)), "tokenizer")


def test_main_in_process_for_parser_errors(capsys):
    from lmforge.cli import main

    assert main([]) == 2
    with pytest.raises(SystemExit):
        main(["generate", "--model-path", "x", "--bogus"])
    assert Path


# --- The same commands on a character-level model (CharTransformer) ---


def test_char_model_trains_from_one_text_file(tmp_path, tiny_text_file):
    out = tmp_path / "char"
    overrides = [f"--config_overrides.{k}={v}" for k, v in TINY_CHAR.items()]
    result = lmforge(
        "train",
        "--model",
        "char_transformer",
        "--input-file",
        str(tiny_text_file),
        "--output-dir",
        str(out),
        "--max_steps",
        "5",
        "--block_size",
        "32",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        *overrides,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "eval_perplexity" in result.stdout
    # One token per character of the training text, after the 4 special tokens; the model is sized to it.
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert set(vocab) == {"<pad>", "<unk>", "<s>", "</s>", *tiny_text_file.read_text(encoding="utf-8")}
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["vocab_size"] == len(vocab)
    assert (out / "model.safetensors").is_file()


def test_char_model_generates_with_every_strategy(trained_char_dir, tiny_text_file):
    characters = set(tiny_text_file.read_text(encoding="utf-8"))
    base = ["generate", "--model-path", str(trained_char_dir), "--num-tokens", "12"]
    greedy = lmforge(*base, "--prompt", "First Citizen:")
    assert greedy.returncode == 0, greedy.stderr[-2000:]
    assert greedy.stdout.startswith("First Citizen:")
    new = greedy.stdout[len("First Citizen:") : -1]  # print() adds the final newline
    assert 0 < len(new) <= 12 and set(new) <= characters  # characters joined as they are: no added spaces
    # No prompt: generation starts from the end-of-text token that separates the training documents.
    sampled = lmforge(*base, "--seed", "3", "--do-sample", "--temperature", "0.8", "--top-k", "10", "--top-p", "0.9")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert 0 < len(sampled.stdout.rstrip("\n")) <= 12 and set(sampled.stdout) <= characters
    beams = lmforge(*base, "--prompt", "All:", "--num-beams", "3")
    assert beams.returncode == 0 and beams.stdout.startswith("All:"), beams.stderr[-2000:]


def test_char_model_chat_reads_stdin(trained_char_dir):
    # A character tokenizer has no chat template: the plain "role: text" layout is used.
    result = lmforge(
        "chat",
        "--model-path",
        str(trained_char_dir),
        "--max-new-tokens",
        "8",
        stdin="hello there\n\n/reset\nhow are you\n/exit\nnever read\n",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model> ") == 2
    assert "(conversation cleared)" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--model", "char_transformer", "--input-file", "/no/such/file.txt"], "input file not found"),
        (["train", "--model", "char_transformer", "--input-file", "{empty}"], "is empty"),
        (["generate", "--model-path", "{no_vocab}", "--prompt", "x"], "could not load the tokenizer"),
        (["generate", "--model-path", "{model}", "--num-tokens", "-3"], "must be a positive number"),
    ],
)
def test_char_model_bad_input_is_one_line_and_nonzero(args, words, tmp_path, trained_char_dir):
    import shutil

    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    no_vocab = tmp_path / "no_vocab"
    shutil.copytree(trained_char_dir, no_vocab)
    (no_vocab / "vocab.json").unlink()
    values = {"model": str(trained_char_dir), "empty": str(empty), "no_vocab": str(no_vocab)}
    extra = ["--output-dir", str(tmp_path / "o")] if args[0] == "train" else []
    assert_one_line_error(lmforge(*[a.format(**values) for a in args], *extra), words)
    assert not (tmp_path / "o").exists()


# --- generate, chat and evaluate on a tiny saved model of each architecture (in process) ---


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_generate_on_each_architecture(model_type: str, tiny_model_dirs: dict, capsys) -> None:
    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type]
    assert main(["generate", "--model-path", str(folder), "--prompt", prompt, "--max-new-tokens", "6"]) == 0
    expected = reference_text(model_type, folder, prompt, 6)
    # A decoder's output goes on from the prompt; an encoder-decoder's answer stands alone.
    continues = SPECS[model_type].prompt_style == "continue"
    assert capsys.readouterr().out == (prompt + expected if continues else expected) + "\n"


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_chat_on_each_architecture(model_type: str, tiny_model_dirs: dict, monkeypatch, capsys) -> None:
    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{prompt}\n/reset\n{prompt}\n/exit\nnever read\n"))
    # More new tokens than any of the tiny models can write: each command fits them to its model.
    assert main(["chat", "--model-path", str(folder), "--max-new-tokens", "100"]) == 0
    out = capsys.readouterr().out
    assert out.count("model> ") == 2 and "(conversation cleared)" in out
    generator = TextGenerator.from_pretrained(folder)
    if generator.prompt_style == "answer":
        # The whole question is read, as in training, and answered with all the tokens the decoder can write
        # (AE-LLM: 32, LatentReasoner: 60), never through a chat template the model never saw.
        expected = reference_text(model_type, folder, prompt, generator.max_new_tokens_limit or 100)
        assert "answers each message on its own" in out
    else:
        messages = [{"role": "user", "content": prompt}]
        expected = generator.chat(messages, GenerationSettings(max_new_tokens=100, do_sample=False)).text
    assert out.count(f"model> {expected}") == 2, out


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_evaluate_on_each_architecture(model_type: str, tiny_model_dirs: dict, tiny_text_file: Path, capsys) -> None:
    code = main(["evaluate", "--model-path", str(tiny_model_dirs[model_type]), "--input-file", str(tiny_text_file)])
    captured = capsys.readouterr()
    if SPECS[model_type].prompt_style == "continue":
        assert code == 0 and captured.out.startswith("perplexity "), captured.err[-2000:]
    else:  # perplexity over a text is a decoder's: an encoder-decoder gets the one-line error, not a traceback
        assert code == 1 and "Traceback" not in captured.err
        [error] = [line for line in captured.err.splitlines() if line.startswith("error:")]
        assert f"a {model_type} model is an encoder-decoder" in error
