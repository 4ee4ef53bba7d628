"""The `lmforge` command line: every command that reads a saved model (generate, chat, evaluate) on the golden tiny
model of each architecture (tests/data/golden), and `lmforge train`, in process through `lmforge.cli.main.main`
(exit code, stdout, stderr, as a user sees them); one smoke test runs the installed command in a subprocess.

What a command writes is checked against the committed golden ids or the independent oracles of
tests/models/contract.py (greedy, beam search and seeded sampling by plain forward passes), never against another
`generate()`; perplexity against a computation by hand. (`lmforge serve` and `lmforge demo`: tests/test_serve.py
and tests/test_demo.py; Ctrl-C during training: tests/test_reliability.py; the quickstart: tests/test_training.py.)
"""

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmforge.cli.chat import ANSWER_NOTE, HELP
from lmforge.cli.main import main

from .conftest import REPO_ROOT, TINY_AKSIS, TINY_CHAR
from .golden import ARCHITECTURES, MAX_NEW_TOKENS, PROMPTS, golden_text
from .models.contract import oracle_beam_search, oracle_sample
from .saved_models import load_auto, oracle_chat_text, oracle_decode, oracle_text, perplexity_by_hand

DECODERS = ["aksis", "char_transformer"]
PROMPT = "First Citizen:"


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture()
def lmforge(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """`lmforge ARGS` in process: the exit code (argparse's `SystemExit` too), stdout and stderr; `stdin` is what
    the user types."""

    def run(*args: str, stdin: str | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def assert_one_line_error(result: Result, words: str) -> None:
    assert result.code != 0
    assert "Traceback" not in result.err, result.err[-2000:]
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err[-2000:]
    assert words in errors[0], errors[0]


def prompt_ids(folder: Path, prompt: str) -> list[int]:
    _, tokenizer, _ = load_auto("aksis", folder)  # any decoder folder: the Auto classes pick its tokenizer
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def decode(folder: Path, ids: list[int]) -> str:
    _, tokenizer, _ = load_auto("aksis", folder)
    return str(tokenizer.decode(ids, skip_special_tokens=True))


# --------------------------------------------------------------------------------------------------------------------
# The installed command, and --help


def test_installed_command_writes_the_golden_text(tiny_model_dirs: dict) -> None:
    """The one subprocess: `python -m lmforge generate`, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    args = ["generate", "--model-path", str(tiny_model_dirs["aksis"]), "--prompt", PROMPT, "--max-new-tokens", "8"]
    result = subprocess.run(
        [sys.executable, "-m", "lmforge", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == PROMPT + golden_text("aksis", PROMPT) + "\n"


def test_help_everywhere(lmforge: Run) -> None:
    result = lmforge("--help")
    assert result.code == 0
    for command in ("quickstart", "train", "finetune", "generate", "chat", "evaluate", "push", "serve", "demo"):
        assert command in result.out
        sub = lmforge(command, "--help")
        assert sub.code == 0 and "usage: lmforge " + command in sub.out


def test_parser_errors_are_one_line_with_exit_code_2(lmforge: Run) -> None:
    empty = lmforge()
    assert empty.code == 2 and "usage: lmforge" in empty.out  # no command: the help
    bogus = lmforge("generate", "--model-path", "x", "--bogus")
    assert bogus.code == 2
    assert bogus.err == "error: lmforge: unrecognized arguments: --bogus (see lmforge --help)\n"


# --------------------------------------------------------------------------------------------------------------------
# generate


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_generate_writes_the_golden_text(model_type: str, tiny_model_dirs: dict, lmforge: Run) -> None:
    """Greedy by default: a decoder's output goes on from the prompt, an encoder-decoder's answer stands alone."""
    folder = tiny_model_dirs[model_type]
    for prompt in PROMPTS[model_type]:
        result = lmforge("generate", "--model-path", str(folder), "--prompt", prompt, "--max-new-tokens", "8")
        assert result.code == 0, result.err[-2000:]
        expected = golden_text(model_type, prompt)
        assert result.out == (prompt + expected if model_type in DECODERS else expected) + "\n"


@pytest.mark.parametrize("model_type", DECODERS)
def test_generate_samples_what_the_sampling_oracle_draws(model_type: str, tiny_model_dirs: dict, lmforge: Run) -> None:
    """`--do-sample`, `--temperature`, `--top-k` and `--top-p` reach the sampler, seeded by `--seed`: each output is
    the seeded draw of the sampling oracle, and sampling is not greedy decoding."""
    folder = str(tiny_model_dirs[model_type])
    ids = prompt_ids(Path(folder), PROMPT)
    model, tokenizer, _ = load_auto(model_type, Path(folder))
    base = ["generate", "--model-path", folder, "--prompt", PROMPT, "--max-new-tokens", "8"]
    greedy = PROMPT + golden_text(model_type, PROMPT) + "\n"
    cases = [  # without --top-k, generate() keeps the 50 best tokens (transformers' default top-k)
        (["--do-sample", "--seed", "1"], {"seed": 1, "top_k": 50}),
        (["--do-sample", "--seed", "2"], {"seed": 2, "top_k": 50}),
        (["--top-k", "20", "--temperature", "0.9", "--seed", "1"], {"seed": 1, "top_k": 20, "temperature": 0.9}),
        (["--top-p", "0.8", "--seed", "3"], {"seed": 3, "top_k": 50, "top_p": 0.8}),
        (["--temperature", "0.7", "--top-k", "10", "--top-p", "0.9", "--seed", "4"], {"seed": 4, "top_k": 10, "temperature": 0.7, "top_p": 0.9}),
    ]  # fmt: skip
    outputs = []
    for options, oracle in cases:
        result = lmforge(*base, *options)
        assert result.code == 0, result.err[-2000:]
        drawn = oracle_sample(model, ids, MAX_NEW_TOKENS, eos_token_id=tokenizer.eos_token_id, **oracle)
        expected = PROMPT + decode(Path(folder), drawn) + "\n"
        assert result.out == expected, options
        outputs.append(result.out)
    assert any(output != greedy for output in outputs), "sampling wrote the greedy text every time"
    assert len(set(outputs[:2])) == 2, "two seeds, one sample"
    assert lmforge(*base, "--do-sample", "--seed", "1").out == outputs[0]  # reproducible
    assert lmforge(*base, "--do-sample", "--top-k", "1", "--seed", "5").out == greedy  # top-k 1 is greedy


@pytest.mark.parametrize("model_type", DECODERS)
def test_generate_beam_search_is_the_beam_oracle(model_type: str, tiny_model_dirs: dict, lmforge: Run) -> None:
    folder = tiny_model_dirs[model_type]
    model, _, _ = load_auto(model_type, folder)
    for beams in (2, 3):
        result = lmforge("generate", "--model-path", str(folder), "--prompt", PROMPT, "--max-new-tokens", "8",
                         "--num-beams", str(beams))  # fmt: skip
        assert result.code == 0, result.err[-2000:]
        best = oracle_beam_search(model, prompt_ids(folder, PROMPT), beams, MAX_NEW_TOKENS)
        assert result.out == PROMPT + decode(folder, best) + "\n", beams


@pytest.mark.parametrize("model_type", DECODERS)
def test_generate_without_a_prompt_starts_from_the_end_of_text_token(
    model_type: str, tiny_model_dirs: dict, lmforge: Run
) -> None:
    folder = tiny_model_dirs[model_type]
    result = lmforge("generate", "--model-path", str(folder), "--max-new-tokens", "8")
    assert result.code == 0, result.err[-2000:]
    model, tokenizer, _ = load_auto(model_type, folder)
    assert result.out == oracle_decode(model, tokenizer, [tokenizer.eos_token_id], 8, strip=False) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# chat


def transcript(answers: list[str], cleared_after: int | None = None, note: bool = False) -> str:
    """What `lmforge chat` prints for these answers when its input is not a terminal."""
    lines = [HELP, *([ANSWER_NOTE] if note else [])]
    for index, answer in enumerate(answers):
        lines.append(f"model> {answer}")
        if cleared_after == index:
            lines.append("(conversation cleared)")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("model_type", DECODERS)
def test_chat_keeps_the_history_until_reset(model_type: str, tiny_model_dirs: dict, lmforge: Run) -> None:
    """A decoder reads the whole conversation through its chat template (a character tokenizer has none: the plain
    "role: text" one): the second answer continues the first exchange, and after /reset the same message is answered
    as a new conversation."""
    folder = tiny_model_dirs[model_type]
    result = lmforge("chat", "--model-path", str(folder), "--max-new-tokens", "6",
                     stdin="hi\n\nyo\n/reset\nyo\n/exit\nnever read\n")  # fmt: skip
    assert result.code == 0, result.err[-2000:]
    first = oracle_chat_text(model_type, folder, [{"role": "user", "content": "hi"}], 6)
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": first.strip()},
        {"role": "user", "content": "yo"},
    ]
    second = oracle_chat_text(model_type, folder, history, 6)
    fresh = oracle_chat_text(model_type, folder, [{"role": "user", "content": "yo"}], 6)
    assert second != fresh, "the test needs answers that show whether the history was read"
    assert result.out == transcript([first, second, fresh], cleared_after=1)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_chat_fits_the_answer_to_each_model(model_type: str, tiny_model_dirs: dict, lmforge: Run) -> None:
    """More new tokens than any tiny model can write: a decoder's answer gets the room the conversation leaves in its
    context (64), at least half of it, and the conversation keeps its most recent tokens; an encoder-decoder answers each message on its own, with all the tokens its decoder writes
    (AE-LLM: 32, LatentReasoner: 60), never through a chat template it never saw."""
    folder, prompt = tiny_model_dirs[model_type], PROMPTS[model_type][0]
    result = lmforge("chat", "--model-path", str(folder), "--max-new-tokens", "100",
                     stdin=f"{prompt}\n/reset\n{prompt}\n/exit\n")  # fmt: skip
    assert result.code == 0, result.err[-2000:]
    if model_type in DECODERS:  # "First Citizen:" in the chat template is 35 tokens: 32 new ones, the last 32 read
        expected = oracle_chat_text(model_type, folder, [{"role": "user", "content": prompt}], 100)
    else:
        expected = oracle_text(model_type, folder, prompt, {"ae_llm": 32, "latent_reasoner": 60}[model_type])
    assert result.out == transcript([expected, expected], cleared_after=0, note=model_type not in DECODERS)


# --------------------------------------------------------------------------------------------------------------------
# evaluate


@pytest.mark.parametrize("model_type", DECODERS)
def test_evaluate_prints_the_perplexity_computed_by_hand(
    model_type: str, tiny_model_dirs: dict, tmp_path: Path, lmforge: Run
) -> None:
    folder = tiny_model_dirs[model_type]
    text_file = tmp_path / "text.txt"
    text_file.write_text("First Citizen:\nSpeak, speak.\nAll:\nResolved.", encoding="utf-8")
    for window_options, window in (([], 64), (["--max-length", "16", "--stride", "16"], 16)):
        result = lmforge("evaluate", "--model-path", str(folder), "--input-file", str(text_file), *window_options)
        assert result.code == 0, result.err[-2000:]
        mean_nll, tokens = perplexity_by_hand(model_type, folder, text_file.read_text(encoding="utf-8"), window)
        assert result.out == f"perplexity {math.exp(mean_nll):.3f} (mean NLL {mean_nll:.4f} over {tokens} tokens)\n"


@pytest.mark.parametrize("model_type", ["ae_llm", "latent_reasoner"])
def test_evaluate_refuses_an_encoder_decoder_in_one_line(
    model_type: str, tiny_model_dirs: dict, tiny_text_file: Path, lmforge: Run
) -> None:
    """Perplexity over a text is a decoder's: an encoder-decoder gets the one-line error, not a traceback."""
    result = lmforge("evaluate", "--model-path", str(tiny_model_dirs[model_type]), "--input-file", str(tiny_text_file))
    assert result.code == 1
    assert_one_line_error(result, f"a {model_type} model is an encoder-decoder")


# --------------------------------------------------------------------------------------------------------------------
# train


def test_train_from_one_text_file_then_generate(tmp_path: Path, tiny_text_file: Path, lmforge: Run) -> None:
    out = tmp_path / "model"
    overrides = [f"--config_overrides.{k}={v}" for k, v in TINY_AKSIS.items()]
    result = lmforge(
        "train", "--model", "aksis", "--input-file", str(tiny_text_file), "--output-dir", str(out),
        "--max_steps", "5", "--block_size", "32", "--tokenizer_vocab_size", "200", "--use_cpu", "true",
        "--disable_tqdm", "true", "--save_strategy", "no", *overrides,
    )  # fmt: skip
    assert result.code == 0, result.err[-3000:]
    eval_results = json.loads((out / "eval_results.json").read_text())
    printed = re.search(r"eval_perplexity\s+=\s+([0-9.]+)", result.out)  # the Trainer's metrics table
    assert printed and float(printed[1]) == pytest.approx(eval_results["eval_perplexity"], rel=1e-3), result.out
    generated = lmforge("generate", "--model-path", str(out), "--prompt", PROMPT, "--max-new-tokens", "8")
    assert generated.code == 0, generated.err[-2000:]
    assert generated.out == PROMPT + oracle_text("aksis", out, PROMPT, 8) + "\n"


def test_char_model_trains_from_one_text_file_then_generates(
    tmp_path: Path, tiny_text_file: Path, lmforge: Run
) -> None:
    out = tmp_path / "char"
    overrides = [f"--config_overrides.{k}={v}" for k, v in TINY_CHAR.items()]
    result = lmforge(
        "train", "--model", "char_transformer", "--input-file", str(tiny_text_file), "--output-dir", str(out),
        "--max_steps", "5", "--block_size", "32", "--use_cpu", "true", "--disable_tqdm", "true",
        "--save_strategy", "no", *overrides,
    )  # fmt: skip
    assert result.code == 0, result.err[-3000:]
    assert "eval_perplexity" in result.out
    # One token per character of the training text, after the 4 special tokens; the model is sized to it.
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert set(vocab) == {"<pad>", "<unk>", "<s>", "</s>", *tiny_text_file.read_text(encoding="utf-8")}
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["vocab_size"] == len(vocab)
    generated = lmforge("generate", "--model-path", str(out), "--prompt", PROMPT, "--max-new-tokens", "8")
    assert generated.code == 0, generated.err[-2000:]
    new = generated.out[len(PROMPT) : -1]
    assert new == oracle_text("char_transformer", out, PROMPT, 8)
    assert set(new) <= set(vocab)  # characters joined as they are: no added spaces


# --------------------------------------------------------------------------------------------------------------------
# Bad input: one line, a non-zero exit code, nothing written


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--model", "aksis", "--input-file", "/no/such/file.txt"], "input file not found"),
        (["train", "recipes/none.yaml"], "recipe not found"),
        (["train", "--model", "aksis", "--input-file", "{empty}"], "is empty"),
        (["train", "--model", "nope", "--input-file", "{text}"], "unknown model_type 'nope'"),
        (["train", "--model", "char_transformer", "--input-file", "{blank}"], "is empty"),
        (["generate", "--model-path", "/no/such/model", "--prompt", "x"], "model folder not found"),
        (["generate", "--model-path", "{aksis}", "--num-tokens", "-3"], "must be a positive number"),
        (["generate", "--model-path", "{aksis}", "--num-tokens", "100"], "must be below the model's context"),
        (["generate", "--model-path", "{char}", "--num-tokens", "-3"], "must be a positive number"),
        (["generate", "--model-path", "{no_vocab}", "--prompt", "x"], "could not load the tokenizer"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    args: list[str], words: str, tmp_path: Path, tiny_model_dirs: dict, tiny_text_file: Path, lmforge: Run
) -> None:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("  \n", encoding="utf-8")
    no_vocab = Path(shutil.copytree(tiny_model_dirs["char_transformer"], tmp_path / "no_vocab"))
    (no_vocab / "vocab.json").unlink()
    values = {
        "aksis": str(tiny_model_dirs["aksis"]),
        "char": str(tiny_model_dirs["char_transformer"]),
        "no_vocab": str(no_vocab),
        "empty": str(tmp_path / "empty.txt"),
        "blank": str(tmp_path / "blank.txt"),
        "text": str(tiny_text_file),
    }
    extra = ["--output-dir", str(tmp_path / "o")] if args[0] == "train" else []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        assert_one_line_error(lmforge(*[a.format(**values) for a in args], *extra), words)
    assert not (tmp_path / "o").exists()


def test_model_folder_without_weights_or_tokenizer(tmp_path: Path, tiny_model_dirs: dict, lmforge: Run) -> None:
    golden = tiny_model_dirs["aksis"]
    broken = Path(shutil.copytree(golden, tmp_path / "broken"))
    (broken / "model.safetensors").unlink()
    assert_one_line_error(lmforge("generate", "--model-path", str(broken)), "no .safetensors weights")
    (broken / "model.safetensors").write_bytes(b"corrupt" * 10)
    assert_one_line_error(lmforge("generate", "--model-path", str(broken)), "could not load the model")
    shutil.copy(golden / "model.safetensors", broken / "model.safetensors")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).unlink()
    assert_one_line_error(lmforge("generate", "--model-path", str(broken)), "tokenizer")


# --------------------------------------------------------------------------------------------------------------------
# sampling-study: the model folder by --model-path, as in every other command (or by position)


def test_sampling_study_takes_the_model_path_option(tmp_path: Path, tiny_model_dirs: dict, lmforge: Run) -> None:
    model = str(tiny_model_dirs["aksis"])
    out = tmp_path / "study"
    settings = ["--reference-model", "none", "--prompt", PROMPT, "--num-seeds", "2", "--max-new-tokens", "3"]
    result = lmforge("sampling-study", "--model-path", model, "--output-dir", str(out), *settings)
    assert result.code == 0, result.err[-2000:]
    table = (out / "sampling_study_table.md").read_text(encoding="utf-8")
    assert table in result.out and "| greedy |" in table
    assert_one_line_error(lmforge("sampling-study", *settings), "give the model folder: lmforge sampling-study")
    both = lmforge("sampling-study", model, "--model-path", str(tmp_path / "other"), *settings)
    assert_one_line_error(both, "two model folders given")
