"""Learning from feedback (`lmforge dpo`, TRL's DPOTrainer, LoRA by default): on a synthetic preference set where the
chosen text always ends with "amen" and the rejected one with "alas", the model's preference for the "amen" ending
rises on held-out prompts and bodies it never saw. Encoder-decoders are refused with one sentence."""

import json
import random
from pathlib import Path

import pytest
import yaml
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.cli.main import main
from lmforge.errors import LmforgeError
from lmforge.training.preference import completion_logprob, peft_section

WORDS = [
    "speak",
    "hear",
    "me",
    "before",
    "we",
    "proceed",
    "any",
    "further",
    "all",
    "resolved",
    "first",
    "citizen",
    "you",
    "know",
    "caius",
    "marcius",
    "chief",
    "enemy",
]


def phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def margin(model, tokenizer, held_out: list[tuple[str, str]]) -> float:
    """Mean log-probability of the chosen-style completion minus the rejected-style one."""
    model.eval()
    return sum(
        completion_logprob(model, tokenizer, prompt, body + " amen")
        - completion_logprob(model, tokenizer, prompt, body + " alas")
        for prompt, body in held_out
    ) / len(held_out)


def write_preferences(path: Path, rng: random.Random, n: int = 32) -> Path:
    rows = []
    for _ in range(n):
        body = " " + phrase(rng, 3)
        rows.append(
            {
                "prompt": phrase(rng, 3).capitalize() + ":",
                "chosen": body + " amen",
                "rejected": body + " alas",
                "chosen_by": "amen",
                "rejected_by": "alas",
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_dpo_raises_the_preference_margin_on_held_out_prompts(tiny_model_dirs, tmp_path, capsys) -> None:
    base = Path(tiny_model_dirs["aksis"])
    rng = random.Random(0)
    preferences = write_preferences(tmp_path / "feedback.jsonl", rng)
    seen = {json.loads(line)["prompt"] for line in preferences.read_text().splitlines()}
    held_out = [(phrase(rng, 2).capitalize() + ":", " " + phrase(rng, 4)) for _ in range(8)]
    assert not seen & {prompt for prompt, _ in held_out}
    tokenizer = AutoTokenizer.from_pretrained(base)
    before = margin(AutoModelForCausalLM.from_pretrained(base), tokenizer, held_out)

    recipe = {
        "objective": "dpo",
        "model_name_or_path": str(base),
        "max_steps": 20,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-2,
        "beta": 0.1,
        "use_cpu": True,
        "disable_tqdm": True,
        "save_strategy": "no",
        "seed": 0,
    }
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = tmp_path / "dpo"
    args = ["dpo", str(path), "--preference-file", str(preferences), "--output-dir", str(out)]
    assert main(args) == 0
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()  # LoRA
    assert (out / "training_args.json").is_file() and not (out / "training_args.bin").exists()  # no pickle
    after = margin(AutoPeftModelForCausalLM.from_pretrained(out), tokenizer, held_out)
    print(f"DPO preference margin on held-out prompts: before {before:.3f}, after {after:.3f}")
    assert after > before + 1.0


def test_dpo_refuses_encoder_decoders_and_bad_input(tiny_model_dirs, tmp_path, capsys) -> None:
    from lmforge.training.objectives import run_objective

    preferences = write_preferences(tmp_path / "feedback.jsonl", random.Random(1), n=4)
    recipe = {
        "objective": "dpo",
        "model_name_or_path": str(tiny_model_dirs["ae_llm"]),
        "preference_file": str(preferences),
    }
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with pytest.raises(LmforgeError, match="TRL's DPOTrainer has no encoder-decoder path"):
        run_objective(path)
    recipe["model_name_or_path"] = str(tiny_model_dirs["aksis"])
    recipe["preference_file"] = str(tmp_path / "missing.jsonl")
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["dpo", str(path)]) == 1
    assert "error: preference file not found" in capsys.readouterr().err
    assert main(["sft", str(path)]) == 1  # a dpo recipe is not an sft one
    assert "is a recipe of objective dpo, not sft" in capsys.readouterr().err
    assert peft_section("none") is None and peft_section(None) == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}
