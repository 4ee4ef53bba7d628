"""`import lmforge` and `lmforge --help` stay cheap (no torch, transformers models or peft) while the Auto classes
still know the lmforge models; and the character model's seed-script options work as aliases."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmforge.cli.main import main

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
HEAVY = ("torch", "transformers", "peft", "datasets")


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def test_import_lmforge_and_help_import_no_heavy_library(tmp_path: Path) -> None:
    result = python(
        f"""
        import sys
        import lmforge
        from lmforge.cli.main import build_parser
        build_parser().format_help()
        print(sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY!r}))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
    help_run = subprocess.run(
        [sys.executable, "-m", "lmforge", "--help"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert help_run.returncode == 0 and "quickstart" in help_run.stdout


@pytest.mark.parametrize("order", ["lmforge first", "transformers first"])
def test_import_lmforge_then_auto_classes_load_a_saved_folder(trained_aksis_dir: Path, tmp_path: Path, order: str):
    imports = ["import lmforge", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    if order == "transformers first":
        imports.reverse()
    result = python(
        "\n".join(imports)
        + f"""
model = AutoModelForCausalLM.from_pretrained({str(trained_aksis_dir)!r})  # no trust_remote_code
tokenizer = AutoTokenizer.from_pretrained({str(trained_aksis_dir)!r})
print(type(model).__module__, type(tokenizer).__name__)
""",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["lmforge.models.aksis.modeling_aksis", "AksisTokenizer"]


def test_lazy_top_level_exports() -> None:
    import lmforge
    from lmforge.models import AksisForCausalLM, CharTransformerTokenizer

    assert (
        lmforge.AksisForCausalLM is AksisForCausalLM and lmforge.CharTransformerTokenizer is CharTransformerTokenizer
    )
    assert {"AksisForCausalLM", "LmforgeError", "__version__"} <= set(lmforge.__all__)
    with pytest.raises(AttributeError):
        lmforge.NoSuchName  # noqa: B018


def test_seed_script_options_are_aliases(tmp_path: Path, tiny_text_file: Path, capsys) -> None:
    """`--input_file`, `--model_path` and `--num_tokens` of the character model's seed script, and its
    `--seed "start text"`: a whole number is the random seed, other text is the start text (the prompt)."""
    out = tmp_path / "char"
    code = main(
        [
            "train",
            "--model",
            "char_transformer",
            "--input_file",
            str(tiny_text_file),
            "--output-dir",
            str(out),
            "--max_steps",
            "2",
            "--block_size",
            "16",
            "--config_overrides.hidden_size",
            "16",
            "--config_overrides.intermediate_size",
            "32",
            "--config_overrides.num_hidden_layers",
            "1",
            "--config_overrides.num_attention_heads",
            "2",
            "--config_overrides.max_position_embeddings",
            "32",
            "--use_cpu",
            "true",
            "--disable_tqdm",
            "true",
            "--save_strategy",
            "no",
        ]
    )
    assert code == 0 and (out / "model.safetensors").is_file()
    capsys.readouterr()

    assert main(["generate", "--model_path", str(out), "--seed", "ROMEO:", "--num_tokens", "5"]) == 0
    as_seed_text = capsys.readouterr().out
    assert main(["generate", "--model-path", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out == as_seed_text and as_seed_text.startswith("ROMEO:")

    sampled = []
    for _ in range(2):
        assert (
            main(
                [
                    "generate",
                    "--model_path",
                    str(out),
                    "--prompt",
                    "A",
                    "--seed",
                    "3",
                    "--do-sample",
                    "--num_tokens",
                    "8",
                ]
            )
            == 0
        )
        sampled.append(capsys.readouterr().out)
    assert sampled[0] == sampled[1]  # an integer --seed is the random seed

    assert main(["evaluate", "--model_path", str(out), "--input_file", str(tiny_text_file)]) == 0
    assert "perplexity" in capsys.readouterr().out

    with pytest.raises(SystemExit) as stopped:
        main(["generate", "--model_path", str(out), "--prompt", "A", "--seed", "ROMEO:"])
    assert stopped.value.code == 2
    assert "give the start text once" in capsys.readouterr().err


def test_renamed_names_keep_deprecated_aliases_for_one_release() -> None:
    import importlib

    import lmforge.backbones
    import lmforge.hub
    import lmforge.training
    from lmforge.hub import cards, remote_code
    from lmforge.training import qa, summarization

    with pytest.warns(FutureWarning, match="use lmforge.backbones"):
        assert lmforge.hub.offline_backbone_path is lmforge.backbones.offline_backbone_path
    with pytest.warns(FutureWarning, match="use lmforge.backbones"):
        module = importlib.reload(importlib.import_module("lmforge.hub.offline_backbones"))
    assert module.resolve_backbone is lmforge.backbones.resolve_backbone
    with pytest.warns(FutureWarning, match="tasks.get_task"):
        assert lmforge.training.BUILDERS["aksis"] is lmforge.training.get_task("causal_lm").build
    with pytest.warns(FutureWarning):
        assert qa.build_ae_llm is qa.build_question_answering
    with pytest.warns(FutureWarning):
        assert summarization.build_latent_reasoner is summarization.build_summarization
    with pytest.warns(FutureWarning):
        assert cards.PIPELINE_TAGS["latent_reasoner"] == "summarization"
    with pytest.warns(FutureWarning):
        assert remote_code.CUSTOM_PIPELINES["ae_llm"][0] == "text2text-generation"
