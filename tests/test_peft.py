"""LoRA (PEFT) on every lmforge architecture, the routed mixture of adapters, `lmforge finetune` and the forgetting study.

Every test trains with the real Trainer, saves and loads with PEFT's own functions, on tiny randomly initialised models.
"""

import json
import math
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from datasets import Dataset
from peft import (
    AutoPeftModelForCausalLM,
    AutoPeftModelForSeq2SeqLM,
    LoraConfig,
    PeftModel,
    get_peft_model,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BertConfig,
    GPT2Config,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

import lmforge
from lmforge import LmforgeError
from lmforge.adapters import LORA_TARGET_MODULES, PEFT_TASK_TYPES, apply_peft, count_parameters, lora_config
from lmforge.cli.main import main as lmforge_main
from lmforge.data.squad import load_squad
from lmforge.loading import load_adapter_model
from lmforge.models import (
    AELLMConfig,
    AELLMForConditionalGeneration,
    AksisConfig,
    AksisForCausalLM,
    CharTransformerConfig,
    CharTransformerForCausalLM,
    LatentReasonerConfig,
    LatentReasonerForConditionalGeneration,
)
from lmforge.studies.forgetting import QuestionTask, evaluate_loss, load_study, parse_study
from lmforge.studies.routing import AdapterRouter, RoutedAdapterModel, bag_of_tokens, router_features

from .conftest import REPO_ROOT, TINY_AKSIS, python_without_lmforge
from .saved_models import oracle_decode

VOCAB = 60
ARCHITECTURES = ["aksis", "char_transformer", "ae_llm", "latent_reasoner"]
TINY_AE_LLM_STUDY = {
    "embedding_size": 16,
    "hidden_size": 32,
    "latent_size": 32,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
    "memory_slots": 8,
    "hyper_adapter_size": 16,
}


def tiny_model(model_type: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if model_type == "aksis":
        return AksisForCausalLM(AksisConfig(vocab_size=VOCAB, **TINY_AKSIS, hidden_dropout=0.0, attention_dropout=0.0))
    if model_type == "char_transformer":
        config = CharTransformerConfig(vocab_size=VOCAB, **TINY_AKSIS, hidden_dropout=0.0, attention_dropout=0.0)
        return CharTransformerForCausalLM(config)
    if model_type == "ae_llm":
        config = AELLMConfig(
            vocab_size=VOCAB,
            embedding_size=16,
            hidden_size=24,
            latent_size=20,
            intermediate_size=32,
            max_position_embeddings=32,
            memory_slots=8,
            hyper_adapter_size=16,
            dropout=0.0,
            teacher_forcing_ratio=1.0,
        )
        return AELLMForConditionalGeneration(config)
    encoder = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    decoder = GPT2Config(
        vocab_size=VOCAB,
        n_embd=48,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config = LatentReasonerConfig(
        encoder=encoder,
        decoder=decoder,
        idea_size=16,
        compression_hidden_size=24,
        middle_hidden_size=20,
        num_prefix_tokens=3,
        dropout=0.0,
    )
    return LatentReasonerForConditionalGeneration(config)


def toy_rows(n: int = 32, seq_len: int = 12, low: int = 4, high: int = VOCAB, seed: int = 0) -> dict[str, list]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, high, (n, seq_len), generator=generator)
    return {"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(), "labels": ids.tolist()}


def batch() -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in toy_rows(n=3, seed=7).items()}


def logits(model: torch.nn.Module) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch()).logits


def train(model: torch.nn.Module, rows: dict[str, list], out: Path, steps: int = 4, lr: float = 1e-2) -> None:
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=lr,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
    )
    Trainer(model=model, args=args, train_dataset=Dataset.from_dict(rows), data_collator=default_data_collator).train()


@pytest.fixture(scope="module", params=ARCHITECTURES)
def lora_run(request, tmp_path_factory) -> dict:
    """Per architecture: a saved base, LoRA with the default targets trained a few steps, its adapter saved."""
    model_type = request.param
    tmp = tmp_path_factory.mktemp(model_type)
    tiny_model(model_type).save_pretrained(tmp / "base")
    auto = AutoModelForCausalLM if PEFT_TASK_TYPES[model_type] == "CAUSAL_LM" else AutoModelForSeq2SeqLM
    base = auto.from_pretrained(tmp / "base")
    base_logits = logits(base)
    before = {name: p.detach().clone() for name, p in base.named_parameters()}
    peft_model = get_peft_model(base, LoraConfig(task_type=PEFT_TASK_TYPES[model_type]))  # no target_modules
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    train(peft_model, toy_rows(), tmp / "trainer")
    peft_model.save_pretrained(tmp / "adapter")
    return {
        "model_type": model_type,
        "tmp": tmp,
        "auto": auto,
        "model": peft_model,
        "trainable": trainable,
        "before": before,
        "base_logits": base_logits,
        "logits": logits(peft_model),
    }


def test_default_targets_registered_for_every_architecture():
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping

    assert set(LORA_TARGET_MODULES) == set(PEFT_TASK_TYPES) == set(lmforge.models.MODEL_TYPES)
    for model_type, targets in LORA_TARGET_MODULES.items():
        assert mapping[model_type] == targets


def test_study_names_moved_out_of_the_library_keep_deprecated_aliases():
    import lmforge.adapters
    import lmforge.studies.forgetting
    import lmforge.training.forgetting

    for old, new in (
        (lambda: lmforge.adapters.AdapterRouter, AdapterRouter),
        (lambda: lmforge.adapters.RoutedAdapterModel, RoutedAdapterModel),
        (lambda: lmforge.training.forgetting.run_study, lmforge.studies.forgetting.run_study),
    ):
        with pytest.warns(FutureWarning, match="deprecated"):
            assert old() is new


def test_import_lmforge_leaves_peft_alone_and_peft_still_gets_the_defaults(tmp_path):
    """`import lmforge` does not import peft; a user's `import peft` afterwards still finds lmforge's defaults, and so
    does LoRA through lmforge (apply_peft) in a process that never imported peft before."""
    code = textwrap.dedent(
        """
        import sys
        import lmforge
        assert "peft" not in sys.modules and "torch" not in sys.modules and "transformers" not in sys.modules
        from peft import LoraConfig, get_peft_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping
        assert mapping["aksis"] == ["qkv_proj", "o_proj", "up_proj", "down_proj"], mapping.get("aksis")
        from lmforge.models import AksisConfig, AksisForCausalLM
        model = AksisForCausalLM(AksisConfig(vocab_size=40, hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16))
        peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM"))
        assert sorted(peft_model.peft_config["default"].target_modules) == ["down_proj", "o_proj", "qkv_proj", "up_proj"]
        print("ok")
        """
    )
    result = python_in_fresh_process(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    code = textwrap.dedent(
        """
        import sys
        import lmforge
        from lmforge.models import AksisConfig, AksisForCausalLM
        assert "peft" not in sys.modules
        from lmforge.adapters import apply_peft
        assert "peft" not in sys.modules
        model = AksisForCausalLM(AksisConfig(vocab_size=40, hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16))
        peft_model = apply_peft(model, {"r": 2})
        assert sorted(peft_model.peft_config["default"].target_modules) == ["down_proj", "o_proj", "qkv_proj", "up_proj"]
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping
        assert "aksis" in mapping
        print("ok")
        """
    )
    result = python_in_fresh_process(code, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def python_in_fresh_process(code: str, cwd: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_lora_trains_only_the_adapter(lora_run):
    model = lora_run["model"]
    assert lora_run["trainable"], "LoRA found no target module"
    lora_names = (".lora_A.", ".lora_B.", ".lora_embedding_A.", ".lora_embedding_B.")
    assert all(any(part in name for part in lora_names) for name in lora_run["trainable"])
    after = dict(model.get_base_model().named_parameters())
    changed = {
        name
        for name, p in after.items()
        if name in lora_run["before"] and not torch.equal(p, lora_run["before"][name])
    }
    assert not changed, f"base weights changed: {sorted(changed)[:5]}"
    lora_b = [p for name, p in model.named_parameters() if ".lora_B." in name]
    assert any(p.abs().sum() > 0 for p in lora_b), "the adapter did not train"
    assert not torch.allclose(lora_run["logits"], lora_run["base_logits"], atol=1e-6)
    if lora_run["model_type"] == "ae_llm":
        # LoRA has no GRU layer (the GRUs are the `layers` of the encoder and decoder): Linear targets only
        assert not any(".layers." in name for name in lora_run["trainable"])
        assert any(".model.encoder.to_latent." in name for name in lora_run["trainable"])
        # and the token embedding, without which an adapter learns few new answers (see the model's SPEC)
        assert any(".model.encoder.embed_tokens.lora_embedding_A." in name for name in lora_run["trainable"])
    if lora_run["model_type"] == "latent_reasoner":
        assert not any(".model.encoder." in name or "lm_head" in name for name in lora_run["trainable"])
        assert any(".model.decoder." in name for name in lora_run["trainable"])
        assert any(".model.compression." in name for name in lora_run["trainable"])


def test_adapter_is_only_safetensors(lora_run):
    files = {p.name for p in (lora_run["tmp"] / "adapter").iterdir()}
    assert "adapter_model.safetensors" in files and "adapter_config.json" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))}
    with safe_open(str(lora_run["tmp"] / "adapter" / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    # the adapter, not base weights; but an adapter with LoRA on the token embedding (AE-LLM's) also carries that
    # embedding, as PEFT saves it by default for such adapters (save_embedding_layers="auto")
    base_weights = [k for k in keys if "lora_" not in k]
    expected = (
        ["base_model.model.model.encoder.embed_tokens.base_layer.weight"] if lora_run["model_type"] == "ae_llm" else []
    )
    assert keys and base_weights == expected, keys


def test_adapter_round_trip_gives_identical_logits(lora_run):
    tmp, auto = lora_run["tmp"], lora_run["auto"]
    reloaded = PeftModel.from_pretrained(auto.from_pretrained(tmp / "base"), tmp / "adapter")
    torch.testing.assert_close(logits(reloaded), lora_run["logits"], rtol=0, atol=0)
    auto_peft = AutoPeftModelForCausalLM if auto is AutoModelForCausalLM else AutoPeftModelForSeq2SeqLM
    loaded = auto_peft.from_pretrained(tmp / "adapter")  # the base comes from the adapter config's saved path
    torch.testing.assert_close(logits(loaded), lora_run["logits"], rtol=0, atol=0)


def test_merge_and_unload_gives_the_same_logits(lora_run):
    tmp, auto = lora_run["tmp"], lora_run["auto"]
    merged = PeftModel.from_pretrained(auto.from_pretrained(tmp / "base"), tmp / "adapter").merge_and_unload()
    assert not isinstance(merged, PeftModel)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), lora_run["logits"], rtol=1e-4, atol=1e-5)


def test_lora_config_from_a_recipe_section():
    config = lora_config("aksis", {"r": 4, "lora_alpha": 8, "lora_dropout": 0.1})
    assert (config.r, config.lora_alpha, config.task_type) == (4, 8, "CAUSAL_LM")
    assert lora_config("ae_llm", "{r: 2}").task_type == "SEQ_2_SEQ_LM"
    assert lora_config("aksis", {"target_modules": ["qkv_proj"]}).target_modules == {"qkv_proj"}
    with pytest.raises(LmforgeError, match="unknown key 'rank'"):
        lora_config("aksis", {"rank": 4})
    with pytest.raises(LmforgeError, match="no LoRA defaults"):
        lora_config("gpt5", {})
    with pytest.raises(LmforgeError, match="peft must be a mapping"):
        lora_config("aksis", "[1, 2]")
    with pytest.raises(LmforgeError, match="peft:"):
        apply_peft(tiny_model("aksis"), {"target_modules": ["no_such_module"]})


# --------------------------------------------------------------------------------------------------------------------
# The routed mixture of adapters


def test_router_sends_each_task_to_its_adapter(tmp_path, aksis_tokenizer):
    """Two toy tasks (tokens from two disjoint ranges), one adapter trained on each, a router trained on both."""
    tasks = {"low": (4, 30), "high": (30, VOCAB)}
    base = tiny_model("aksis")
    peft_model = None
    for name, (low, high) in tasks.items():
        config = LoraConfig(task_type="CAUSAL_LM", r=4)
        if peft_model is None:
            peft_model = get_peft_model(base, config, adapter_name=name)
        else:
            peft_model.add_adapter(name, config)
        peft_model.set_adapter(name)
        train(peft_model, toy_rows(low=low, high=high, seed=1), tmp_path / name, steps=8, lr=3e-2)
    assert peft_model is not None
    router_inputs = {
        name: Dataset.from_dict(toy_rows(n=64, low=low, high=high, seed=2)) for name, (low, high) in tasks.items()
    }
    args = TrainingArguments(
        output_dir=str(tmp_path / "router"),
        max_steps=40,
        learning_rate=5e-2,
        per_device_train_batch_size=16,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        logging_strategy="no",
    )
    router, seconds = AdapterRouter.fit(peft_model, router_inputs, args)
    assert seconds >= 0 and router.adapter_names == ["low", "high"]
    routed = RoutedAdapterModel(peft_model, router).eval()

    low = torch.tensor(toy_rows(n=4, low=4, high=30, seed=3)["input_ids"])
    high = torch.tensor(toy_rows(n=4, low=30, high=VOCAB, seed=3)["input_ids"])
    mixed = torch.cat([low[:2], high[:2]])
    assert routed.route(low) == ["low"] * 4
    assert routed.route(high) == ["high"] * 4
    assert routed.route(mixed) == ["low", "low", "high", "high"]

    # Each row of a mixed batch gives exactly the logits of its own adapter alone.
    out = routed(input_ids=mixed, labels=mixed)
    assert out.loss is not None
    for rows, name in ((slice(0, 2), "low"), (slice(2, 4), "high")):
        peft_model.set_adapter(name)
        with torch.no_grad():
            alone = peft_model(input_ids=mixed[rows]).logits
        torch.testing.assert_close(out.logits[rows], alone, rtol=1e-5, atol=1e-5)
    # The Trainer scores it with its own loss, as it scores a plain model (no renormalisation by the Trainer).
    eval_args = TrainingArguments(output_dir=str(tmp_path / "eval"), report_to="none", use_cpu=True, disable_tqdm=True)
    assert evaluate_loss(routed, aksis_tokenizer, Dataset.from_dict({"input_ids": mixed.tolist()}), eval_args) == (
        pytest.approx(float(out.loss), rel=1e-5)
    )
    prompts = mixed[:, :4]
    generated = routed.generate(input_ids=prompts, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert generated.shape == (4, 7) and routed.route(prompts) == ["low", "low", "high", "high"]
    # Each row is what its own adapter alone generates (and the other adapter would write something else).
    alone = {}
    for name in tasks:
        peft_model.set_adapter(name)
        alone[name] = peft_model.generate(input_ids=prompts, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert torch.equal(generated, torch.cat([alone["low"][:2], alone["high"][2:]]))
    assert not torch.equal(alone["low"][2:], alone["high"][2:])

    # Saved (safetensors: adapters and router) and loaded on a fresh base, it routes and scores the same.
    routed.save_pretrained(tmp_path / "routed")
    assert (tmp_path / "routed" / "router.safetensors").is_file()
    assert (tmp_path / "routed" / "high" / "adapter_model.safetensors").is_file()
    reloaded = RoutedAdapterModel.from_pretrained(tiny_model("aksis"), tmp_path / "routed")
    assert reloaded.route(mixed) == ["low", "low", "high", "high"]
    torch.testing.assert_close(reloaded(input_ids=mixed).logits, out.logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(LmforgeError, match="no saved router"):
        AdapterRouter.from_pretrained(tmp_path)
    with pytest.raises(LmforgeError, match="at least two adapters"):
        AdapterRouter(8, ["one"])
    with pytest.raises(LmforgeError, match="does not have"):
        RoutedAdapterModel(peft_model, AdapterRouter(TINY_AKSIS["hidden_size"], ["low", "missing"]))


def test_router_reads_the_base_embeddings_whatever_adapter_is_active():
    """An adapter may change the token embeddings (LoRA on them here): the router's features are the base model's, so
    a row is routed the same way whichever adapter ran last."""
    config = {"r": 4, "target_modules": ["embed_tokens", "qkv_proj"], "init_lora_weights": False}
    peft_model = get_peft_model(tiny_model("aksis"), LoraConfig(task_type="CAUSAL_LM", **config), adapter_name="one")
    peft_model.add_adapter("two", LoraConfig(task_type="CAUSAL_LM", **config))
    ids = torch.tensor(toy_rows(n=4, seed=5)["input_ids"])
    base_features = router_features(tiny_model("aksis"), ids, None, VOCAB)
    for name in ("one", "two"):
        peft_model.set_adapter(name)
        with torch.no_grad():
            assert not torch.allclose(
                peft_model.get_input_embeddings()(ids), tiny_model("aksis").model.embed_tokens(ids)
            )
        torch.testing.assert_close(router_features(peft_model, ids, None, VOCAB), base_features)
    # the bag of tokens: the share of each token among the real ones
    bag = bag_of_tokens(torch.tensor([[5, 5, 7, 0]]), torch.tensor([[1, 1, 1, 0]]), 10)
    torch.testing.assert_close(bag[0, [0, 5, 7]], torch.tensor([0.0, 2 / 3, 1 / 3]))


# --------------------------------------------------------------------------------------------------------------------
# lmforge finetune, and loading an adapter folder like a model folder


def finetune_recipe(tmp_path: Path, base: Path, text_file: Path, **extra: object) -> Path:
    recipe = {
        "model_name_or_path": str(base),
        "train_file": str(text_file),
        "block_size": 32,
        "peft": {"r": 4, "lora_alpha": 8},
        "max_steps": 4,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-2,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 2,
        "use_cpu": True,
        "disable_tqdm": True,
        **extra,
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_lmforge_finetune_trains_and_saves_only_the_adapter(tmp_path, trained_aksis_dir, tiny_text_file, capsys):
    recipe = finetune_recipe(tmp_path, trained_aksis_dir, tiny_text_file)
    out = tmp_path / "adapter"
    assert lmforge_main(["finetune", str(recipe), "--output-dir", str(out), "--peft.r", "2"]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "recipe.yaml"} <= files
    assert "model.safetensors" not in files
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 2 and adapter_config["base_model_name_or_path"] == str(trained_aksis_dir)
    assert yaml.safe_load((out / "recipe.yaml").read_text())["model_type"] == "aksis"  # taken from the base

    model, tokenizer = load_adapter_model(out)
    assert isinstance(model, PeftModel)
    base = AutoModelForCausalLM.from_pretrained(trained_aksis_dir)
    ids = tokenizer("First Citizen:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids).logits, base(input_ids=ids).logits)
    assert count_parameters(model)[0] == 0  # loaded for inference: nothing trainable
    capsys.readouterr()
    assert lmforge_main(["generate", "--model-path", str(out), "--prompt", "First", "--max-new-tokens", "5"]) == 0
    ids = tokenizer("First", add_special_tokens=False)["input_ids"]
    assert capsys.readouterr().out == "First" + oracle_decode(model.eval(), tokenizer, ids, 5, strip=False) + "\n"


def test_lmforge_finetune_without_peft_trains_every_weight(tmp_path, tiny_model_dirs, tiny_text_file, capsys):
    base = tiny_model_dirs["aksis"]
    recipe_path = finetune_recipe(tmp_path, base, tiny_text_file)
    recipe = yaml.safe_load(recipe_path.read_text())
    del recipe["peft"]
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "full"
    assert lmforge_main(["finetune", str(recipe_path), "--output-dir", str(out)]) == 0
    assert "No peft section in the recipe: full fine-tuning (every weight trains)" in capsys.readouterr().err
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= files and "adapter_config.json" not in files
    before, after = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(after) == set(before)
    assert {name for name in before if not torch.equal(before[name], after[name])} == set(before)


def test_lmforge_finetune_errors_are_one_line(tmp_path, trained_aksis_dir, tiny_text_file, capsys):
    no_base = finetune_recipe(tmp_path, trained_aksis_dir, tiny_text_file)
    recipe = yaml.safe_load(no_base.read_text())
    del recipe["model_name_or_path"]
    no_base.write_text(yaml.safe_dump(recipe))
    assert lmforge_main(["finetune", str(no_base)]) == 1
    assert "set model_name_or_path" in capsys.readouterr().err
    bad = finetune_recipe(tmp_path, trained_aksis_dir, tiny_text_file, peft={"rank": 4})
    assert lmforge_main(["finetune", str(bad), "--output-dir", str(tmp_path / "never")]) == 1
    assert "unknown key 'rank'" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # nothing written before the error
    wrong_type = finetune_recipe(tmp_path, trained_aksis_dir, tiny_text_file, model_type="char_transformer")
    assert lmforge_main(["finetune", str(wrong_type)]) == 1
    assert "does not match the saved model's (aksis)" in capsys.readouterr().err
    assert lmforge_main(["finetune"]) == 1
    assert "give a recipe" in capsys.readouterr().err

    folder = tmp_path / "orphan"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "missing/base"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(LmforgeError, match="not a folder here"):
        load_adapter_model(folder)
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(LmforgeError, match="safetensors only"):
        load_adapter_model(folder)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(LmforgeError, match="not valid JSON"):
        load_adapter_model(folder)


# --------------------------------------------------------------------------------------------------------------------
# The forgetting study


@pytest.fixture(scope="module")
def corpus_b(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus_b") / "b.txt"
    path.write_text("The history of the county is long , and its old roads @-@ built in 1850 @-@ remain .\n" * 60)
    return path


def test_forgetting_study_end_to_end(tmp_path, trained_aksis_dir, corpus_b):
    recipe = {
        "output_dir": str(tmp_path / "study"),
        "base_model_path": str(trained_aksis_dir),  # corpus A's keys come from its recipe.yaml
        "finetune": {
            "block_size": 32,
            "max_steps": 3,
            "per_device_train_batch_size": 8,
            "max_eval_samples": 8,
            "eval_strategy": "no",
            "save_strategy": "no",
            "use_cpu": True,
            "disable_tqdm": True,
        },
        "methods": {
            "full": {"learning_rate": 1e-3},
            "lora-r4": {"learning_rate": 1e-2, "peft": {"r": 4}},
            "routed": {"learning_rate": 1e-2, "peft": {"r": 4}, "router": {"max_steps": 5}},
        },
        "pairings": [{"name": "toy", "train_file": str(corpus_b)}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    study = load_study(path, ["--finetune.max_steps", "2"])
    assert study.finetune["max_steps"] == 2 and study.corpus_a["train_file"]  # A's keys from the base's recipe.yaml
    out = tmp_path / "elsewhere"
    assert lmforge_main(["forgetting", str(path), "--output-dir", str(out), "--finetune.max_steps", "2"]) == 0

    results = json.loads((out / "forgetting.json").read_text())
    assert [r["method"] for r in results] == ["full", "lora-r4", "routed"]
    full, lora, routed = results
    assert lora["trainable_parameters"] < routed["trainable_parameters"] < full["trainable_parameters"]
    assert full["trainable_parameters"] == full["total_parameters"]
    for key in ("routing_accuracy", "routing_accuracy_a", "routing_accuracy_b"):
        assert 0 <= routed[key] <= 1 and full[key] is None and lora[key] is None
    assert all(r["metric"] == "loss" and r["a_base_score"] == full["a_base_score"] for r in results)
    assert all(r["train_seconds"] >= 0 for r in results)
    # the metric is the mean token loss (the table shows its perplexity): A retained = perplexity before / after
    assert full["a_retained"] == pytest.approx(math.exp(full["a_base_score"] - full["a_score"]))
    # the share of full fine-tuning's gain on B (the drop of B's loss) each method reaches: full's own is exactly 1
    full_gain = full["b_base_score"] - full["b_score"]
    assert full_gain > 0 and full["share_of_full_b_gain"] == 1.0
    for result in (lora, routed):
        gain = result["b_base_score"] - result["b_score"]
        assert result["share_of_full_b_gain"] == pytest.approx(gain / full_gain)
    # over both corpora's held-out inputs (max_eval_samples = 8 blocks of each): the mean of A's and B's accuracies
    both = (routed["routing_accuracy_a"] + routed["routing_accuracy_b"]) / 2
    assert routed["routing_accuracy"] == pytest.approx(both) and routed["routing_accuracy_a"] > 0
    assert (out / "toy" / "routed" / "routed" / "router.safetensors").is_file()
    assert (out / "routed-corpus_a" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "study").exists()  # --output-dir wins over the recipe's output_dir
    table = (out / "forgetting_table.md").read_text()
    assert sum(line.startswith("| ") for line in table.splitlines()) == 2 + 3 and "lora-r4" in table
    section = (out / "forgetting.md").read_text()
    assert section.startswith("## Catastrophic forgetting") and "forgetting.png" in section and "routed" in section
    assert (out / "forgetting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Four articles of short question -> answer pairs, for the AE-LLM study: A learns the first, B the third; the second and
# fourth are their held-out articles, and the last questions of the first and third are held-out router inputs.
QA_ARTICLES = {
    "Animals": [
        ("which animal barks", "the dog"),
        ("which animal purrs", "the cat"),
        ("which animal neighs", "the horse"),
        ("which animal moos", "the cow"),
        ("which animal quacks", "the duck"),
        ("which animal hisses", "the snake"),
    ],
    "Plants": [("what do plants need", "light"), ("what colour is grass", "green")],
    "Cities": [
        ("what is the capital of france", "paris"),
        ("what is the capital of italy", "rome"),
        ("what is the capital of spain", "madrid"),
        ("what is the capital of japan", "tokyo"),
        ("what is the capital of egypt", "cairo"),
        ("what is the capital of peru", "lima"),
    ],
    "Rivers": [("which river flows through cairo", "the nile"), ("which river flows through paris", "the seine")],
}


@pytest.fixture(scope="module")
def qa_corpus(tmp_path_factory) -> Path:
    data = []
    for title, pairs in QA_ARTICLES.items():
        context = " ".join(f"{answer} is the answer." for _, answer in pairs)
        qas = [
            {"id": f"{title}-{i}", "question": f"{question}?", "answers": [{"text": answer, "answer_start": -1}]}
            for i, (question, answer) in enumerate(pairs)
        ]
        data.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    path = tmp_path_factory.mktemp("qa_corpus") / "qa.json"
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def test_forgetting_study_on_a_question_answering_model(tmp_path, qa_corpus):
    """AE-LLM: base trained in two phases on A, then full fine-tuning, LoRA and a routed mixture (LoRA plus a trained
    copy of the decoder, modules_to_save) on B; the metric is exact match on the learned questions."""
    tiny = {**TINY_AE_LLM_STUDY, "teacher_forcing_ratio": 1.0, "dropout": 0.0}
    corpus = {"train_file": str(qa_corpus), "qa_input": "question"}
    phase = {
        "model_type": "ae_llm",
        **corpus,
        "articles": ["Animals", "Plants"],
        "validation_articles": ["Plants"],
        "max_train_samples": 4,
        "max_source_length": 32,
        "max_target_length": 8,
        "per_device_train_batch_size": 4,
        "learning_rate": 2e-2,
        "eval_strategy": "no",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    recipe = {
        "output_dir": str(tmp_path / "study"),
        "base": [
            {
                **phase,
                "training_phase": "autoencoder",
                "tokenizer_vocab_size": 300,
                "config_overrides": tiny,
                "max_steps": 60,
            },
            {**phase, "training_phase": "finetune", "max_steps": 150},
        ],
        "finetune": {
            "max_source_length": 32,
            "max_target_length": 8,
            "max_steps": 300,
            "per_device_train_batch_size": 4,
            "eval_strategy": "no",
            "save_strategy": "no",
            "use_cpu": True,
            "disable_tqdm": True,
        },
        "methods": {
            "full": {"learning_rate": 2e-2},
            "lora-r4": {"learning_rate": 2e-2, "peft": {"r": 4}},
            "routed": {
                "learning_rate": 2e-2,
                "peft": {"r": 4, "modules_to_save": ["model.decoder", "lm_head"]},
                "router": {"max_steps": 30, "learning_rate": 5e-2},
            },
        },
        "pairings": [
            {
                "name": "cities",
                **corpus,
                "articles": ["Cities", "Rivers"],
                "validation_articles": ["Rivers"],
                "max_train_samples": 4,
            }
        ],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    study = load_study(path)
    assert study.model_type == "ae_llm" and study.task == "question_answering"
    assert study.corpus_a["articles"] == ["Animals", "Plants"] and study.corpus_a["max_train_samples"] == 4
    assert lmforge_main(["forgetting", str(path)]) == 0

    out = tmp_path / "study"
    assert (out / "base-1-autoencoder" / "model.safetensors").is_file()
    assert (out / "base-2-finetune" / "model.safetensors").is_file()
    results = json.loads((out / "forgetting.json").read_text())
    assert [r["method"] for r in results] == ["full", "lora-r4", "routed"]
    full, lora, routed = results
    for result in results:
        assert result["metric"] == "exact_match"
        for key in ("a_score", "b_score", "a_base_score", "b_base_score", "a_f1", "b_f1", "a_base_f1"):
            value = result[key] if key in result else result["extra"][key]
            assert 0 <= value <= 100, (key, value)
    assert lora["trainable_parameters"] < routed["trainable_parameters"] < full["trainable_parameters"]
    # The base knows A's 4 pairs and none of B's. Full fine-tuning learns B and forgets A; the routed mixture keeps A
    # (the router sends A's questions to A's adapter) and learns B with its own copy of the decoder.
    assert full["a_base_score"] == 100.0 and full["b_base_score"] == 0.0
    assert full["b_score"] >= 50.0 and full["a_score"] <= 50.0
    assert routed["a_retained"] >= 0.75 and routed["b_score"] >= 50.0
    # the held-out router inputs are the 2 unlearned questions of each corpus's article: all sent the right way
    assert routed["routing_accuracy_a"] == routed["routing_accuracy_b"] == 1.0
    assert (out / "cities" / "routed" / "routed" / "cities" / "adapter_model.safetensors").is_file()
    table = (out / "forgetting_table.md").read_text()
    assert "A EM after" in table and "A / B F1 after" in table and "router right on held-out A / B" in table
    section = (out / "forgetting.md").read_text()
    assert "exact match" in section and "learned" in section


def test_question_task_holds_out_the_validation_articles_when_every_pair_was_learned(tmp_path, qa_corpus):
    """A corpus whose max_train_samples covers all its questions leaves none of its own for the router's held-out
    inputs: they come from its validation articles (this used to fail on an empty row range)."""
    from .saved_models import golden_copy

    base = golden_copy("ae_llm", tmp_path / "base")
    corpus = {"train_file": str(qa_corpus), "qa_input": "question", "validation_articles": ["Rivers"]}
    study = parse_study(
        {
            "base_model_path": str(base),
            "base": {**corpus, "articles": ["Animals"], "max_train_samples": 100},
            "methods": {"full": {}},
            "pairings": [{"name": "cities", **corpus, "articles": ["Cities"], "max_train_samples": 4}],
        }
    )
    task = QuestionTask(study, AutoTokenizer.from_pretrained(base))
    learned, held_out = task.pairs(study.corpus_a)
    assert learned.num_rows == 6 and set(held_out["title"]) == {"Rivers"}
    learned, held_out = task.pairs(study.pairings[0].data)  # 4 learned: the other 2 of the article are held out
    assert learned.num_rows == 4 and held_out.num_rows == 2 and set(held_out["title"]) == {"Cities"}
    assert task.held_out_inputs(study.corpus_a).num_rows == 2


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"colour": 1}, "unknown key 'colour'"),
        ({"base_model_path": None, "base": None}, "give base"),
        ({"methods": {}}, "methods is empty"),
        ({"methods": {"x": {"router": {}}}}, "needs a peft: section"),
        ({"methods": {"x": {"learning_rat": 1}}}, "unknown key 'learning_rat'"),
        ({"methods": {"lora": {"peft": {"rank": 8}}}}, r"methods\.lora\.peft: unknown key 'rank'"),
        ({"pairings": []}, "pairings must be a list"),
        ({"pairings": [{"train_file": "b.txt"}]}, "needs a name"),
        ({"pairings": [{"name": "b", "train_file": "missing.txt"}]}, "train_file not found"),
        ({"pairings": [{"name": "b", "colour": 1}]}, "unknown key 'colour'"),
        ({"pairings": [{"name": "b"}]}, "give corpus B"),
        ({"finetune": {"train_file": "b.txt"}}, "finetune must not set 'train_file'"),
        ({"base": {"model_type": "latent_reasoner"}, "base_model_path": None}, "or a question-answering model"),
        ({"methods": {"x": {"peft": {"r": 2}, "router": {"features": "words"}}}}, "router.features must be"),
        ({"base": []}, "base is an empty list"),
    ],
)
def test_forgetting_study_recipe_errors(change, words, tmp_path, corpus_b):
    recipe = {
        "base": {"model_type": "aksis"},
        "methods": {"full": {}},
        "pairings": [{"name": "b", "train_file": str(corpus_b)}],
        **change,
    }
    with pytest.raises(LmforgeError, match=words):
        parse_study(recipe)


def test_lmforge_forgetting_command_errors(capsys):
    assert lmforge_main(["forgetting"]) == 1
    assert "give a study recipe" in capsys.readouterr().err
    assert lmforge_main(["forgetting", "no/such/study.yaml"]) == 1
    assert "recipe not found" in capsys.readouterr().err


def test_shipped_forgetting_recipe_parses(shared_data, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # its data paths are relative to the repository root
    study = load_study(REPO_ROOT / "recipes" / "aksis" / "forgetting.yaml")
    assert study.model_type == "aksis" and study.corpus_a == {}  # corpus A: the embedded corpus
    assert [p.name for p in study.pairings] == ["wikitext2", "dialogsum"]
    assert {m.kind for m in study.methods} == {"full", "lora", "routed"}
    assert study.pairings[0].data["validation_file"].endswith("wiki.test.tokens")


def test_shipped_ae_llm_forgetting_recipe_parses(shared_data, tmp_path, monkeypatch):
    """recipes/ae_llm/forgetting.yaml on a saved AE-LLM (here the tiny golden one): corpus A is one of the model's
    train articles (the recipe's base keys), corpus B an article of the held-out ones, and every method of the issue
    is there (full, LoRA r4/8/16, routed)."""
    from .saved_models import golden_copy

    monkeypatch.chdir(REPO_ROOT)  # its data paths are relative to the repository root
    base = golden_copy("ae_llm", tmp_path / "base")
    study = load_study(REPO_ROOT / "recipes" / "ae_llm" / "forgetting.yaml", ["--base_model_path", str(base)])
    assert study.model_type == "ae_llm" and study.task == "question_answering"
    assert study.corpus_a["articles"] == ["Chloroplast"] and study.corpus_a["qa_input"] == "question_and_sentence"
    assert [p.name for p in study.pairings] == ["warsaw"] and study.pairings[0].data["articles"] == ["Warsaw"]
    names = [m.name for m in study.methods]
    assert names[:4] == ["full", "lora-r4", "lora-r8", "lora-r16"] and "routed" in names
    assert {m.kind for m in study.methods} == {"full", "lora", "routed"}
    task = QuestionTask(study, AutoTokenizer.from_pretrained(base))
    learned_a, held_a = task.pairs(study.corpus_a)
    learned_b, held_b = task.pairs(study.pairings[0].data)
    assert learned_a.num_rows == learned_b.num_rows == 200 and held_a.num_rows > 50 and held_b.num_rows > 40
    assert set(learned_a["title"]) == set(held_a["title"]) == {"Chloroplast"}
    assert set(learned_b["title"]) == set(held_b["title"]) == {"Warsaw"}
    # Corpus B is an article the pointer recipes hold out (their validation split): the model never saw it.
    pointer = yaml.safe_load((REPO_ROOT / "recipes" / "ae_llm" / "aellm-pointer_finetune.yaml").read_text())
    split = load_squad(
        None, None, study.pairings[0].data["train_file"], None, pointer["validation_split_percentage"], "question"
    )
    assert "Warsaw" in set(split["validation"]["title"]) and "Chloroplast" in set(split["train"]["title"])


def test_shipped_seed_sized_ae_llm_forgetting_recipe_parses(shared_data, tmp_path, monkeypatch):
    """recipes/ae_llm/aellm-seed_forgetting.yaml: corpus A comes from the saved model's recipe (the seed's 500 pairs)."""
    from .saved_models import golden_copy

    monkeypatch.chdir(REPO_ROOT)
    base = golden_copy("ae_llm", tmp_path / "base")
    squad = shared_data / "squad-v1.1" / "dev-v1.1.shared.json"
    corpus_a = {"model_type": "ae_llm", "train_file": str(squad), "qa_input": "question", "max_train_samples": 500}
    (base / "recipe.yaml").write_text(yaml.safe_dump(corpus_a))  # as the seed recipes leave it
    study = load_study(
        REPO_ROOT / "recipes" / "ae_llm" / "aellm-seed_forgetting.yaml", ["--base_model_path", str(base)]
    )
    assert [p.name for p in study.pairings] == ["tesla"] and study.corpus_a["max_train_samples"] == 500
    assert study.pairings[0].data["articles"] == ["Nikola_Tesla"]


def test_adapter_loads_with_remote_code_where_lmforge_is_missing(tmp_path):
    tiny_model("aksis").save_pretrained(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), LoraConfig(task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.normal_(std=0.5)
    model.save_pretrained(tmp_path / "adapter")
    expected = logits(model)
    save_file({"input_ids": batch()["input_ids"]}, str(tmp_path / "ids.safetensors"))
    code = textwrap.dedent(
        f"""
        import torch
        from peft import AutoPeftModelForCausalLM
        from safetensors.torch import load_file, save_file
        model = AutoPeftModelForCausalLM.from_pretrained({str(tmp_path / "adapter")!r}, trust_remote_code=True).eval()
        ids = load_file({str(tmp_path / "ids.safetensors")!r})["input_ids"]
        with torch.no_grad():
            save_file({{"logits": model(input_ids=ids).logits}}, {str(tmp_path / "logits.safetensors")!r})
        """
    )
    result = python_without_lmforge(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(load_file(str(tmp_path / "logits.safetensors"))["logits"], expected, rtol=0, atol=1e-6)
