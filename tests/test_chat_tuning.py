"""Chat tuning (`objective: sft`, TRL's SFTTrainer): the loss is on the assistant's tokens only, DialogSum becomes
user/assistant turns, and `lmforge chat` on the tuned model answers in turn, through the recipe path and with LoRA."""

import io
import json
from pathlib import Path

import pytest
import yaml

from lmforge.errors import LmforgeError
from lmforge.inference import PLAIN_CHAT_TEMPLATE
from lmforge.models.aksis.tokenization_aksis import CHAT_TEMPLATE
from lmforge.training.arguments import ModelArguments
from lmforge.training.chat import (
    TRAINING_TEMPLATES,
    ChatDataArguments,
    ChatSFTConfig,
    build_sft_trainer,
    dialogsum_messages,
    load_chat_data,
)
from lmforge.training.objectives import parse_objective_recipe

CONVERSATIONS = [
    [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "hi, how are you"}],
    [
        {"role": "user", "content": "speak"},
        {"role": "assistant", "content": "speak, speak"},
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "hi, how are you"},
    ],
    [{"role": "user", "content": "who are you"}, {"role": "assistant", "content": "first citizen"}],
]


def write_chat_file(path: Path, repeat: int = 1) -> Path:
    rows = [{"messages": messages} for messages in CONVERSATIONS] * repeat
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sft_recipe(base: Path, tmp_path: Path, **extra) -> dict:
    return {
        "objective": "sft",
        "model_name_or_path": str(base),
        "train_file": str(write_chat_file(tmp_path / "chat.jsonl")),
        "validation_split_percentage": 0,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 3,
        "max_steps": 2,
        "use_cpu": True,
        "disable_tqdm": True,
        "save_strategy": "no",
        **extra,
    }


@pytest.mark.parametrize("template", [CHAT_TEMPLATE, PLAIN_CHAT_TEMPLATE])
def test_training_templates_render_what_chat_renders(template, aksis_tokenizer) -> None:
    """The marked templates change nothing in the text: the tuned model chats with the layout it learned."""
    for messages in CONVERSATIONS:
        for prompt in (False, True):
            texts = [
                aksis_tokenizer.apply_chat_template(
                    messages, chat_template=t, tokenize=False, add_generation_prompt=prompt
                )
                for t in (template, TRAINING_TEMPLATES[template])
            ]
            assert texts[0] == texts[1]


def test_sft_labels_are_the_assistant_tokens_only(tiny_model_dirs, tmp_path) -> None:
    """Labels are -100 exactly on the tokens outside the assistant's turns; the assistant's text and its end-of-turn
    token are trained, its "<s>assistant: " header (the generation prompt) is not."""
    base = tiny_model_dirs["aksis"]
    model_args, data_args, config = parse_objective_recipe(
        sft_recipe(base, tmp_path), (ModelArguments, ChatDataArguments, ChatSFTConfig), "test"
    )
    trainer = build_sft_trainer(model_args, data_args, config)
    tokenizer = trainer.processing_class
    for row in trainer.train_dataset:
        messages = row["messages"]
        batch = trainer.data_collator([row])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        # the trained positions, built turn by turn from the template's own rendering of each prefix
        expected, whole_turns = [], 0
        for index, message in enumerate(messages):
            before = tokenizer.apply_chat_template(messages[:index], tokenize=False) if index else ""
            if message["role"] == "assistant":
                before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
            start = len(tokenizer(before, add_special_tokens=False)["input_ids"])
            turn = tokenizer(message["content"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            if message["role"] == "assistant":
                expected += list(range(start, start + len(turn)))
                whole_turns += start + len(turn) <= len(ids)  # the model's context cuts long conversations
        trained = [position for position, label in enumerate(labels) if label != -100]
        assert trained == [p for p in expected if p < len(ids)]
        assert [labels[p] for p in trained] == [ids[p] for p in trained]
        assert tokenizer.decode([ids[p] for p in trained]).count("</s>") == whole_turns >= 1


def test_dialogsum_turns_and_split(tmp_path) -> None:
    dialogue = "#Person2#: Oh.\n#Person1#: Hello.\n#Person1#: How are you?\n#Person2#: Fine.\n#Person1#: Bye."
    assert dialogsum_messages(dialogue) == [
        {"role": "user", "content": "Hello. How are you?"},
        {"role": "assistant", "content": "Fine."},
    ]
    assert dialogsum_messages("#Person1#: Hi.\n#Person3#: Hey.\n#Person2#: Yo.") is None
    path = tmp_path / "dialogsum.jsonl"
    rows = [{"fname": f"d{i}", "dialogue": f"#Person1#: Question {i}?\n#Person2#: Answer {i}."} for i in range(20)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    data = load_chat_data(ChatDataArguments(dialogsum_file=str(path), validation_split_percentage=10), seed=42)
    assert (data["train"].num_rows, data["validation"].num_rows) == (18, 2)
    train = {m["content"] for row in data["train"]["messages"] for m in row}
    assert not train & {m["content"] for row in data["validation"]["messages"] for m in row}


def test_sft_recipe_errors_are_one_line(tiny_model_dirs, tmp_path) -> None:
    from lmforge.cli.main import main

    recipe = sft_recipe(tiny_model_dirs["aksis"], tmp_path, max_lenght=10)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with pytest.raises(LmforgeError, match="unknown key 'max_lenght' \\(did you mean max_length"):
        from lmforge.training.objectives import run_objective

        run_objective(path)
    assert main(["sft", str(path)]) == 1


@pytest.mark.parametrize("peft", [None, {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0}])
def test_chat_tuned_aksis_answers_in_turn(peft, tiny_model_dirs, tmp_path, monkeypatch, capsys) -> None:
    """`lmforge train` on an sft recipe (the recipe path), then `lmforge chat`: the model answers the user's message
    with the assistant turn it learned and stops at its end-of-turn token, instead of continuing the user's text."""
    from lmforge.cli.main import main

    recipe = sft_recipe(
        tiny_model_dirs["aksis"], tmp_path, max_steps=80, learning_rate=1e-2, lr_scheduler_type="constant"
    )
    write_chat_file(Path(recipe["train_file"]), repeat=4)
    if peft is not None:
        recipe["peft"] = peft
    path = tmp_path / "chat_sft.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["train", str(path)]) == 0
    out = Path(recipe["output_dir"])
    assert (out / ("adapter_model.safetensors" if peft else "model.safetensors")).is_file()
    assert (out / "training_args.json").is_file() and not (out / "training_args.bin").exists()  # no pickle
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("hello there\n/reset\nwho are you\n"))
    assert main(["chat", "--model-path", str(out), "--max-new-tokens", "30"]) == 0
    answers = [
        line.removeprefix("model> ") for line in capsys.readouterr().out.splitlines() if line.startswith("model> ")
    ]
    assert answers == ["hi, how are you", "first citizen"]


@pytest.mark.parametrize(("name", "objective"), [("chat_sft", "sft"), ("dpo", "dpo")])
def test_shipped_objective_recipes_parse(name, objective, tiny_model_dirs) -> None:
    from lmforge.training.chat import ChatDataArguments, ChatSFTConfig
    from lmforge.training.objectives import objective_of
    from lmforge.training.preference import PreferenceDataArguments, PreferenceDPOConfig
    from lmforge.training.recipe import read_recipe

    from .conftest import REPO_ROOT

    path = REPO_ROOT / "recipes" / "aksis" / f"{name}.yaml"
    assert objective_of(path) == objective
    recipe = {**read_recipe(path), "model_name_or_path": str(tiny_model_dirs["aksis"])}
    data, config = (
        (ChatDataArguments, ChatSFTConfig) if objective == "sft" else (PreferenceDataArguments, PreferenceDPOConfig)
    )
    model_args, _, training_args = parse_objective_recipe(recipe, (ModelArguments, data, config), str(path))
    assert model_args.model_type == "aksis" and training_args.output_dir.startswith("outputs/aksis-")
    assert training_args.bf16 is False


def test_sft_guards_an_earlier_run_and_resumes_it(tiny_model_dirs, tmp_path, capsys) -> None:
    """A TRL run keeps the Trainer runs' output-dir guard: a second run into the same folder stops before any work;
    `--resume` (lmforge train) and `--resume_from_checkpoint auto` (lmforge sft) continue from its last checkpoint."""
    from lmforge.cli.main import main

    recipe = sft_recipe(tiny_model_dirs["aksis"], tmp_path, save_strategy="steps", save_steps=1, logging_steps=1)
    path = tmp_path / "sft.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    out = Path(recipe["output_dir"])
    assert main(["sft", str(path)]) == 0 and (out / "checkpoint-2").is_dir()
    capsys.readouterr()
    assert main(["sft", str(path)]) == 1
    assert "already holds a run (checkpoint-2, model.safetensors)" in capsys.readouterr().err
    assert main(["train", str(path), "--input-file", str(path)]) == 1
    assert "--input-file does not apply to" in capsys.readouterr().err

    # A marker in the last checkpoint's log history survives only if the next run starts from that checkpoint.
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text(encoding="utf-8"))
    state["log_history"].append({"step": 2, "marker": 1})
    state_file.write_text(json.dumps(state), encoding="utf-8")
    assert main(["train", str(path), "--resume", "--max_steps", "3"]) == 0
    resumed = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text(encoding="utf-8"))
    assert resumed["global_step"] == 3 and {"step": 2, "marker": 1} in resumed["log_history"]
    assert main(["sft", str(path), "--resume_from_checkpoint", "auto", "--max_steps", "4"]) == 0
    resumed = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text(encoding="utf-8"))
    assert resumed["global_step"] == 4 and {"step": 2, "marker": 1} in resumed["log_history"]
