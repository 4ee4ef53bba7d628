"""CharTransformer: the transformers model contract (tests/models/contract.py, in-process and as remote code without
lmforge), then config, post-norm forward, training, save/load, generation details and the tokenizer.

Every test uses a tiny model (width 32, 2 layers) so the whole file runs in seconds on a CPU.
"""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    Trainer,
    TrainingArguments,
)

import lmforge.models  # noqa: F401  (registers the Auto classes)
from lmforge.models.char_transformer import (
    CharTransformerConfig,
    CharTransformerForCausalLM,
    CharTransformerModel,
    CharTransformerTokenizer,
)
from lmforge.models.char_transformer.modeling_char_transformer import CACHE_FIELD

from ...conftest import python_without_lmforge
from ..contract import CAUSAL_CHECKS, Case, oracle_greedy, oracle_sample, run_in_subprocess, save_case


class CharTransformerModelTester:
    """Tiny CharTransformer configs and inputs, the way transformers' `<Name>ModelTester` classes build them."""

    def __init__(
        self,
        batch_size: int = 3,
        seq_length: int = 9,
        vocab_size: int = 70,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 37,
        max_position_embeddings: int = 64,
    ) -> None:
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings

    def get_config(self) -> CharTransformerConfig:
        return CharTransformerConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            hidden_dropout=0.0,
            attention_dropout=0.0,
        )

    def prepare_input_ids(self) -> torch.Tensor:
        return torch.randint(4, self.vocab_size, (self.batch_size, self.seq_length))  # no special tokens

    def create_and_save_case(self, folder: Path) -> Path:
        torch.manual_seed(0)
        model = CharTransformerForCausalLM(self.get_config()).eval()
        return save_case(model, folder, self.prepare_input_ids())


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return CharTransformerModelTester().create_and_save_case(tmp_path_factory.mktemp("char_contract"))


@pytest.fixture(scope="module")
def remote_results(case_folder: Path) -> dict[str, str]:
    return run_in_subprocess(case_folder, "causal")


@pytest.mark.parametrize("check", list(CAUSAL_CHECKS))
def test_model_contract(check: str, case_folder: Path) -> None:
    CAUSAL_CHECKS[check](Case(case_folder, "causal"))


@pytest.mark.parametrize("check", list(CAUSAL_CHECKS))
def test_model_contract_as_remote_code_without_lmforge(check: str, remote_results: dict[str, str]) -> None:
    assert remote_results[check] == "ok", remote_results[check]


TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "Ünïcödé ✓ — 你好 🙂 ...  double  spaces , before punctuation .\n"
)


@pytest.fixture(scope="module")
def tokenizer() -> CharTransformerTokenizer:
    return CharTransformerTokenizer.from_text(TEXT)


def tiny_config(tokenizer: CharTransformerTokenizer, **overrides: object) -> CharTransformerConfig:
    kwargs: dict[str, object] = {
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 64,
        "hidden_size": 32,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
    }
    kwargs.update(overrides)
    return CharTransformerConfig(**kwargs)  # type: ignore[arg-type]


def tiny_model(tokenizer: CharTransformerTokenizer, seed: int = 0, **overrides: object) -> CharTransformerForCausalLM:
    torch.manual_seed(seed)
    return CharTransformerForCausalLM(tiny_config(tokenizer, **overrides)).eval()


def encode(tokenizer: CharTransformerTokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


# --- configuration ---


def test_config_round_trip(tmp_path: Path, tokenizer: CharTransformerTokenizer) -> None:
    config = tiny_config(tokenizer, hidden_dropout=0.1, use_bias=False, layer_norm_eps=1e-6)
    restored = CharTransformerConfig.from_dict(config.to_dict())
    assert restored.to_dict() == config.to_dict()

    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is CharTransformerConfig
    assert loaded.model_type == "char_transformer"
    for name in ("vocab_size", "hidden_size", "intermediate_size", "hidden_dropout", "use_bias", "layer_norm_eps"):
        assert getattr(loaded, name) == getattr(config, name), name


def test_config_defaults_are_the_reference_size() -> None:
    config = CharTransformerConfig()
    assert (config.vocab_size, config.max_position_embeddings, config.hidden_size) == (65, 256, 384)
    assert (config.num_hidden_layers, config.num_attention_heads) == (6, 6)
    assert config.intermediate_size == 4 * config.hidden_size
    assert config.hidden_dropout == config.attention_dropout == 0.2
    assert config.tie_word_embeddings


def test_config_rejects_width_not_divisible_by_heads() -> None:
    with pytest.raises(StrictDataclassError, match="divisible by num_attention_heads"):
        CharTransformerConfig(hidden_size=30, num_attention_heads=4)


def test_config_rejects_negative_dropout() -> None:
    with pytest.raises(StrictDataclassError, match="hidden_dropout"):
        CharTransformerConfig(hidden_dropout=-0.1)
    with pytest.raises(StrictDataclassError, match="attention_dropout"):
        CharTransformerConfig(attention_dropout=-0.5)


# --- forward ---


def test_forward_shapes_and_loss(tokenizer: CharTransformerTokenizer) -> None:
    model = tiny_model(tokenizer)
    input_ids = torch.randint(4, len(tokenizer), (3, 10))
    out = model(input_ids=input_ids, labels=input_ids)

    assert out.logits.shape == (3, 10, len(tokenizer))
    assert isinstance(getattr(out, CACHE_FIELD), DynamicCache)
    assert getattr(out, CACHE_FIELD).get_seq_length() == 10
    # The loss is the next-token cross-entropy: logits at t predict the token at t + 1.
    expected = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, len(tokenizer)), input_ids[:, 1:].reshape(-1)
    )
    torch.testing.assert_close(out.loss, expected)
    # At initialisation the model is close to uniform over the vocabulary.
    assert abs(out.loss.item() - torch.log(torch.tensor(float(len(tokenizer)))).item()) < 0.5

    base = CharTransformerModel(tiny_config(tokenizer))
    assert base(input_ids=input_ids).last_hidden_state.shape == (3, 10, 32)
    assert model(input_ids=input_ids, logits_to_keep=1).logits.shape == (3, 1, len(tokenizer))


def test_blocks_are_post_norm(tokenizer: CharTransformerTokenizer) -> None:
    """x = LN(x + Attn(x)); x = LN(x + FFN(x)): the output of every block is normalised per position."""
    model = tiny_model(tokenizer)
    block_inputs: list[torch.Tensor] = []
    block_outputs: list[torch.Tensor] = []

    def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        block_inputs.append(args[0])
        block_outputs.append(output)

    for layer in model.model.layers:
        layer.register_forward_hook(record)
    input_ids = torch.randint(4, len(tokenizer), (2, 12))
    with torch.no_grad():
        model(input_ids=input_ids, use_cache=False)

    # The first block's input (embeddings, std ~0.03) is not normalised, so the check below can tell the difference.
    assert block_inputs[0].std(dim=-1, unbiased=False).max() < 0.5
    assert len(block_outputs) == 2
    for output in block_outputs:
        torch.testing.assert_close(output.mean(dim=-1), torch.zeros(2, 12), atol=1e-5, rtol=0)
        torch.testing.assert_close(output.var(dim=-1, unbiased=False), torch.ones(2, 12), atol=1e-3, rtol=0)
    # No final LayerNorm: the last block's output is what the head sees.
    assert isinstance(model.model.norm, torch.nn.Identity)  # AksisModel's forward, with the identity as final norm
    assert not any(name.startswith("model.norm") for name in model.state_dict())
    assert isinstance(model.model.layers[0].mlp.act_fn, torch.nn.ReLU)


def test_sequence_past_the_context_raises(tokenizer: CharTransformerTokenizer) -> None:
    model = tiny_model(tokenizer, max_position_embeddings=8)
    with pytest.raises(ValueError, match="context length"):
        model(input_ids=torch.randint(4, len(tokenizer), (1, 9)))


# --- training ---


class RepeatedTextDataset(torch.utils.data.Dataset):
    """Windows of `block_size` characters over a repeated string; labels are the inputs (shifted in the model)."""

    def __init__(self, ids: list[int], block_size: int) -> None:
        self.ids = ids
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.ids) - self.block_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window = torch.tensor(self.ids[index : index + self.block_size])
        return {"input_ids": window, "labels": window}


def test_trainer_lowers_the_loss(tmp_path: Path, tokenizer: CharTransformerTokenizer) -> None:
    model = tiny_model(tokenizer)
    ids = tokenizer("to be or not to be. " * 20)["input_ids"]
    dataset = RepeatedTextDataset(ids, block_size=32)
    eval_batch = torch.tensor([ids[:32], ids[7:39]])

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model(input_ids=eval_batch, labels=eval_batch).loss.item()

    before = eval_loss()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=30,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        warmup_steps=0,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    result = Trainer(model=model, args=args, train_dataset=dataset).train()
    after = eval_loss()

    assert result.global_step == 30
    assert after < 0.6 * before, (before, after)  # ~3.7 -> ~1.7 with this seed


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer: CharTransformerTokenizer) -> None:
    input_ids = torch.randint(4, len(tokenizer), (2, 10))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(tokenizer).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        grads.append(model.model.layers[0].self_attn.qkv_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


# --- save / load ---


def test_save_load_round_trip(tmp_path: Path, tokenizer: CharTransformerTokenizer) -> None:
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path)

    names = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in names
    assert not [name for name in names if name.endswith(".bin")]
    assert {"configuration_char_transformer.py", "modeling_char_transformer.py"} <= names
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForCausalLM"] == "modeling_char_transformer.CharTransformerForCausalLM"

    input_ids = encode(tokenizer, "to be")
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
    for loader in (CharTransformerForCausalLM, AutoModelForCausalLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is CharTransformerForCausalLM
        assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
        with torch.no_grad():
            assert torch.equal(loaded(input_ids=input_ids).logits, expected)


# --- generation ---


def test_batched_left_padded_generate_equals_the_oracle_one_by_one(tokenizer: CharTransformerTokenizer) -> None:
    model = tiny_model(tokenizer)
    prompts = ["to be", "or not to be, that", "the question"]
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": None}

    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    assert (batch["attention_mask"] == 0).any()  # the test must really pad
    batched = model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :]

    for row, prompt in enumerate(prompts):
        alone = oracle_greedy(model, encode(tokenizer, prompt), 8)  # plain forward passes, no generate()
        assert torch.equal(batched[row], alone[0]), prompt


def test_seeded_sampling_is_reproducible(tokenizer: CharTransformerTokenizer) -> None:
    model = tiny_model(tokenizer)
    input_ids = encode(tokenizer, "to be")
    kwargs = {"max_new_tokens": 20, "do_sample": True, "top_k": 0, "pad_token_id": tokenizer.pad_token_id}

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model.generate(input_ids, eos_token_id=None, **kwargs)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    assert sample(1)[0, input_ids.shape[1] :].tolist() == oracle_sample(model, input_ids, 20, seed=1, top_k=0)


# --- tokenizer ---


def test_tokenizer_round_trip_and_unknown_characters(tokenizer: CharTransformerTokenizer) -> None:
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert len(tokenizer) == 4 + len(set(TEXT))

    ids = tokenizer(TEXT)["input_ids"]
    assert len(ids) == len(TEXT)  # one token per character, no special tokens added
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == TEXT

    unknown = tokenizer("toZ😀")["input_ids"]
    assert unknown[2:] == [tokenizer.unk_token_id] * 2
    assert tokenizer.decode(unknown) == "to<unk><unk>"
    assert tokenizer.decode(unknown, skip_special_tokens=True) == "to"
    assert tokenizer.decode([tokenizer.bos_token_id, *tokenizer("a b")["input_ids"]]) == "<s>a b"
    assert tokenizer.tokenize("<s>ab</s>") == ["<s>", "a", "b", "</s>"]


def test_tokenizer_save_and_auto_load(tmp_path: Path, tokenizer: CharTransformerTokenizer) -> None:
    tokenizer.save_pretrained(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == tokenizer.get_vocab()
    assert list(vocab.values()) == list(range(len(vocab)))  # written in id order
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_char_transformer.CharTransformerTokenizer"
    assert (tmp_path / "tokenization_char_transformer.py").exists()

    # AutoTokenizer finds the class through the model config in the same folder.
    tiny_config(tokenizer).save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is CharTransformerTokenizer
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.decode(loaded(TEXT)["input_ids"]) == TEXT


def test_auto_classes_build_char_transformer(tokenizer: CharTransformerTokenizer) -> None:
    config = tiny_config(tokenizer)
    assert type(AutoModelForCausalLM.from_config(config)) is CharTransformerForCausalLM
    assert type(AutoModel.from_config(config)) is CharTransformerModel
    assert type(AutoConfig.for_model("char_transformer")) is CharTransformerConfig


# --- remote code without lmforge ---

REMOTE_SCRIPT = """
import json, sys

from transformers import AutoModelForCausalLM, AutoTokenizer

folder = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
inputs = tokenizer("to be", return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=10, do_sample=False, eos_token_id=None)
print(json.dumps({
    "model_module": type(model).__module__,
    "tokenizer_module": type(tokenizer).__module__,
    "loaded": sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "lmforge" and module),
    "ids": output[0].tolist(),
    "text": tokenizer.decode(output[0]),
}))
"""


def test_saved_folder_loads_with_trust_remote_code_without_lmforge(
    tmp_path: Path, tokenizer: CharTransformerTokenizer
) -> None:
    folder = tmp_path / "model"
    model = tiny_model(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    prompt = encode(tokenizer, "to be")
    expected = torch.cat([prompt, oracle_greedy(model, prompt, 10)], dim=1)  # plain forward passes, no generate()

    script = f"import sys; sys.argv = ['-c', {str(folder)!r}]\n" + REMOTE_SCRIPT
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["loaded"] == []
    assert report["model_module"].startswith("transformers_modules.")
    assert report["tokenizer_module"].startswith("transformers_modules.")
    assert report["ids"] == expected[0].tolist()
    assert report["text"] == tokenizer.decode(expected[0])
