"""AE-LLM: the transformers encoder-decoder model contract (contract_ae_llm.py, in-process and as remote code without
lmforge), then config, shapes, Thinking Net, losses, training, freezing, save/load, the recurrent cache, generate() and
remote-code loading."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    DynamicCache,
    Trainer,
    TrainingArguments,
)
from transformers.modeling_outputs import BaseModelOutput

import lmforge.models  # noqa: F401  (registers the Auto classes)
from lmforge.evaluation import normalize_answer
from lmforge.models.ae_llm import (
    AELLMConfig,
    AELLMForConditionalGeneration,
    AELLMModel,
    AELLMRecurrentCache,
    AELLMTokenizer,
)
from lmforge.models.ae_llm.modeling_ae_llm import (
    CACHE_FIELD,
    copy_alignment,
    load_balancing_loss,
    shift_tokens_right,
)

from ..contract import Case, run_in_subprocess, save_case
from .contract_ae_llm import CHECKS

QA_PAIRS = [
    ("what is the capital of france?", "paris is the capital."),
    ("who wrote hamlet?", "shakespeare wrote it."),
    ("what color is the sky?", "the sky is blue."),
    ("how many legs has a cat?", "a cat has four legs."),
    ("what do bees make?", "bees make honey."),
    ("where does the sun rise?", "the sun rises in the east."),
    ("what is frozen water?", "frozen water is ice."),
    ("which animal barks?", "the dog barks."),
]
TEXTS = [text for pair in QA_PAIRS for text in pair]


class AELLMModelTester:
    """Tiny AE-LLM configs and inputs, the way transformers' `<Name>ModelTester` classes build them. Two GRU layers
    (so that per-layer outputs and states are exercised) and a wide initialiser, so that an untrained model's greedy
    tokens depend on its input (with the library's 0.02 every input decodes to the same tokens)."""

    def __init__(
        self,
        batch_size: int = 3,
        seq_length: int = 7,
        vocab_size: int = 61,
        embedding_size: int = 16,
        hidden_size: int = 24,
        latent_size: int = 20,
        num_hidden_layers: int = 2,
        intermediate_size: int = 32,
        max_position_embeddings: int = 32,
        num_experts: int = 4,
        num_experts_per_tok: int = 2,
        memory_slots: int = 8,
        hyper_adapter_size: int = 16,
        initializer_range: float = 0.3,
        additions: dict[str, bool] | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.latent_size = latent_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.memory_slots = memory_slots
        self.hyper_adapter_size = hyper_adapter_size
        self.initializer_range = initializer_range
        self.additions = dict(additions or {})

    def get_config(self, **overrides: object) -> AELLMConfig:
        values: dict[str, object] = {
            "vocab_size": self.vocab_size,
            "embedding_size": self.embedding_size,
            "hidden_size": self.hidden_size,
            "latent_size": self.latent_size,
            "num_hidden_layers": self.num_hidden_layers,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "num_experts": self.num_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "memory_slots": self.memory_slots,
            "hyper_adapter_size": self.hyper_adapter_size,
            "initializer_range": self.initializer_range,
            "dropout": 0.0,
            **self.additions,
        }
        values.update(overrides)
        return AELLMConfig(**values)  # type: ignore[arg-type]

    def prepare_input_ids(self) -> torch.Tensor:
        return torch.randint(4, self.vocab_size, (self.batch_size, self.seq_length))  # no special tokens

    def prepare_config_and_inputs(self) -> tuple[AELLMConfig, dict[str, torch.Tensor]]:
        input_ids = self.prepare_input_ids()
        decoder_input_ids = torch.randint(4, self.vocab_size, (self.batch_size, 5))
        decoder_input_ids[:, 0] = 2  # decoder_start_token_id
        return self.get_config(), {"input_ids": input_ids, "decoder_input_ids": decoder_input_ids}

    def create_and_save_case(self, folder: Path) -> Path:
        torch.manual_seed(0)
        model = AELLMForConditionalGeneration(self.get_config()).eval()
        return save_case(model, folder, self.prepare_input_ids())


# The seed's design, and the same model with every addition on (decoder attention, copy head, bidirectional encoder).
VARIANTS = {
    "seed": {},
    "additions": {
        "decoder_attention": True,
        "copy_head": True,
        "bidirectional_encoder": True,
        "encoder_self_attention": True,
    },
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def case_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tester = AELLMModelTester(additions=VARIANTS[request.param])
    return tester.create_and_save_case(tmp_path_factory.mktemp(f"ae_llm_contract_{request.param}"))


@pytest.fixture(scope="module")
def remote_results(case_folder: Path) -> dict[str, str]:
    return run_in_subprocess(case_folder, "seq2seq", "tests.models.ae_llm.contract_ae_llm:CHECKS")


@pytest.mark.parametrize("check", list(CHECKS))
def test_model_contract(check: str, case_folder: Path) -> None:
    CHECKS[check](Case(case_folder, "seq2seq"))


@pytest.mark.parametrize("check", list(CHECKS))
def test_model_contract_as_remote_code_without_lmforge(check: str, remote_results: dict[str, str]) -> None:
    assert remote_results[check] == "ok", remote_results[check]


@pytest.fixture(scope="module")
def tokenizer() -> AELLMTokenizer:
    return AELLMTokenizer.train_from_texts(TEXTS * 5, vocab_size=320)


def tiny_config(tokenizer: AELLMTokenizer, **overrides: object) -> AELLMConfig:
    values: dict[str, object] = {
        "vocab_size": len(tokenizer),
        "embedding_size": 16,
        "hidden_size": 24,
        "latent_size": 20,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "memory_slots": 8,
        "num_gated_blocks": 2,
        "hyper_adapter_size": 16,
        "dropout": 0.0,
    }
    values.update(overrides)
    return AELLMConfig(**values)  # type: ignore[arg-type]


def tiny_model(tokenizer: AELLMTokenizer, seed: int = 0, **overrides: object) -> AELLMForConditionalGeneration:
    torch.manual_seed(seed)
    return AELLMForConditionalGeneration(tiny_config(tokenizer, **overrides))


def qa_batch(tokenizer: AELLMTokenizer, pairs: list[tuple[str, str]] = QA_PAIRS[:4]) -> dict[str, torch.Tensor]:
    batch = dict(tokenizer([q for q, _ in pairs], return_tensors="pt", padding=True))
    labels = tokenizer([a for _, a in pairs], return_tensors="pt", padding=True)["input_ids"]
    batch["labels"] = labels.masked_fill(labels == tokenizer.pad_token_id, -100)
    return batch


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def run_trainer(
    model: AELLMForConditionalGeneration,
    tokenizer: AELLMTokenizer,
    rows: list,
    tmp: Path,
    steps: int,
    learning_rate: float = 3e-2,
) -> None:
    args = TrainingArguments(
        output_dir=str(tmp),
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=learning_rate,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is several times faster than two on a shared CPU
    try:
        Trainer(model=model, args=args, train_dataset=ListDataset(rows), data_collator=collator).train()
    finally:
        torch.set_num_threads(threads)


def pair_rows(tokenizer: AELLMTokenizer, pairs: list[tuple[str, str]]) -> list[dict]:
    """Training rows of (source, target) text pairs: the source's ids and mask, the target's ids as labels."""
    rows = []
    for source, target in pairs:
        ids = tokenizer(source)["input_ids"]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": tokenizer(target)["input_ids"]})
    return rows


@pytest.fixture(scope="module")
def trained(tokenizer: AELLMTokenizer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained by the real Trainer to reconstruct the corpus, with its loss before and after."""
    model = tiny_model(tokenizer, mode="reconstruct", hidden_size=32, latent_size=32)
    rows = pair_rows(tokenizer, [(text, text) for text in TEXTS])
    eval_batch = dict(tokenizer(TEXTS, return_tensors="pt", padding=True))
    eval_batch["labels"] = eval_batch["input_ids"].masked_fill(eval_batch["attention_mask"] == 0, -100)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model(**eval_batch).loss)

    before = eval_loss()
    run_trainer(model, tokenizer, rows, tmp_path_factory.mktemp("trainer"), steps=300)
    after = eval_loss()
    return {"model": model.eval(), "before": before, "after": after}


# --- config ---


def test_config_round_trip(tmp_path: Path) -> None:
    config = AELLMConfig(vocab_size=500, latent_size=40, num_experts=6, num_experts_per_tok=3, mode="reconstruct")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AELLMConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert (loaded.latent_size, loaded.num_experts_per_tok, loaded.mode) == (40, 3, "reconstruct")
    assert loaded.is_encoder_decoder and loaded.model_type == "ae_llm"
    defaults = AELLMConfig()
    assert (defaults.embedding_size, defaults.hidden_size, defaults.latent_size) == (64, 32, 124)
    assert (defaults.num_experts, defaults.num_experts_per_tok, defaults.memory_slots) == (4, 2, 32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_experts": 2, "num_experts_per_tok": 3}, "num_experts_per_tok"),
        ({"mode": "dream"}, "mode"),
        ({"teacher_forcing_ratio": 1.5}, "1.0"),
        ({"vocab_size": 3}, "vocab_size"),
        ({"decoder_start_token_id": None}, "decoder_start_token_id"),
        ({"tie_word_embeddings": True}, "tie_word_embeddings"),
        ({"latent_size": 0}, "greater or equal"),
        ({"copy_head": True}, "copy_head needs decoder_attention"),
        ({"decoder_attention": True, "copy_loss_coef": 1.0}, "copy_loss_coef needs copy_head"),
        ({"encoder_self_attention": True}, "encoder_self_attention needs decoder_attention"),
        ({"copy_loss_coef": -1.0}, "greater or equal"),
        ({"latent_loss_coef": -1.0}, "greater or equal"),
    ],
)
def test_config_validation_errors(overrides: dict, message: str) -> None:
    with pytest.raises((StrictDataclassError, ValueError, TypeError), match=message):
        AELLMConfig(**overrides)


# --- shapes and the Thinking Net ---


def test_forward_shapes(tokenizer: AELLMTokenizer) -> None:
    model = tiny_model(tokenizer).eval()
    config = model.config
    batch = qa_batch(tokenizer)
    batch_size, answer_len = batch["labels"].shape

    encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert isinstance(encoded, BaseModelOutput)
    assert encoded.last_hidden_state.shape == (batch_size, 1, config.latent_size)

    out = model(**batch)
    assert out.logits.shape == (batch_size, answer_len, config.vocab_size)
    assert out.encoder_last_hidden_state.shape == (batch_size, 1, config.latent_size)
    assert out.latent.shape == (batch_size, config.latent_size)
    assert out.router_logits.shape == (batch_size, config.num_experts)
    assert out.bow_logits.shape == (batch_size, config.vocab_size)
    assert getattr(out, CACHE_FIELD) is None  # no cache when training on labels

    reconstruct = model(**batch, mode="reconstruct")
    assert reconstruct.router_logits is None and reconstruct.bow_logits is None
    assert torch.equal(reconstruct.latent, encoded.last_hidden_state[:, 0])
    assert torch.equal(reconstruct.loss, reconstruct.lm_loss)

    decoder_input_ids = shift_tokens_right(batch["labels"], config.pad_token_id, config.decoder_start_token_id)
    assert torch.equal(decoder_input_ids[:, 0], torch.full((batch_size,), config.decoder_start_token_id))
    step = model(**{k: v for k, v in batch.items() if k != "labels"}, decoder_input_ids=decoder_input_ids[:, :3])
    cache = getattr(step, CACHE_FIELD)
    assert isinstance(cache, AELLMRecurrentCache)
    assert cache.hidden_state.shape == (config.num_hidden_layers, batch_size, config.hidden_size)
    assert cache.states.shape == (config.num_hidden_layers, batch_size, 3, config.hidden_size)
    assert cache.get_seq_length() == 3

    base = AELLMModel(config).eval()
    base.load_state_dict(model.model.state_dict())
    bare = base(**{k: v for k, v in batch.items() if k != "labels"}, decoder_input_ids=decoder_input_ids[:, :3])
    assert bare.last_hidden_state.shape == (batch_size, 3, config.hidden_size)
    torch.testing.assert_close(model.lm_head(bare.last_hidden_state), step.logits)


def test_encoder_latent_ignores_padding(tokenizer: AELLMTokenizer) -> None:
    model = tiny_model(tokenizer).eval()
    texts = ["what is the capital of france?", "who wrote hamlet?"]
    right = tokenizer(texts, return_tensors="pt", padding=True)
    tokenizer.padding_side = "left"
    try:
        left = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = "right"
    alone = tokenizer(texts[1:], return_tensors="pt")
    with torch.no_grad():
        latent_right = model.get_encoder()(**right).last_hidden_state
        latent_left = model.get_encoder()(**left).last_hidden_state
        latent_alone = model.get_encoder()(**alone).last_hidden_state
    torch.testing.assert_close(latent_left, latent_right)
    torch.testing.assert_close(latent_right[1:], latent_alone)


def test_moe_routes_each_latent_to_exactly_top_k_experts(tokenizer: AELLMTokenizer) -> None:
    model = tiny_model(tokenizer, num_experts=5, num_experts_per_tok=2)
    moe = model.model.transition.moe
    rows_seen = [0] * len(moe.experts)
    hooks = [
        expert.register_forward_hook(
            lambda mod, args, out, i=i: rows_seen.__setitem__(i, rows_seen[i] + args[0].shape[0])
        )
        for i, expert in enumerate(moe.experts)
    ]
    latent = torch.randn(16, model.config.latent_size)
    try:
        output, router_logits, selected = moe(latent)
    finally:
        for hook in hooks:
            hook.remove()

    assert output.shape == latent.shape and router_logits.shape == (16, 5)
    assert selected.shape == (16, 2)
    assert all(len(set(row.tolist())) == 2 for row in selected)  # two different experts per latent
    assert torch.equal(selected.sort(dim=-1).values, router_logits.topk(2, dim=-1).indices.sort(dim=-1).values)
    assert sum(rows_seen) == 16 * 2  # every latent went through exactly its 2 experts, no more
    for expert_idx in range(5):
        assert rows_seen[expert_idx] == int((selected == expert_idx).sum())

    aux = load_balancing_loss(router_logits, top_k=2)
    assert aux.item() > 0
    uniform = load_balancing_loss(torch.zeros(16, 5), top_k=2)
    torch.testing.assert_close(uniform, torch.tensor(1.0))


def test_total_loss_is_sum_of_its_parts(tokenizer: AELLMTokenizer) -> None:
    model = tiny_model(tokenizer, router_aux_loss_coef=0.5, bow_loss_coef=0.3).eval()
    out = model(**qa_batch(tokenizer))
    assert out.router_aux_loss.item() > 0 and out.bow_loss.item() > 0 and out.lm_loss.item() > 0
    torch.testing.assert_close(out.loss, out.lm_loss + out.router_aux_loss + out.bow_loss)

    # The router only gets a gradient through the aux loss when the lm/bow paths are cut: it is really in the loss.
    out.router_aux_loss.backward()
    assert model.model.transition.moe.router.weight.grad is not None
    assert model.model.transition.moe.router.weight.grad.abs().sum() > 0

    no_aux = tiny_model(tokenizer, router_aux_loss_coef=0.0, bow_loss_coef=0.3).eval()
    out_no_aux = no_aux(**qa_batch(tokenizer))
    torch.testing.assert_close(out_no_aux.lm_loss, out.lm_loss)
    torch.testing.assert_close(out.loss - out_no_aux.loss, out.router_aux_loss)


def test_scheduled_sampling_extremes(tokenizer: AELLMTokenizer) -> None:
    batch = qa_batch(tokenizer)
    # Ratio 1: the step-by-step training path equals the parallel teacher-forced path.
    model = tiny_model(tokenizer, teacher_forcing_ratio=1.0)
    with torch.no_grad():
        parallel = model.eval()(**batch).logits
        model.config.teacher_forcing_ratio = 0.999999  # force the step loop, gold tokens (almost) always
        torch.manual_seed(0)
        stepwise = model.train()(**batch).logits
    torch.testing.assert_close(stepwise, parallel)

    # Ratio 0: every step reads the model's own previous argmax, i.e. free-running greedy decoding.
    model.config.teacher_forcing_ratio = 0.0
    with torch.no_grad():
        free_running = model.train()(**batch).logits
        model.eval()
        tokens = torch.full((batch["labels"].shape[0], 1), model.config.decoder_start_token_id)
        for _ in range(batch["labels"].shape[1]):
            logits = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=tokens).logits
            tokens = torch.cat([tokens, logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(free_running.argmax(-1), tokens[:, 1:])


# --- training ---


def test_trainer_lowers_reconstruction_loss(trained: dict) -> None:
    assert trained["model"].config.mode == "reconstruct"
    assert trained["after"] < 0.5 * trained["before"], (trained["before"], trained["after"])


def test_freeze_autoencoder_trains_only_the_thinking_net(tokenizer: AELLMTokenizer) -> None:
    model = tiny_model(tokenizer, dropout=0.1).train()
    model.freeze_autoencoder()
    frozen = {
        name: param.detach().clone()
        for module in model.autoencoder_modules()
        for name, param in module.named_parameters()
    }
    assert frozen and not any(p.requires_grad for m in model.autoencoder_modules() for p in m.parameters())
    thinking_before = {name: p.detach().clone() for name, p in model.model.transition.named_parameters()}
    assert all(p.requires_grad for p in model.model.transition.parameters())

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # every parameter on purpose
    loss = model(**qa_batch(tokenizer)).loss
    loss.backward()
    optimizer.step()

    after = {name: p for module in model.autoencoder_modules() for name, p in module.named_parameters()}
    for name, value in frozen.items():
        assert torch.equal(after[name], value), f"{name} changed although the autoencoder is frozen"
    changed = [
        name for name, p in model.model.transition.named_parameters() if not torch.equal(p, thinking_before[name])
    ]
    for part in ("memory.keys", "moe.router.weight", "blocks.0.mlp.up_proj.weight", "hyper_adapter.up_proj.weight"):
        assert part in changed

    model.unfreeze_autoencoder()
    assert all(p.requires_grad for p in model.parameters())


# --- save / load ---


def test_save_load_round_trip(tokenizer: AELLMTokenizer, tmp_path: Path) -> None:
    model = tiny_model(tokenizer).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert {"configuration_ae_llm.py", "modeling_ae_llm.py", "tokenization_ae_llm.py"} <= files

    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, AELLMForConditionalGeneration)
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded_tokenizer, AELLMTokenizer)
    assert loaded_tokenizer("What do bees make?")["input_ids"] == tokenizer("What do bees make?")["input_ids"]

    batch = qa_batch(tokenizer)
    with torch.no_grad():
        for mode in ("answer", "reconstruct"):
            assert torch.equal(model(**batch, mode=mode).logits, loaded(**batch, mode=mode).logits)

    # the folder names the bare model and the head; the head's weights sit under `model.` (the base model prefix)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_ae_llm.AELLMModel"
    assert auto_map["AutoModelForSeq2SeqLM"] == "modeling_ae_llm.AELLMForConditionalGeneration"
    assert isinstance(AutoModel.from_pretrained(tmp_path), AELLMModel)
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert all(key.startswith(("model.encoder.", "model.transition.", "model.decoder.", "lm_head.")) for key in keys)


# --- the recurrent cache ---


def test_recurrent_cache_crops_back_to_the_state_after_an_earlier_token() -> None:
    config, inputs = AELLMModelTester().prepare_config_and_inputs()
    torch.manual_seed(0)
    model = AELLMForConditionalGeneration(config).eval()
    ids, decoder_ids = inputs["input_ids"], inputs["decoder_input_ids"]  # (3, 7), (3, 5)
    with torch.no_grad():
        full = model(input_ids=ids, decoder_input_ids=decoder_ids)
        cache = getattr(full, CACHE_FIELD)
        assert cache.get_seq_length() == 5 and len(cache) == config.num_hidden_layers and cache.batch_size == 3
        assert cache.is_croppable and not cache.is_compileable
        cache.crop(-2)  # back to the state after the first 3 tokens
        prefix = getattr(model(input_ids=ids, decoder_input_ids=decoder_ids[:, :3]), CACHE_FIELD)
        assert cache.get_seq_length() == 3
        torch.testing.assert_close(cache.states, prefix.states)
        # going on from the cropped cache (under the pre-5.24 keyword too) gives the logits of the whole pass
        again = model(input_ids=ids, decoder_input_ids=decoder_ids[:, 3:], past_key_values=cache)
        torch.testing.assert_close(again.logits, full.logits[:, 3:])
    assert cache.get_seq_length() == 5
    cache.crop(0)
    assert cache.get_seq_length() == 5
    with pytest.raises(ValueError, match="positive"):
        cache.crop(2)
    states = cache.states.clone()
    cache.reorder_cache(torch.tensor([2, 0, 0]))  # beam search
    assert torch.equal(cache.states, states[:, [2, 0, 0]])
    cache.batch_select_indices(torch.tensor([0, 2]))
    cache.batch_repeat_interleave(2)
    assert torch.equal(cache.states, states[:, [2, 2, 0, 0]])
    cache.crop(-5)
    assert cache.get_seq_length() == 0 and cache.hidden_state is None and cache.batch_size == -1
    with pytest.raises(TypeError, match="AELLMRecurrentCache"):
        model(input_ids=ids, decoder_input_ids=decoder_ids, **{CACHE_FIELD: DynamicCache()})


# --- generate ---


def test_greedy_generate_equals_manual_loop_and_no_cache(trained: dict, tokenizer: AELLMTokenizer) -> None:
    model = trained["model"]
    inputs = tokenizer(["bees make honey.", "the dog barks."], return_tensors="pt", padding=True)
    with torch.no_grad():
        cached = model.generate(**inputs, max_new_tokens=10, do_sample=False)
        uncached = model.generate(**inputs, max_new_tokens=10, do_sample=False, use_cache=False)
        assert torch.equal(cached, uncached)

        # Manual greedy loop: re-run the whole decoder prefix at each step, no cache.
        tokens = torch.full((2, 1), model.config.decoder_start_token_id)
        for _ in range(10):
            logits = model(**inputs, decoder_input_ids=tokens, use_cache=False).logits
            tokens = torch.cat([tokens, logits[:, -1:].argmax(-1)], dim=1)
    eos = model.config.eos_token_id
    for row in range(2):
        expected = tokens[row].tolist()
        if eos in expected:
            expected = expected[: expected.index(eos) + 1]
        produced = cached[row].tolist()[: len(expected)]
        assert produced == expected
    # The trained decoder follows its latent: two different inputs give two different outputs.
    assert cached[0].tolist() != cached[1].tolist()


def test_beam_search_and_sampling(trained: dict, tokenizer: AELLMTokenizer) -> None:
    model = trained["model"]
    inputs = tokenizer(["what do bees make?", "the sky is blue."], return_tensors="pt", padding=True)
    with torch.no_grad():
        beams = model.generate(**inputs, max_new_tokens=8, num_beams=3, num_return_sequences=2)
        beams_no_cache = model.generate(
            **inputs, max_new_tokens=8, num_beams=3, num_return_sequences=2, use_cache=False
        )
        assert beams.shape[0] == 4
        assert torch.equal(beams, beams_no_cache)  # the cache is reordered with the beams

        torch.manual_seed(1)
        sampled = model.generate(**inputs, max_new_tokens=8, do_sample=True, top_k=10, temperature=1.5)
        torch.manual_seed(1)
        again = model.generate(**inputs, max_new_tokens=8, do_sample=True, top_k=10, temperature=1.5)
    assert torch.equal(sampled, again)
    assert sampled.shape[0] == 2 and 2 <= sampled.shape[1] <= 9
    assert int(sampled.max()) < model.config.vocab_size


def test_answer_question_returns_the_trained_answers(tokenizer: AELLMTokenizer, tmp_path: Path) -> None:
    """Overfit a handful of question -> answer pairs (answer mode, the real Trainer): answer_question then returns each
    trained answer, greedy and with beam search, and they are what generate() decodes."""
    pairs = QA_PAIRS[:5]
    expected = [normalize_answer(answer) for _, answer in pairs]  # SQuAD normalisation: case, punctuation, articles
    model = tiny_model(tokenizer, hidden_size=64, latent_size=32, teacher_forcing_ratio=1.0)
    run_trainer(model, tokenizer, pair_rows(tokenizer, pairs) * 4, tmp_path, steps=300, learning_rate=1e-2)
    model.eval()
    greedy = [model.answer_question(question, tokenizer, max_new_tokens=12) for question, _ in pairs]
    beams = [model.answer_question(question, tokenizer, max_new_tokens=12, num_beams=3) for question, _ in pairs]
    assert [normalize_answer(answer) for answer in greedy] == expected, greedy
    assert [normalize_answer(answer) for answer in beams] == expected, beams
    inputs = tokenizer([q for q, _ in pairs], return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert tokenizer.batch_decode(generated, skip_special_tokens=True) == greedy
    # an untrained model of the same size does not give them (the check can fail)
    untrained = tiny_model(tokenizer, seed=1, hidden_size=64, latent_size=32).eval()
    assert [normalize_answer(untrained.answer_question(q, tokenizer, max_new_tokens=12)) for q, _ in pairs] != expected


def test_latent_loss_trains_only_the_thinking_net(tokenizer: AELLMTokenizer) -> None:
    """The transition objective: with lm_loss_coef 0 and latent_loss_coef 1 the loss is the mean squared error between
    the Thinking Net's answer latent and the encoder's latent of the answer (computed here by encoding the answers
    alone), plus the router and bag-of-words terms; with the autoencoder frozen one step moves the Thinking Net only,
    and the decoder gets no gradient."""
    model = tiny_model(tokenizer, lm_loss_coef=0.0, latent_loss_coef=1.0).train()
    model.freeze_autoencoder()
    batch = qa_batch(tokenizer)
    out = model(**batch)
    with torch.no_grad():
        model.eval()
        answers = tokenizer([a for _, a in QA_PAIRS[:4]], return_tensors="pt", padding=True)
        target = model.get_encoder()(**answers).last_hidden_state[:, 0]
        question = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        predicted = model.model.transition(question.last_hidden_state[:, 0]).answer_latent
        model.train()
    torch.testing.assert_close(out.latent_loss, ((predicted - target) ** 2).mean())
    torch.testing.assert_close(out.loss, out.latent_loss + out.router_aux_loss + out.bow_loss)
    assert out.lm_loss is not None and out.lm_loss.item() > 0  # reported, not trained on

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out.loss.backward()
    assert all(p.grad is None for p in model.model.decoder.parameters())
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith("model.transition.") for name in changed), sorted(changed)
    assert {"model.transition.memory.query.weight", "model.transition.blocks.0.mlp.up_proj.weight"} <= changed
    # the mode "reconstruct" has no Thinking Net, so no latent loss
    assert model(**batch, mode="reconstruct").latent_loss is None


# --- copy supervision ---

COPY = {"decoder_attention": True, "copy_head": True, "bidirectional_encoder": True, "teacher_forcing_ratio": 1.0}
# question + the sentence holding the answer -> the answer, a span of the sentence
COPY_PAIRS = [
    ("what is the capital of france? paris is the capital.", "paris"),
    ("who wrote hamlet? shakespeare wrote it.", "shakespeare"),
    ("what color is the sky? the sky is blue.", "blue"),
    ("what do bees make? bees make honey.", "honey"),
]


def test_copy_alignment_prefers_the_whole_span() -> None:
    """Label tokens align to the answer's whole span where it occurs in the input (every occurrence), else to every
    input position with the same token; special tokens (here 3, the eos) and padding align nowhere."""
    labels = torch.tensor([[7, 8, 3, -100], [5, 9, 3, -100], [6, 3, -100, -100]])
    source = torch.tensor([[4, 7, 8, 4, 7, 3], [5, 4, 9, 3, 0, 0], [6, 4, 6, 3, 0, 0]])
    mask = (source != 0).long()
    aligned = copy_alignment(labels, source, mask, [0, 2, 3])
    expected = torch.zeros(3, 4, 6, dtype=torch.bool)
    expected[0, 0, 1] = expected[0, 1, 2] = True  # span 7 8 at 1-2; the lone 7 at 4 is not part of it
    expected[1, 0, 0] = expected[1, 1, 2] = True  # 5 9 is no span of the input: each token where it stands
    expected[2, 0, 0] = expected[2, 0, 2] = True  # a one-token span found twice
    assert torch.equal(aligned, expected)


def copy_probability(model: AELLMForConditionalGeneration, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(1 - p_gen) x the attention on the aligned input positions, for each aligned label token: the probability
    that the copy head copies the answer's token from where it stands in the input."""
    labels = batch["labels"]
    decoder_input_ids = shift_tokens_right(labels, 0, model.config.decoder_start_token_id)
    with torch.no_grad():
        out = model.model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=decoder_input_ids)
    aligned = copy_alignment(labels, batch["input_ids"], batch["attention_mask"], [0, 2, 3])
    mass = (out.copy_attention * aligned).sum(-1) * (1 - out.copy_gate[..., 0])
    return mass[aligned.any(-1)]


def test_copy_loss_is_off_by_default_and_adds_to_the_loss(tokenizer: AELLMTokenizer) -> None:
    batch = qa_batch(tokenizer, COPY_PAIRS)
    off = tiny_model(tokenizer, **COPY).eval()
    on = tiny_model(tokenizer, copy_loss_coef=2.0, **COPY).eval()
    out_off, out_on = off(**batch), on(**batch)
    assert off.config.copy_loss_coef == 0 and out_off.copy_loss is None
    assert torch.isfinite(out_on.copy_loss) and out_on.copy_loss.item() > 0
    torch.testing.assert_close(out_on.loss, out_off.loss + out_on.copy_loss)
    # the loss is 2 x the mean -log copy probability of the aligned answer tokens
    torch.testing.assert_close(out_on.copy_loss, -2.0 * copy_probability(on, batch).log().mean())
    # its gradient reaches the copy gate and the attention (the lm loss cut away)
    out_on.copy_loss.backward()
    attention = on.model.decoder.attention
    assert attention is not None and attention.copy_gate is not None
    assert attention.copy_gate.weight.grad is not None and attention.copy_gate.weight.grad.abs().sum() > 0
    assert attention.query.weight.grad is not None and attention.query.weight.grad.abs().sum() > 0
    # scheduled sampling (the step-by-step path) gives the same loss with gold tokens
    on.config.teacher_forcing_ratio = 0.999999
    torch.manual_seed(0)
    with torch.no_grad():
        stepwise = on.train()(**batch)
    torch.testing.assert_close(stepwise.copy_loss, out_on.copy_loss)


def test_copy_loss_points_the_copy_head_at_the_answer(tokenizer: AELLMTokenizer, tmp_path: Path) -> None:
    """Overfit question + sentence -> answer pairs with the copy loss (the real Trainer): the copy head then copies
    the answer tokens from their places in the sentence with probability 0.9 on average (each above 0.5), where the
    untrained model gives each less than 0.5."""
    batch = qa_batch(tokenizer, COPY_PAIRS)
    model = tiny_model(tokenizer, copy_loss_coef=1.0, **COPY)
    before = copy_probability(model.eval(), batch)
    assert before.max() < 0.5, before
    run_trainer(
        model.train(), tokenizer, pair_rows(tokenizer, COPY_PAIRS) * 4, tmp_path, steps=300, learning_rate=1e-2
    )
    after = copy_probability(model.eval(), batch)
    assert after.mean() > 0.9 and after.min() > 0.5, after


def test_encoder_self_attention_starts_as_the_identity_and_then_mixes_positions(
    tokenizer: AELLMTokenizer, tmp_path: Path
) -> None:
    """encoder_self_attention added to a saved model without it: the new layer loads initialised as the identity (the
    model's logits are unchanged); once its output projection is non-zero, the state at a sentence position depends
    on a question word that the backward GRU never reads after it, i.e. it reads the other positions."""
    batch = qa_batch(tokenizer, COPY_PAIRS)
    plain = tiny_model(tokenizer, **COPY).eval()
    plain.save_pretrained(tmp_path / "plain")
    model = AELLMForConditionalGeneration.from_pretrained(tmp_path / "plain", encoder_self_attention=True).eval()
    layer = model.model.encoder.self_attention
    assert layer is not None and torch.count_nonzero(layer.out_proj.weight) == 0
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, plain(**batch).logits)
        torch.nn.init.normal_(layer.out_proj.weight, std=0.5)
        assert not torch.allclose(model(**batch).logits, plain(**batch).logits)

    # one encoder GRU layer, forward direction only: the state at position i reads tokens 0..i and no later one
    one_way = tiny_model(tokenizer, decoder_attention=True, encoder_self_attention=True, num_hidden_layers=1).eval()
    assert one_way.model.encoder.self_attention is not None
    with torch.no_grad():
        torch.nn.init.normal_(one_way.model.encoder.self_attention.out_proj.weight, std=0.5)
        ids = batch["input_ids"][:1, :6].clone()
        changed = ids.clone()
        changed[0, 5] = 4 if int(ids[0, 5]) != 4 else 5  # another last token
        first = one_way.get_encoder()(input_ids=ids).states
        second = one_way.get_encoder()(input_ids=changed).states
        one_way.model.encoder.self_attention = None  # the GRU alone: the earlier states do not see the last token
        gru_first = one_way.get_encoder()(input_ids=ids).states
        gru_second = one_way.get_encoder()(input_ids=changed).states
    torch.testing.assert_close(gru_first[0, :5], gru_second[0, :5])
    assert not torch.allclose(first[0, :5], second[0, :5])


def test_loads_with_remote_code_without_lmforge(trained: dict, tokenizer: AELLMTokenizer, tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    trained["model"].save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    inputs = tokenizer(["bees make honey."], return_tensors="pt")
    with torch.no_grad():
        expected = trained["model"].generate(**inputs, max_new_tokens=8, do_sample=False)[0].tolist()

    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["lmforge"] = None  # `import lmforge` now fails
        try:
            import lmforge  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("lmforge is still importable")
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        model = AutoModelForSeq2SeqLM.from_pretrained({str(saved)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert "lmforge" not in type(model).__module__ and "lmforge" not in type(tokenizer).__module__
        inputs = tokenizer(["bees make honey."], return_tensors="pt")
        print(model.generate(**inputs, max_new_tokens=8, do_sample=False)[0].tolist())
        """
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(expected)
