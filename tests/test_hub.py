"""Model cards, `lmforge push` (dry run, offline and token errors, the commit it makes) and the Trainer's card hook."""

import json
import os
import shutil
import socket
import textwrap
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard, SpaceCard

from lmforge import __version__
from lmforge.cli.main import main
from lmforge.errors import LmforgeError
from lmforge.hub import push as push_module
from lmforge.hub.cards import read_model_folder, render_model_card, write_model_card
from lmforge.hub.push import UploadPlan, model_upload_plan, space_upload_plan, upload
from lmforge.hub.remote_code import add_remote_code, remote_code_updates

from .conftest import python_without_lmforge
from .saved_models import golden_copy, oracle_text


@pytest.fixture()
def aksis_dir(trained_aksis_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained Aksis folder (tests add and remove files in it)."""
    return Path(shutil.copytree(trained_aksis_dir, tmp_path / "aksis-run"))


@pytest.fixture(scope="module")
def seq2seq_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seq2seq")
    return {model_type: golden_copy(model_type, root / model_type) for model_type in ("ae_llm", "latent_reasoner")}


def metadata(card: ModelCard) -> dict:
    """The card's YAML header as the Hub reads it: parsed back from the card's text."""
    return ModelCard(str(card)).data.to_dict()


def metric_values(meta: dict) -> dict[str, float]:
    [entry] = meta["model-index"]
    [result] = entry["results"]
    return {metric["type"]: metric["value"] for metric in result["metrics"]}


# --- model cards ---


def test_card_metadata_parses_back_with_widget_and_model_index(aksis_dir: Path) -> None:
    card = render_model_card(aksis_dir, repo_id="someone/aksis-tiny")
    meta = metadata(card)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "mit"
    assert {"lmforge", "aksis", "custom_code"} <= set(meta["tags"])
    # the conftest model learned from Shakespeare lines: the widget offers a Shakespeare prompt
    assert meta["widget"] == [{"text": "ROMEO:", "example_title": "ROMEO:"}]
    eval_results = json.loads((aksis_dir / "eval_results.json").read_text())
    values = metric_values(meta)
    assert values["perplexity"] == pytest.approx(eval_results["eval_perplexity"], abs=1e-3)
    assert values["loss"] == pytest.approx(eval_results["eval_loss"], abs=1e-3)
    assert not any(key.endswith(("runtime", "per_second")) for key in values)
    assert meta["model-index"][0]["name"] == "aksis-tiny"

    text = card.text
    assert 'AutoModelForCausalLM.from_pretrained("someone/aksis-tiny", trust_remote_code=True)' in text
    assert 'pipeline("text-generation", model="someone/aksis-tiny", trust_remote_code=True)' in text
    assert "max_steps: 30" in text  # the training recipe
    assert f"{read_model_folder(aksis_dir).num_parameters:,} parameters" in text
    assert str(aksis_dir.parent) not in text  # absolute local paths are not published


def test_card_uses_recipe_prompts_samples_and_forgetting_table(aksis_dir: Path) -> None:
    recipe = yaml.safe_load((aksis_dir / "recipe.yaml").read_text())
    recipe["sample_prompts"] = ["First Citizen:", "All:"]
    (aksis_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (aksis_dir / "samples.json").write_text(json.dumps({"First Citizen:": "\nSpeak, speak."}))
    (aksis_dir / "forgetting.md").write_text(
        "## Forgetting\n\n| method | ppl A before | ppl A after |\n| --- | --- | --- |\n"
    )

    readme = write_model_card(aksis_dir, repo_id="someone/aksis-tiny", space_id="someone/aksis-demo")
    card = ModelCard.load(readme)
    assert [item["text"] for item in card.data.to_dict()["widget"]] == ["First Citizen:", "All:"]
    assert "First Citizen:\nSpeak, speak." in card.text
    assert "| method | ppl A before | ppl A after |" in card.text
    assert card.text.count("## Forgetting") == 1
    assert "https://huggingface.co/spaces/someone/aksis-demo" in card.text


@pytest.mark.parametrize(
    ("data", "hub_id", "name"),
    [
        ({"dialogsum_file": "../data/dialogsum/dialogsum.dev.jsonl"}, "knkarthick/dialogsum", "DialogSum"),
        ({"dataset_name": "knkarthick/samsum"}, "knkarthick/samsum", "SAMSum"),
    ],
)
def test_card_names_the_data_of_chat_and_summarization_recipes(aksis_dir: Path, data, hub_id, name) -> None:
    """A chat-tuning recipe's `dialogsum_file` and SAMSum's Hub id are data the card knows (not the default corpus)."""
    recipe = yaml.safe_load((aksis_dir / "recipe.yaml").read_text())
    recipe.pop("train_file", None)
    (aksis_dir / "recipe.yaml").write_text(yaml.safe_dump({**recipe, **data}))
    card = render_model_card(aksis_dir, repo_id="someone/aksis-tiny")
    assert metadata(card)["datasets"] == [hub_id]
    assert f"(the Hugging Face `Trainer`) on {name}" in card.text
    assert "the corpus embedded in lmforge" not in card.text


def test_a_local_base_model_is_not_published_as_a_hub_id(aksis_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """`model_name_or_path: outputs/base` names a folder beside the run's, wherever the push runs from; a Hub id
    (`org/name`, no such folder) is the card's `base_model`."""
    (aksis_dir.parent / "outputs" / "base").mkdir(parents=True)
    recipe = yaml.safe_load((aksis_dir / "recipe.yaml").read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for base, published in (("outputs/base", None), ("someone/base-model", ["someone/base-model"])):
        (aksis_dir / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "model_name_or_path": base}))
        assert metadata(render_model_card(aksis_dir, repo_id="someone/aksis-tiny")).get("base_model") == published


@pytest.mark.parametrize(
    ("model_type", "pipeline_tag", "dataset", "metrics", "usage"),
    [
        ("ae_llm", "text2text-generation", "rajpurkar/squad", {"exact_match", "f1", "loss"}, "text2text-generation"),
        ("latent_reasoner", "summarization", "knkarthick/dialogsum", {"rouge1", "rougeL", "loss"}, "summarization"),
    ],
)
def test_cards_of_the_seq2seq_models(
    seq2seq_dirs: dict[str, Path], model_type: str, pipeline_tag: str, dataset: str, metrics: set, usage: str
) -> None:
    card = render_model_card(seq2seq_dirs[model_type], repo_id=f"someone/{model_type}")
    meta = metadata(card)
    assert meta["pipeline_tag"] == pipeline_tag
    assert meta["datasets"] == [dataset]
    assert set(metric_values(meta)) == metrics
    assert f'pipeline("{usage}", model="someone/{model_type}", trust_remote_code=True)' in card.text
    if model_type == "ae_llm":
        assert meta["widget"][0]["text"] == "Who wrote Hamlet?"  # the recipe's sample prompt
    else:  # the backbones came from pip packages: their Hub ids are the base models
        assert meta["base_model"] == ["sentence-transformers/all-MiniLM-L6-v2", "HuggingFaceTB/SmolLM2-135M-Instruct"]
        assert "#Person1#" in meta["widget"][0]["text"]  # a DialogSum-style dialogue
        # the processor holds both tokenizers (and the decoder prompt of a model trained with one)
        assert 'AutoProcessor.from_pretrained("someone/latent_reasoner", trust_remote_code=True)' in card.text
        assert "decoder_input_ids" not in card.text  # this one has no decoder prompt


def test_model_folder_errors_are_one_sentence(tmp_path: Path, aksis_dir: Path) -> None:
    with pytest.raises(LmforgeError, match="model folder not found"):
        read_model_folder(tmp_path / "missing")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(LmforgeError, match="LoRA adapter"):
        read_model_folder(adapter)
    for weights in aksis_dir.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(LmforgeError, match="safetensors"):
        read_model_folder(aksis_dir)


# --- remote code ---


def test_remote_code_is_restored_when_missing(aksis_dir: Path) -> None:
    assert remote_code_updates(aksis_dir) == {}  # a folder saved by a run is complete
    (aksis_dir / "modeling_aksis.py").unlink()
    config = json.loads((aksis_dir / "config.json").read_text())
    del config["auto_map"]
    (aksis_dir / "config.json").write_text(json.dumps(config))
    assert sorted(add_remote_code(aksis_dir)) == ["config.json", "modeling_aksis.py"]
    restored = json.loads((aksis_dir / "config.json").read_text())
    assert restored["auto_map"] == {
        "AutoConfig": "configuration_aksis.AksisConfig",
        "AutoModelForCausalLM": "modeling_aksis.AksisForCausalLM",
        "AutoModel": "modeling_aksis.AksisModel",  # as save_pretrained writes it; vLLM's backend loads this one
    }
    assert remote_code_updates(aksis_dir) == {}

    config["model_type"] = "gpt2"
    (aksis_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(LmforgeError, match="not an lmforge architecture"):
        remote_code_updates(aksis_dir)


def test_question_answering_card_shows_the_baseline_and_the_learned_pairs(tmp_path: Path) -> None:
    """An AE-LLM card puts the baseline and the train pairs the model learned beside its validation scores, and its
    model-index holds the learned pairs' exact match and F1 as a second (train) result."""
    folder = golden_copy("ae_llm", tmp_path / "ae_llm")
    results = {
        "eval_exact_match": 0.1,
        "eval_f1": 0.2,
        "eval_baseline_exact_match": 0.5,
        "eval_baseline_f1": 0.6,
        "train_exact_match": 99.6,
        "train_f1": 99.7,
        "train_bleu": 25.0,
        "train_questions": 500,
    }
    (folder / "eval_results.json").write_text(json.dumps(results))
    card = render_model_card(folder, repo_id="someone/ae_llm")
    assert (
        "| metric | value | baseline (always the most frequent answer) | the 500 train pairs it learned |" in card.text
    )
    assert "| Exact match | 0.1000 | 0.5000 | 99.60 |" in card.text
    assert "| F1 | 0.2000 | 0.6000 | 99.70 |" in card.text
    index = metadata(card)["model-index"][0]["results"]
    assert [result["dataset"]["split"] for result in index] == ["validation", "train"]
    assert {metric["type"]: metric["value"] for metric in index[1]["metrics"]} == {"exact_match": 99.6, "f1": 99.7}
    assert "baseline" not in json.dumps(index)  # a reference score, not this model's
    assert "Closed book (the question alone), it answers what it memorised" in card.text


def test_summarization_card_shows_the_two_references_in_its_table_and_model_index(
    seq2seq_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A LatentReasoner card puts LEAD-3 and the prompted decoder beside the model's ROUGE and distinct summaries,
    and its model-index holds their scores as metrics named for each reference."""
    folder = tmp_path / "latent_reasoner"
    shutil.copytree(seq2seq_dirs["latent_reasoner"], folder)
    scores = {"rouge1": 36.38, "rouge2": 11.86, "distinct_summaries": 100.0}
    results = {f"eval_{key}": value for key, value in scores.items()}
    results |= {"lead3_rouge1": 28.53, "lead3_rouge2": 7.46, "lead3_distinct_summaries": 99.0}
    results |= {"prompted_decoder_rouge1": 24.64, "prompted_decoder_rouge2": 5.94}
    (folder / "eval_results.json").write_text(json.dumps(results))
    card = render_model_card(folder, repo_id="someone/latent_reasoner")
    header = "| metric | value | LEAD-3 (the first three utterances) | the decoder alone, prompted |"
    assert header in card.text
    assert "| ROUGE-1 | 36.38 | 28.53 | 24.64 |" in card.text and "| ROUGE-2 | 11.86 | 7.4600 | 5.9400 |" in card.text
    assert "| distinct summaries | 100.00 | 99.00 |  |" in card.text
    metrics = {m["type"]: (m["name"], m["value"]) for m in metadata(card)["model-index"][0]["results"][0]["metrics"]}
    assert metrics["rouge1"] == ("ROUGE-1", 36.38)
    assert metrics["lead3_rouge1"] == ("LEAD-3 (the first three utterances): ROUGE-1", 28.53)
    assert metrics["prompted_decoder_rouge2"] == ("the decoder alone, prompted: ROUGE-2", 5.94)


def test_seq2seq_folders_name_their_pipeline(seq2seq_dirs: dict[str, Path]) -> None:
    for model_type, task in (("ae_llm", "text2text-generation"), ("latent_reasoner", "summarization")):
        folder = seq2seq_dirs[model_type]
        config = json.loads((folder / "config.json").read_text())
        impl = config["custom_pipelines"][task]["impl"]
        assert (folder / f"{impl.split('.')[0]}.py").is_file()
        assert remote_code_updates(folder) == {}


# --- lmforge push ---


def test_dry_run_writes_the_upload_and_it_loads_without_lmforge(aksis_dir: Path, tmp_path: Path, capsys) -> None:
    # An older folder: no auto_map and a missing code file; plus a checkpoint and a pickle that must stay home.
    (aksis_dir / "modeling_aksis.py").unlink()
    config = json.loads((aksis_dir / "config.json").read_text())
    del config["auto_map"]
    (aksis_dir / "config.json").write_text(json.dumps(config))
    (aksis_dir / "checkpoint-10").mkdir()
    (aksis_dir / "checkpoint-10" / "model.safetensors").write_bytes(b"x")
    (aksis_dir / "training_args.bin").write_bytes(b"pickle")
    out = tmp_path / "upload"

    arguments = ["--repo-id", "someone/aksis-tiny", "--dry-run", "--space", "someone/aksis-demo"]
    code = main(["push", "--model-path", str(aksis_dir), *arguments, "--output-dir", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Dry run, nothing sent" in printed and "  model.safetensors" in printed and "  app.py" in printed
    model_files = {p.relative_to(out / "model").as_posix() for p in (out / "model").rglob("*") if p.is_file()}
    assert {"README.md", "config.json", "model.safetensors", "modeling_aksis.py", "tokenizer.json"} <= model_files
    assert {"recipe.yaml", "eval_results.json", "trainer_state.json"} <= model_files
    assert not any(name.startswith("checkpoint-") or name.endswith(".bin") for name in model_files)
    assert (aksis_dir / "config.json").read_text() == json.dumps(config)  # the model folder itself is untouched

    space = out / "space"
    assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    space_meta = SpaceCard.load(space / "README.md").data.to_dict()
    assert space_meta["sdk"] == "gradio" and space_meta["models"] == ["someone/aksis-tiny"]
    assert (space / "requirements.txt").read_text().strip() == f"lmforge[demo]=={__version__}"
    compile((space / "app.py").read_text(), "app.py", "exec")
    assert 'MODEL_ID = "someone/aksis-tiny"' in (space / "app.py").read_text()
    assert "spaces/someone/aksis-demo" in (out / "model" / "README.md").read_text()

    script = textwrap.dedent(
        f"""
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
        folder = {str(out / "model")!r}
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        generator = pipeline("text-generation", model=folder, trust_remote_code=True)
        print(repr(generator("First Citizen:", max_new_tokens=8, do_sample=False)[0]["generated_text"]))
        """
    )
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # the round trip: what was uploaded writes, without lmforge, what the oracle writes from the original folder
    expected = "First Citizen:" + oracle_text("aksis", aksis_dir, "First Citizen:", 8)
    assert result.stdout.strip().splitlines()[-1] == repr(expected)


def test_push_offline_is_one_line_error_and_uploads_nothing(aksis_dir: Path, monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(push_module.HfApi, "create_repo", lambda *a, **k: calls.append("create_repo"))
    monkeypatch.setattr(push_module.HfApi, "create_commit", lambda *a, **k: calls.append("create_commit"))
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by conftest
    code = main(["push", "--model-path", str(aksis_dir), "--repo-id", "someone/aksis-tiny"])
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "offline mode is on (HF_HUB_OFFLINE=1)" in errors[0], err
    assert calls == []
    assert not Path(str(aksis_dir) + "-hub").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the probe is closed


@pytest.mark.parametrize("case", ["no-token", "no-network"])
def test_push_without_token_or_network_is_one_line_error(
    aksis_dir: Path, tmp_path: Path, monkeypatch, capsys, case: str
) -> None:
    """Online mode, but no token (none in the environment or the token file), or a token and no Hub to reach."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(push_module.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(push_module.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if case == "no-network":
        monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
        monkeypatch.setattr(push_module.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    commits = []
    monkeypatch.setattr(push_module.HfApi, "create_commit", lambda *a, **k: commits.append(a))

    code = main(["push", "--model-path", str(aksis_dir), "--repo-id", "someone/aksis-tiny"])
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    expected = "no Hugging Face token" if case == "no-token" else "cannot reach the Hugging Face Hub"
    assert len(errors) == 1 and expected in errors[0], err
    assert "Traceback" not in err and commits == []


def test_upload_sends_one_commit_per_repository(aksis_dir: Path, monkeypatch) -> None:
    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        calls.append(("create_commit", {"repo_id": repo_id, "paths": sorted(op.path_in_repo for op in operations)}))

    monkeypatch.setattr(push_module.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(push_module.HfApi, "create_commit", create_commit)
    monkeypatch.setattr(push_module, "check_hub_access", lambda token=None: "someone")

    written = push_module.push(aksis_dir, "someone/aksis-tiny", space_id="someone/aksis-demo", token="hf_x")
    plan = model_upload_plan(aksis_dir, "someone/aksis-tiny", space_id="someone/aksis-demo")
    assert [name for name, _ in calls] == ["create_repo", "create_commit", "create_repo", "create_commit"]
    assert calls[0][1]["repo_type"] == "model" and calls[2][1]["repo_type"] == "space"
    assert calls[2][1]["space_sdk"] == "gradio"
    assert calls[1][1]["paths"] == sorted(plan.files) == written["model"]
    assert calls[3][1]["paths"] == ["README.md", "app.py", "requirements.txt"]

    def failing_commit(self, repo_id, operations, **kwargs):
        raise ConnectionError("connection reset\nmore detail")

    monkeypatch.setattr(push_module.HfApi, "create_commit", failing_commit)
    with pytest.raises(LmforgeError, match=r"nothing was committed: ConnectionError: connection reset$"):
        upload(space_upload_plan("someone/aksis-demo", "someone/aksis-tiny"), token="hf_x")


def test_upload_plan_checks_repo_ids(aksis_dir: Path) -> None:
    with pytest.raises(LmforgeError, match="USER/NAME"):
        model_upload_plan(aksis_dir, "no-owner")
    with pytest.raises(LmforgeError, match="not a valid repository id"):
        space_upload_plan("someone/bad name", "someone/aksis-tiny")
    plan = UploadPlan("someone/x", files={"a/b.txt": b"hello"})
    assert plan.operations()[0].path_in_repo == "a/b.txt"


# --- the Trainer's push_to_hub ---


def content(path_or_fileobj: object) -> bytes:
    """The bytes of a commit operation's file (given as bytes, a path or a file object)."""
    if isinstance(path_or_fileobj, bytes):
        return path_or_fileobj
    if isinstance(path_or_fileobj, str | Path):
        return Path(path_or_fileobj).read_bytes()
    return bytes(path_or_fileobj.read())  # type: ignore[attr-defined]


def test_trainer_model_card_is_the_lmforge_card(aksis_dir: Path, tiny_aksis, aksis_tokenizer) -> None:
    from lmforge.training import LmforgeTrainingArguments
    from lmforge.training.trainer import LmforgeTrainer

    args = LmforgeTrainingArguments(
        output_dir=str(aksis_dir), report_to="none", use_cpu=True, hub_model_id="someone/aksis-tiny"
    )
    trainer = LmforgeTrainer(model=tiny_aksis, args=args, processing_class=aksis_tokenizer)
    trainer.create_model_card(tags=["shakespeare"])  # what push_to_hub calls right before uploading output_dir
    card = ModelCard.load(aksis_dir / "README.md")
    meta = card.data.to_dict()
    assert "shakespeare" in meta["tags"] and "lmforge" in meta["tags"]
    assert "perplexity" in metric_values(meta)
    assert 'pipeline("text-generation", model="someone/aksis-tiny"' in card.text
    assert card.text == render_model_card(aksis_dir, repo_id="someone/aksis-tiny", tags=["shakespeare"]).text


def test_recipe_with_push_to_hub_fails_before_training_when_offline(tmp_path: Path, tiny_text_file: Path) -> None:
    from lmforge.training import parse_recipe, run_training

    recipe = {
        "model_type": "aksis",
        "train_file": str(tiny_text_file),
        "output_dir": str(tmp_path / "run"),
        "push_to_hub": True,
        "hub_model_id": "someone/aksis-tiny",
        "report_to": "none",
        "use_cpu": True,
    }
    with pytest.raises(LmforgeError, match="offline mode is on"):
        run_training(*parse_recipe(recipe))
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_recipe_with_push_to_hub_pushes_once_at_the_end_with_the_card_and_no_pickle(
    tmp_path: Path, tiny_text_file: Path, monkeypatch
) -> None:
    """push_to_hub: true: the Trainer never uploads (no repository at start, nothing per checkpoint); the run makes
    one commit at the end, with the lmforge card, without checkpoints or pickles. HfApi is stubbed."""
    from huggingface_hub import HfApi

    from lmforge.training import parse_recipe, run_training

    calls: list[tuple[str, object]] = []

    def record(name: str):
        return lambda self, *args, **kwargs: calls.append((name, (args, kwargs)))

    def create_commit(self, repo_id, operations, **kwargs):
        files = {op.path_in_repo: op.path_or_fileobj for op in operations}
        calls.append(("create_commit", (repo_id, files)))

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(push_module.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(HfApi, "whoami", lambda self, token=None, **kwargs: {"name": "someone"})
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: calls.append(("create_repo", repo_id)))
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    for name in ("upload_folder", "upload_file", "create_branch"):
        monkeypatch.setattr(HfApi, name, record(name))

    recipe = {
        "model_type": "aksis",
        "tokenizer_vocab_size": 200,
        "config_overrides": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "max_position_embeddings": 64,
        },
        "train_file": str(tiny_text_file),
        "block_size": 32,
        "output_dir": str(tmp_path / "aksis-pushed"),
        "max_steps": 4,
        "save_strategy": "steps",
        "save_steps": 2,  # two checkpoints, which the default hub_strategy (every_save) would each upload
        "push_to_hub": True,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    run_training(*parse_recipe(recipe))

    assert [name for name, _ in calls] == ["create_repo", "create_commit"], calls
    repo_id, files = calls[1][1]
    assert repo_id == "someone/aksis-pushed"  # hub_model_id defaults to <user>/<output_dir name>
    out = tmp_path / "aksis-pushed"
    assert (out / "checkpoint-2").is_dir()  # the checkpoints exist, and stay home
    # pushed at the end: the final weights and the state after the last step, as the folder holds them now
    assert content(files["model.safetensors"]) == (out / "model.safetensors").read_bytes()
    assert json.loads(content(files["trainer_state.json"]))["global_step"] == 4
    assert content(files["eval_results.json"]) == (out / "eval_results.json").read_bytes()
    assert not any(path.startswith("checkpoint-") for path in files)
    assert not any(path.endswith((".bin", ".pt", ".pkl", ".pickle")) for path in files)
    assert "training_args.json" not in files and {"model.safetensors", "config.json", "recipe.yaml"} <= set(files)
    card = ModelCard(content(files["README.md"]).decode("utf-8"))
    assert "lmforge" in card.data.to_dict()["tags"] and "someone/aksis-pushed" in card.text
    assert yaml.safe_load((tmp_path / "aksis-pushed" / "recipe.yaml").read_text())["push_to_hub"] is True

    with pytest.raises(LmforgeError, match="hub_strategy every_save: lmforge pushes once"):
        run_training(*parse_recipe({**recipe, "hub_strategy": "every_save"}))
    with pytest.raises(LmforgeError, match="push_to_hub with a peft: section"):
        run_training(*parse_recipe({**recipe, "peft": {"r": 2}}))
    assert len(calls) == 2
