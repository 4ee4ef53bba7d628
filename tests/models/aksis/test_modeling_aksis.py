"""Aksis: the transformers model contract (tests/models/contract.py, in-process and as remote code without lmforge),
then config, forward, training, save/load, generation details, tokenizer and the Aksis cache."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Trainer,
    TrainingArguments,
)

from lmforge.models import AksisConfig, AksisForCausalLM, AksisModel, AksisTokenizer
from lmforge.models.aksis.modeling_aksis import (
    CACHE_FIELD,
    AksisLinear,
    mkl_products_stream_on_every_core,
    one_query_attention,
)

from ...conftest import SAMPLE_TEXT, TINY_AKSIS
from ..contract import (
    CAUSAL_CHECKS,
    Case,
    oracle_beam_search,
    oracle_greedy,
    oracle_sample,
    run_in_subprocess,
    save_case,
)


class AksisModelTester:
    """Tiny Aksis configs and inputs, the way transformers' `<Name>ModelTester` classes build them."""

    def __init__(
        self,
        batch_size: int = 3,
        seq_length: int = 9,
        vocab_size: int = 99,
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

    def get_config(self) -> AksisConfig:
        return AksisConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            hidden_dropout=0.0,
        )

    def prepare_input_ids(self) -> torch.Tensor:
        return torch.randint(4, self.vocab_size, (self.batch_size, self.seq_length))  # no special tokens

    def create_and_save_case(self, folder: Path) -> Path:
        torch.manual_seed(0)
        model = AksisForCausalLM(self.get_config()).eval()
        return save_case(model, folder, self.prepare_input_ids())


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory) -> Path:
    return AksisModelTester().create_and_save_case(tmp_path_factory.mktemp("aksis_contract"))


@pytest.fixture(scope="module")
def remote_results(case_folder) -> dict[str, str]:
    return run_in_subprocess(case_folder, "causal")


@pytest.mark.parametrize("check", list(CAUSAL_CHECKS))
def test_model_contract(check, case_folder):
    CAUSAL_CHECKS[check](Case(case_folder, "causal"))


@pytest.mark.parametrize("check", list(CAUSAL_CHECKS))
def test_model_contract_as_remote_code_without_lmforge(check, remote_results):
    assert remote_results[check] == "ok", remote_results[check]


def test_default_config_is_the_reference_size():
    config = AksisConfig()
    assert (config.vocab_size, config.max_position_embeddings, config.hidden_size) == (10004, 512, 512)
    assert (config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (6, 8, 2048)
    assert config.tie_word_embeddings


@pytest.mark.parametrize("tie", [True, False])
def test_an_untied_head_is_saved_and_a_tied_one_is_not(tmp_path, tie):
    """A tied head is left out of the saved weights (and tied again on load); an untied one is saved like any weight."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = AksisForCausalLM(AksisConfig(**TINY_AKSIS, vocab_size=60, tie_word_embeddings=tie)).eval()
    model.save_pretrained(tmp_path)
    assert ("lm_head.weight" in load_file(tmp_path / "model.safetensors")) is not tie
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert (loaded.lm_head.weight is loaded.model.embed_tokens.weight) is tie


def test_config_round_trip(tmp_path):
    config = AksisConfig(**TINY_AKSIS, hidden_dropout=0.0)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, AksisConfig)
    assert loaded.to_diff_dict() | {"_name_or_path": ""} == config.to_diff_dict() | {"_name_or_path": ""}
    assert AksisConfig.from_dict(config.to_dict()).hidden_size == 32


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "divisible"),
        ({"hidden_dropout": -0.1}, "hidden_dropout"),
        ({"max_position_embeddings": 0}, "max_position_embeddings"),
        ({"hidden_act": "nope"}, "hidden_act 'nope' is not an activation transformers knows"),
    ],
)
def test_config_rejects_values_that_do_not_fit(bad, words):
    with pytest.raises(Exception, match=words):
        AksisConfig(**bad)


def test_forward_shapes_and_loss(tiny_aksis):
    input_ids = torch.randint(4, tiny_aksis.config.vocab_size, (3, 10))
    out = tiny_aksis(input_ids=input_ids, labels=input_ids)
    assert out.logits.shape == (3, 10, tiny_aksis.config.vocab_size)
    assert out.loss.ndim == 0 and out.loss.item() > 0
    # an untrained model is close to uniform
    assert abs(out.loss.item() - torch.log(torch.tensor(float(tiny_aksis.config.vocab_size))).item()) < 1.0
    hidden = AksisModel(tiny_aksis.config)(input_ids).last_hidden_state
    assert hidden.shape == (3, 10, 32)


def test_lm_head_is_tied_to_embedding(tiny_aksis):
    assert tiny_aksis.lm_head.weight.data_ptr() == tiny_aksis.model.embed_tokens.weight.data_ptr()


def test_default_attention_dropout_is_off_so_sdpa_can_take_its_fused_kernel():
    assert AksisConfig().attention_dropout == 0.0
    assert AksisConfig().hidden_dropout == 0.1


@pytest.mark.parametrize("plain_products", [False, True], ids=["copies", "plain-products"])
def test_decoding_path_of_the_linear_layers_is_exact_and_scoped_to_generate(tiny_aksis, plain_products):
    """Inside `generate()`, one-row inputs (and the head's up to 4 rows) multiply by an (in, out) copy of each weight,
    the layout a CPU reads fastest, unless MKL streams the plain product on every core (both are tested on any CPU).
    Seen from outside: `generate()` writes the oracle's tokens (plain forward passes) for one row and for a batch, it
    sees an in-place change of the weights (as merging a LoRA adapter makes), and the state dict gains nothing."""
    for module in tiny_aksis.modules():
        if isinstance(module, AksisLinear):
            module._plain_products = plain_products
    keys = set(tiny_aksis.state_dict())
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    for rows in (1, 2):
        ids = torch.randint(4, tiny_aksis.config.vocab_size, (rows, 5))
        generated = tiny_aksis.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)[:, 5:]
        assert torch.equal(generated, oracle_greedy(tiny_aksis, ids, 6)), rows
    assert set(tiny_aksis.state_dict()) == keys

    qkv = tiny_aksis.model.layers[0].self_attn.qkv_proj
    ids = torch.randint(4, tiny_aksis.config.vocab_size, (1, 5))
    tiny_aksis.generate(ids, **kwargs)  # a first call, whose weights must not be remembered
    with torch.no_grad():
        qkv.weight.data += 0.5
    try:
        changed = tiny_aksis.generate(ids, **kwargs)[:, 5:]
        want = oracle_greedy(tiny_aksis, ids, 6)
    finally:
        with torch.no_grad():
            qkv.weight.data -= 0.5
    assert torch.equal(changed, want)
    # A private is the point here: the copies are a cache of the weights that must not outlive generate() (memory,
    # and weights changed between calls); nothing public shows whether they were dropped.
    assert all(getattr(module, "_transposed", None) is None for module in tiny_aksis.modules())


@pytest.mark.parametrize(
    ("vendor", "mkl", "plain"),
    [("GenuineIntel", True, True), ("AuthenticAMD", True, False), ("GenuineIntel", False, False), (None, True, False)],
)
def test_plain_products_only_where_mkl_runs_on_an_intel_cpu(tmp_path, monkeypatch, vendor, mkl, plain):
    cpuinfo = tmp_path / "cpuinfo"
    if vendor is not None:  # None: no such file (not Linux)
        cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu avx512f\n", encoding="utf-8")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    assert mkl_products_stream_on_every_core.__wrapped__(str(cpuinfo)) is plain


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_query_attention_is_sdpa_for_one_new_token(dtype):
    """The compiled decoding step's written-out attention gives SDPA's output for one query per row, over a padded
    static cache (left padding, unwritten slots at the end), in fp32 and bf16."""
    generator = torch.Generator().manual_seed(0)
    batch, heads, slots, head_dim = 3, 4, 10, 8
    query = torch.randn(batch, heads, 1, head_dim, generator=generator, dtype=dtype)
    key, value = (torch.randn(batch, heads, slots, head_dim, generator=generator, dtype=dtype) for _ in range(2))
    mask = torch.zeros(batch, 1, 1, slots, dtype=torch.bool)
    mask[0, ..., :7] = True  # 7 tokens written
    mask[1, ..., 2:7] = True  # 2 of them left padding
    mask[2, ..., 6] = True  # only the new token
    want = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)
    got, weights = one_query_attention(nn.Module(), query, key, value, mask, scaling=head_dim**-0.5)
    assert weights is None and got.shape == (batch, 1, heads, head_dim) and got.dtype == dtype
    tolerance = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-2, "rtol": 1e-2}
    torch.testing.assert_close(got, want, **tolerance)
    torch.testing.assert_close(got[2, 0], value[2, :, 6], **tolerance)  # one visible key: its value


def test_a_training_step_builds_no_cache(tiny_aksis):
    """A training forward pass returns no cache (building one would only copy keys and values); an evaluation
    forward pass does, unless asked not to."""
    ids = torch.randint(4, tiny_aksis.config.vocab_size, (2, 8))
    tiny_aksis.train()
    try:
        out = tiny_aksis(ids, labels=ids)
        assert getattr(out, CACHE_FIELD) is None
        out.loss.backward()
    finally:
        tiny_aksis.eval()
    assert getattr(tiny_aksis(ids), CACHE_FIELD).get_seq_length() == 8
    assert getattr(tiny_aksis(ids, use_cache=False), CACHE_FIELD) is None


def test_context_overflow_is_a_clear_error(tiny_aksis):
    with pytest.raises(ValueError, match="context length"):
        tiny_aksis(torch.ones(1, 65, dtype=torch.long))


def test_gradient_checkpointing_gives_same_gradients(aksis_tokenizer):
    torch.manual_seed(0)
    config = AksisConfig(vocab_size=len(aksis_tokenizer), **TINY_AKSIS, hidden_dropout=0.0, attention_dropout=0.0)
    model = AksisForCausalLM(config).train()
    ids = torch.randint(4, config.vocab_size, (2, 16))
    model(ids, labels=ids).loss.backward()
    reference = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(ids, labels=ids).loss.backward()
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight.grad, reference)


def test_trainer_lowers_the_loss(tmp_path, aksis_tokenizer):
    torch.manual_seed(0)
    config = AksisConfig(vocab_size=len(aksis_tokenizer), **TINY_AKSIS)
    model = AksisForCausalLM(config)
    ids = aksis_tokenizer(SAMPLE_TEXT * 4)["input_ids"]
    blocks = [ids[i : i + 32] for i in range(0, len(ids) - 32, 32)]
    dataset = [{"input_ids": b, "labels": b} for b in blocks]
    batch = torch.tensor(blocks[:4])
    model.eval()
    before = model(batch, labels=batch).loss.item()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=40,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=dataset).train()
    model.eval()
    after = model(batch, labels=batch).loss.item()
    assert after < before - 1.0


def test_save_load_round_trip_writes_only_safetensors(tmp_path, tiny_aksis, aksis_tokenizer):
    tiny_aksis.save_pretrained(tmp_path)
    aksis_tokenizer.save_pretrained(tmp_path)
    weights = [p.name for p in tmp_path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".safetensors")]
    assert weights == ["model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_aksis.AksisForCausalLM"
    assert (tmp_path / "modeling_aksis.py").is_file() and (tmp_path / "configuration_aksis.py").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, AksisForCausalLM)
    ids = torch.randint(4, tiny_aksis.config.vocab_size, (2, 9))
    torch.testing.assert_close(loaded(ids).logits, tiny_aksis(ids).logits, rtol=0, atol=0)
    assert isinstance(AutoModel.from_pretrained(tmp_path), AksisModel)


def test_batched_left_padded_generation_equals_the_oracle_one_by_one(tiny_aksis, aksis_tokenizer):
    aksis_tokenizer.padding_side = "left"
    prompts = ["First Citizen:", "All:\nSpeak, speak. You are all"]
    batch = aksis_tokenizer(prompts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    batched = tiny_aksis.generate(**batch, **kwargs)[:, -8:]
    for row, prompt in enumerate(prompts):
        alone = oracle_greedy(tiny_aksis, aksis_tokenizer(prompt, return_tensors="pt")["input_ids"], 8)
        assert torch.equal(batched[row], alone[0]), prompt


def test_seeded_sampling_is_reproducible_and_options_pass_through(tiny_aksis):
    ids = torch.randint(4, tiny_aksis.config.vocab_size, (1, 4))
    config = GenerationConfig(do_sample=True, top_k=5, top_p=0.9, temperature=0.7, max_new_tokens=10, pad_token_id=0)
    torch.manual_seed(3)
    first = tiny_aksis.generate(ids, generation_config=config)
    torch.manual_seed(3)
    second = tiny_aksis.generate(ids, generation_config=config)
    assert torch.equal(first, second)
    assert torch.equal(first[:, 4:], torch.tensor([oracle_sample(tiny_aksis, ids, 10, 3, 0.7, top_k=5, top_p=0.9)]))
    # top_k=1 sampling is greedy decoding: the option really reaches the sampler
    top1 = tiny_aksis.generate(
        ids, generation_config=GenerationConfig(do_sample=True, top_k=1, max_new_tokens=10, pad_token_id=0)
    )
    assert torch.equal(top1[:, 4:], oracle_greedy(tiny_aksis, ids, 10))


def test_tokenizer_round_trip_and_special_tokens(tmp_path, aksis_tokenizer):
    text = "Héllo wörld — naïve café ☃ 日本語 🙂\nsecond line"
    assert aksis_tokenizer.decode(aksis_tokenizer(text)["input_ids"]) == text
    assert [aksis_tokenizer.pad_token_id, aksis_tokenizer.unk_token_id] == [0, 1]
    assert [aksis_tokenizer.bos_token_id, aksis_tokenizer.eos_token_id] == [2, 3]
    aksis_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(loaded, AksisTokenizer)
    assert loaded(text)["input_ids"] == aksis_tokenizer(text)["input_ids"]
    chat = loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<s>user: hi</s>\n<s>assistant: "


def test_reference_tokenizer_has_10000_tokens_plus_4_specials():
    from lmforge.data import load_plays

    texts = [text for _, text in load_plays(max_plays=6)]
    tokenizer = AksisTokenizer.train_from_texts(texts, vocab_size=10004)
    assert len(tokenizer) == 10004
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]


def test_aksis_cache_grows_in_place_and_behaves_like_a_dynamic_cache():
    from transformers import DynamicLayer

    from lmforge.models.aksis.modeling_aksis import AksisCacheLayer

    layer, reference = AksisCacheLayer(), DynamicLayer()
    keys, values = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
    buffers = []
    for start, stop in [(0, 3), (3, 4), (4, 5)]:  # a prompt, then one token at a time
        got = layer.update(keys[:, :, start:stop], values[:, :, start:stop])
        want = reference.update(keys[:, :, start:stop], values[:, :, start:stop])
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
        buffers.append(layer.keys.untyped_storage().data_ptr())
    # `keys` (public: what a DynamicLayer holds) is a view of a larger buffer, which the one-token updates wrote into:
    # appended in place, one buffer with room for 64 positions
    storage = layer.keys.untyped_storage()
    assert len(set(buffers)) == 1 and storage.nbytes() == 2 * 4 * 64 * 8 * keys.element_size()
    layer.crop(-2)  # crop then append overwrites the dropped positions
    reference.crop(-2)
    got = layer.update(keys[:, :, :1], values[:, :, :1])
    want = reference.update(keys[:, :, :1], values[:, :, :1])
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    beams = torch.tensor([1, 1])
    layer.reorder_cache(beams)  # replaces the tensors: the next update starts new buffers from them
    reference.reorder_cache(beams)
    got = layer.update(keys[:, :, 4:5], values[:, :, 4:5])
    want = reference.update(keys[:, :, 4:5], values[:, :, 4:5])
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    assert layer.keys.untyped_storage().data_ptr() != storage.data_ptr()  # a new buffer from the reordered tensors
    assert layer.get_seq_length() == reference.get_seq_length() == 5


def test_generate_uses_the_aksis_cache_and_both_caches_give_the_oracles_tokens(tiny_aksis):
    from transformers import DynamicCache

    from lmforge.models.aksis.modeling_aksis import AksisCache

    ids = torch.randint(4, tiny_aksis.config.vocab_size, (2, 5))
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    out = tiny_aksis.generate(ids, return_dict_in_generate=True, **kwargs)
    assert isinstance(getattr(out, CACHE_FIELD), AksisCache)
    plain = tiny_aksis.generate(ids, **{CACHE_FIELD: DynamicCache(config=tiny_aksis.config)}, **kwargs)
    want = oracle_greedy(tiny_aksis, ids, 8)
    assert torch.equal(out.sequences[:, 5:], want) and torch.equal(plain[:, 5:], want)
    beams = tiny_aksis.generate(ids, num_beams=3, **kwargs)
    plain_beams = tiny_aksis.generate(
        ids, num_beams=3, **{CACHE_FIELD: DynamicCache(config=tiny_aksis.config)}, **kwargs
    )
    for row in range(2):
        want_row = oracle_beam_search(tiny_aksis, ids[row], 3, 8)
        assert beams[row, 5:].tolist() == plain_beams[row, 5:].tolist() == want_row, row
