"""LatentReasoner: the transformers model contract (contract_latent_reasoner.py, in-process and as remote code without
lmforge), then config, shapes and freezing, loss, generation, construction and save/load, on tiny randomly
initialised backbones built here and word-level tokenizers built with `tokenizers`."""

import copy
import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModel,
    AutoModelForSeq2SeqLM,
    BertConfig,
    BertModel,
    DynamicCache,
    Gemma2Config,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    ModernBertConfig,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)
from transformers.modeling_outputs import BaseModelOutput

from lmforge.models.latent_reasoner import (
    LatentReasonerConfig,
    LatentReasonerForConditionalGeneration,
    LatentReasonerModel,
    LatentReasonerProcessor,
    load_tokenizers,
    save_tokenizers,
)
from lmforge.models.latent_reasoner.modeling_latent_reasoner import CACHE_FIELD

from ...conftest import python_without_lmforge
from ..contract import Case, oracle_generate, run_in_subprocess, save_case
from .contract_latent_reasoner import CHECKS

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "dog",
    "ran",
    "in",
    "park",
    "sun",
    "was",
    "warm",
    "and",
    "bright",
    "rain",
    "fell",
    "all",
    "day",
    "long",
]
ENCODER_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
DECODER_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
ENCODER_VOCAB = len(ENCODER_SPECIALS) + len(WORDS)
DECODER_VOCAB = len(DECODER_SPECIALS) + len(WORDS)
MLP_PREFIXES = ("model.compression.", "model.middle.", "model.prefix_adapter.")


def word_tokenizer(specials: list[str], pad: str, unk: str, **special_tokens: str) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=pad, unk_token=unk, **special_tokens)


@pytest.fixture(scope="module")
def encoder_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(ENCODER_SPECIALS, "[PAD]", "[UNK]", cls_token="[CLS]", sep_token="[SEP]")


@pytest.fixture(scope="module")
def decoder_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(DECODER_SPECIALS, "<pad>", "<unk>", bos_token="<s>", eos_token="</s>")


def encoder_config(kind: str) -> PreTrainedConfig:
    if kind == "bert":
        return BertConfig(
            vocab_size=ENCODER_VOCAB,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            pad_token_id=0,
        )
    return ModernBertConfig(
        vocab_size=ENCODER_VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        local_attention=16,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        cls_token_id=2,
        sep_token_id=3,
    )


def decoder_config(kind: str) -> PreTrainedConfig:
    # A large initializer_range makes the random decoder's output depend visibly on the prefix.
    if kind == "gpt2":
        return GPT2Config(
            vocab_size=DECODER_VOCAB,
            n_embd=48,
            n_layer=2,
            n_head=2,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            initializer_range=0.3,
        )
    return LlamaConfig(
        vocab_size=DECODER_VOCAB,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        initializer_range=0.3,
    )


def tiny_config(encoder: str = "bert", decoder: str = "gpt2", **kwargs: object) -> LatentReasonerConfig:
    settings: dict = dict(
        idea_size=16,
        compression_hidden_size=24,
        middle_hidden_size=20,
        num_prefix_tokens=3,
        dropout=0.0,
        initializer_range=0.3,
    )
    settings.update(kwargs)
    return LatentReasonerConfig(encoder=encoder_config(encoder), decoder=decoder_config(decoder), **settings)


def tiny_model(encoder: str = "bert", decoder: str = "gpt2", seed: int = 0, **kwargs: object):
    torch.manual_seed(seed)
    return LatentReasonerForConditionalGeneration(tiny_config(encoder, decoder, **kwargs)).eval()


@pytest.fixture(scope="module")
def model() -> LatentReasonerForConditionalGeneration:
    return tiny_model()


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(4, ENCODER_VOCAB, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0  # the second text is two tokens shorter (right padding)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def mlp_names(model: torch.nn.Module) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(MLP_PREFIXES)}


# --------------------------------------------------------------------------------------------------------------------
# The transformers model contract


class LatentReasonerModelTester:
    """Tiny LatentReasoner configs (a BERT encoder and a Llama decoder) and inputs, the way transformers'
    `<Name>ModelTester` classes build them."""

    def __init__(
        self,
        batch_size: int = 3,
        seq_length: int = 9,
        encoder_vocab_size: int = 99,
        decoder_vocab_size: int = 97,
        encoder_hidden_size: int = 32,
        decoder_hidden_size: int = 48,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 37,
        max_position_embeddings: int = 64,
        num_prefix_tokens: int = 3,
    ) -> None:
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.encoder_vocab_size = encoder_vocab_size
        self.decoder_vocab_size = decoder_vocab_size
        self.encoder_hidden_size = encoder_hidden_size
        self.decoder_hidden_size = decoder_hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.num_prefix_tokens = num_prefix_tokens

    def get_encoder_config(self) -> BertConfig:
        return BertConfig(
            vocab_size=self.encoder_vocab_size,
            hidden_size=self.encoder_hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            pad_token_id=0,
        )

    def get_decoder_config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=self.decoder_vocab_size,
            hidden_size=self.decoder_hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads // 2,
            max_position_embeddings=self.max_position_embeddings,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            initializer_range=0.3,  # so that the random decoder's output visibly depends on the prefix
        )

    def get_config(self) -> LatentReasonerConfig:
        return LatentReasonerConfig(
            encoder=self.get_encoder_config(),
            decoder=self.get_decoder_config(),
            idea_size=16,
            compression_hidden_size=24,
            middle_hidden_size=20,
            num_prefix_tokens=self.num_prefix_tokens,
            dropout=0.0,
            initializer_range=0.3,
        )

    def prepare_input_ids(self) -> torch.Tensor:
        return torch.randint(4, self.encoder_vocab_size, (self.batch_size, self.seq_length))  # no special tokens

    def create_and_save_case(self, folder: Path) -> Path:
        torch.manual_seed(0)
        model = LatentReasonerForConditionalGeneration(self.get_config()).eval()
        return save_case(model, folder, self.prepare_input_ids())


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return LatentReasonerModelTester().create_and_save_case(tmp_path_factory.mktemp("latent_reasoner_contract"))


@pytest.fixture(scope="module")
def remote_results(case_folder: Path) -> dict[str, str]:
    return run_in_subprocess(case_folder, "seq2seq", "tests.models.latent_reasoner.contract_latent_reasoner:CHECKS")


@pytest.mark.parametrize("check", list(CHECKS))
def test_model_contract(check: str, case_folder: Path) -> None:
    CHECKS[check](Case(case_folder, "seq2seq"))


@pytest.mark.parametrize("check", list(CHECKS))
def test_model_contract_as_remote_code_without_lmforge(check: str, remote_results: dict[str, str]) -> None:
    assert remote_results[check] == "ok", remote_results[check]


def test_saved_folder_loads_as_a_frozen_base_model(case_folder: Path) -> None:
    base = AutoModel.from_pretrained(case_folder)
    assert type(base) is LatentReasonerModel
    trainable = {name for name, p in base.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("compression.", "middle.", "prefix_adapter.")) for name in trainable)


# --------------------------------------------------------------------------------------------------------------------
# Config


def test_config_defaults_and_sub_configs_from_dicts() -> None:
    default = LatentReasonerConfig()
    assert (default.encoder.model_type, default.decoder.model_type) == ("modernbert", "gpt2")
    assert (default.idea_size, default.compression_hidden_size, default.middle_hidden_size) == (256, 512, 512)
    assert default.num_prefix_tokens == 10 and default.freeze_encoder and default.freeze_decoder

    config = tiny_config()
    rebuilt = LatentReasonerConfig(**config.to_dict())  # the sub-configs come back from dicts through AutoConfig
    assert isinstance(rebuilt.encoder, BertConfig) and isinstance(rebuilt.decoder, GPT2Config)
    assert rebuilt.to_dict() == config.to_dict()
    assert config.resolved_decoder_start_token_id == 1  # the decoder's bos
    assert config.resolved_pad_token_id == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_prefix_tokens": 0}, "greater or equal to 1"),
        ({"dropout": 1.0}, "smaller than 1.0"),
        ({"hidden_act": "nope"}, "activation function"),
        ({"decoder": {"model_type": "t5"}}, "decoder-only causal language model"),
        ({"decoder_start_token_id": 60_000}, r"decoder_start_token_id \(60000\) is not a token of the decoder"),
        ({"pad_token_id": -5}, r"pad_token_id \(-5\) is not a token of the decoder"),
        ({"num_prefix_tokens": 1024}, "leaves no room in the decoder's context of 1024"),
    ],
)
def test_config_validation_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(Exception, match=message):
        LatentReasonerConfig(**kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Shapes and freezing


@pytest.mark.parametrize(("encoder", "decoder"), [("bert", "gpt2"), ("modernbert", "llama")])
def test_shapes_with_mismatched_widths(encoder: str, decoder: str) -> None:
    model = tiny_model(encoder, decoder)
    assert model.model.compression.layers[0].in_features == 32  # encoder width
    assert model.model.prefix_adapter.proj.out_features == 3 * 48  # num_prefix_tokens x decoder width
    assert model.lm_head.out_features == DECODER_VOCAB  # the decoder's own LM head
    inputs = batch()
    decoder_input_ids = torch.randint(4, DECODER_VOCAB, (2, 5))
    out = model(**inputs, decoder_input_ids=decoder_input_ids)
    assert out.logits.shape == (2, 5, DECODER_VOCAB)  # the prefix positions are dropped
    assert out.idea_vectors.shape == (2, 16)
    assert out.encoder_last_hidden_state.shape == (2, 7, 32)
    assert model.get_prefix_embeddings(out.idea_vectors).shape == (2, 3, 48)
    assert model.get_latent_vector(inputs["input_ids"], attention_mask=inputs["attention_mask"]).shape == (2, 16)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False, eos_token_id=None)
    assert generated.shape == (2, 5) and (generated[:, 0] == 1).all()  # starts with decoder_start_token_id
    base = LatentReasonerModel(model.config).eval()
    base.load_state_dict(model.model.state_dict())
    hidden = base(**inputs, decoder_input_ids=decoder_input_ids).last_hidden_state
    assert hidden.shape == (2, 5, 48)  # the decoder tokens only
    torch.testing.assert_close(model.lm_head(hidden), out.logits)


def test_mean_pooling_ignores_padding(model: LatentReasonerForConditionalGeneration) -> None:
    inputs = batch()
    short = inputs["input_ids"][1:, :5]
    padded_idea = model.get_latent_vector(inputs["input_ids"][1:], attention_mask=inputs["attention_mask"][1:])
    torch.testing.assert_close(padded_idea, model.get_latent_vector(short), rtol=1e-5, atol=1e-5)


def test_only_mlps_trainable_and_gradients_reach_all_of_them() -> None:
    model = tiny_model()
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trainable == mlp_names(model) and trainable
    model(**batch(), labels=torch.randint(4, DECODER_VOCAB, (2, 4))).loss.backward()
    with_grad = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert with_grad == trainable  # through the frozen decoder back to the compression MLP
    assert all(model.get_parameter(name).grad.abs().sum() > 0 for name in with_grad)

    unfrozen = tiny_model(freeze_decoder=False)
    assert all(parameter.requires_grad for parameter in unfrozen.model.decoder.parameters())
    assert unfrozen.lm_head.weight.requires_grad
    assert not any(parameter.requires_grad for parameter in unfrozen.model.encoder.parameters())


def test_trainer_step_changes_only_the_mlps(tmp_path: Path) -> None:
    model = tiny_model()
    generator = torch.Generator().manual_seed(2)
    rows = []
    for _ in range(4):
        rows.append(
            {
                "input_ids": torch.randint(4, ENCODER_VOCAB, (7,), generator=generator),
                "attention_mask": torch.ones(7, dtype=torch.long),
                "labels": torch.randint(4, DECODER_VOCAB, (5,), generator=generator),
            }
        )
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()

    optimized = {id(parameter) for group in trainer.optimizer.param_groups for parameter in group["params"]}
    named = dict(model.named_parameters())
    assert optimized == {id(named[name]) for name in mlp_names(model)}
    after = model.state_dict()
    for name, tensor in before.items():
        if name.startswith(MLP_PREFIXES):
            assert not torch.equal(tensor, after[name]), f"{name} did not change"
        else:
            assert torch.equal(tensor, after[name]), f"frozen {name} changed"


# --------------------------------------------------------------------------------------------------------------------
# Loss


def test_loss_is_masked_and_labels_build_decoder_inputs(model: LatentReasonerForConditionalGeneration) -> None:
    inputs = batch()
    labels = torch.tensor([[5, 6, 7, 2, -100, -100], [8, 9, 2, -100, -100, -100]])
    out = model(**inputs, labels=labels)

    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
    assert decoder_input_ids.tolist() == [[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0]]
    explicit = model(**inputs, decoder_input_ids=decoder_input_ids, labels=labels)
    torch.testing.assert_close(out.loss, explicit.loss)

    # Tokens at positions whose label is -100 (padding after the target) do not change the loss.
    changed = decoder_input_ids.clone()
    changed[0, 5] = 17
    changed[1, 4:] = torch.tensor([11, 12])
    torch.testing.assert_close(model(**inputs, decoder_input_ids=changed, labels=labels).loss, out.loss)

    # The loss is the mean cross-entropy over the target positions only (no loss on the prefix).
    keep = labels != -100
    manual = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, manual)

    # Masking the first target of each row (a "prompt") removes exactly those terms.
    prompt_masked = labels.clone()
    prompt_masked[:, 0] = -100
    keep = prompt_masked != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], prompt_masked[keep])
    torch.testing.assert_close(
        model(**inputs, decoder_input_ids=decoder_input_ids, labels=prompt_masked).loss, expected
    )


def test_decoder_attention_mask_of_ones_changes_nothing(model: LatentReasonerForConditionalGeneration) -> None:
    inputs = batch()
    decoder_input_ids = torch.randint(4, DECODER_VOCAB, (2, 5))
    plain = model(**inputs, decoder_input_ids=decoder_input_ids).logits
    masked = model(**inputs, decoder_input_ids=decoder_input_ids, decoder_attention_mask=torch.ones(2, 5)).logits
    torch.testing.assert_close(plain, masked)


# --------------------------------------------------------------------------------------------------------------------
# Generation


@pytest.mark.parametrize("decoder", ["gpt2", "llama"])
@pytest.mark.parametrize(
    "settings",
    [
        {"do_sample": False},
        {"do_sample": False, "num_beams": 3, "num_return_sequences": 2},
        {"do_sample": True, "temperature": 0.7, "top_p": 0.9},
    ],
    ids=["greedy", "beam", "sample"],
)
def test_generate_with_and_without_cache_agree(decoder: str, settings: dict) -> None:
    model = tiny_model(decoder=decoder)
    inputs = batch()
    results = []
    for use_cache in (True, False):
        torch.manual_seed(3)
        results.append(model.generate(**inputs, max_new_tokens=8, use_cache=use_cache, eos_token_id=None, **settings))
    assert torch.equal(results[0], results[1])
    rows = 2 * settings.get("num_return_sequences", 1)
    assert results[0].shape == (rows, 9)
    if not settings["do_sample"] and rows == 2:
        assert not torch.equal(results[0][0, 1:], results[0][1, 1:])  # the output depends on the input text


def test_generate_after_a_left_padded_decoder_prompt() -> None:
    model = tiny_model(decoder="llama")
    inputs = batch()
    prompt = torch.tensor([[1, 5, 6], [0, 1, 7]])  # the second prompt is one token shorter (left padding)
    prompt_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    settings = {"max_new_tokens": 5, "do_sample": False}
    cached = model.generate(**inputs, decoder_input_ids=prompt, decoder_attention_mask=prompt_mask, **settings)
    uncached = model.generate(
        **inputs, decoder_input_ids=prompt, decoder_attention_mask=prompt_mask, use_cache=False, **settings
    )
    assert torch.equal(cached, uncached) and torch.equal(cached[:, :3], prompt)
    alone = model.generate(
        input_ids=inputs["input_ids"][1:, :5], decoder_input_ids=torch.tensor([[1, 7]]), **settings
    )  # the second text without its padding, the second prompt without its padding
    assert torch.equal(cached[1, 1:], alone[0])


def test_generate_uses_the_decoder_cache(model: LatentReasonerForConditionalGeneration) -> None:
    out = model.generate(**batch(), max_new_tokens=4, do_sample=False, eos_token_id=None, return_dict_in_generate=True)
    cache = getattr(out, CACHE_FIELD).self_attention_cache
    # prefix + start token + 3 fed-back tokens (the 4th new token is never fed)
    assert cache.get_seq_length() == model.config.num_prefix_tokens + 1 + 3


def test_an_assistant_with_the_same_weights_has_its_drafts_accepted(
    model: LatentReasonerForConditionalGeneration,
) -> None:
    """The assistant's cache holds the prefix too, and assisted decoding crops it counting decoder tokens only:
    `prepare_inputs_for_generation` recomputes a cache cropped into the prefix, so the assistant's drafts stay right
    and the main model verifies several tokens per forward pass."""
    inputs = {key: value[:1] for key, value in batch().items()}
    new = 12
    settings = {"max_new_tokens": new, "do_sample": False, "eos_token_id": None}
    assistant = copy.deepcopy(model)
    calls: list[int] = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        assisted = model.generate(**inputs, assistant_model=assistant, **settings)
    finally:
        handle.remove()
    assert torch.equal(assisted, model.generate(**inputs, **settings))
    assert len(calls) <= new // 2, f"{len(calls)} forward passes of the main model for {new} tokens"


def test_generate_from_idea_vectors_matches_reading_the_text(model: LatentReasonerForConditionalGeneration) -> None:
    inputs = batch()
    ideas = model.get_latent_vector(inputs["input_ids"], attention_mask=inputs["attention_mask"])
    for settings in ({"do_sample": False}, {"num_beams": 3}):
        from_text = model.generate(**inputs, max_new_tokens=6, **settings)
        from_ideas = model.generate(idea_vectors=ideas, max_new_tokens=6, **settings)
        assert torch.equal(from_text, from_ideas)
    with pytest.raises(ValueError, match="not both"):
        model.generate(input_ids=inputs["input_ids"], idea_vectors=ideas)
    static = model.generate(idea_vectors=ideas, max_new_tokens=6, cache_implementation="static")
    assert torch.equal(static, model.generate(idea_vectors=ideas, max_new_tokens=6))


def test_interpolation_endpoints(
    model: LatentReasonerForConditionalGeneration, encoder_tokenizer: PreTrainedTokenizerFast
) -> None:
    text_a, text_b = "the cat sat on a mat", "rain fell all day long in the park"
    idea_a = model.get_latent_vector(text_a, tokenizer=encoder_tokenizer)[None]  # one text: (idea_size,)
    idea_b = model.get_latent_vector(text_b, tokenizer=encoder_tokenizer)[None]
    assert idea_a.shape == (1, 16) and not torch.equal(idea_a, idea_b)
    both = model.get_latent_vector([text_a, text_b], tokenizer=encoder_tokenizer)  # a batch keeps (B, idea_size)
    assert both.shape == (2, 16)
    torch.testing.assert_close(both, torch.cat([idea_a, idea_b]), rtol=1e-5, atol=1e-5)
    settings = {"max_new_tokens": 8, "do_sample": False}
    from_a = model.generate(idea_vectors=idea_a, **settings)
    from_b = model.generate(idea_vectors=idea_b, **settings)
    assert not torch.equal(from_a, from_b)
    assert torch.equal(
        model.interpolate_and_generate(text_a, text_b, 0.0, tokenizer=encoder_tokenizer, **settings), from_a
    )
    assert torch.equal(
        model.interpolate_and_generate(text_a, text_b, 1.0, tokenizer=encoder_tokenizer, **settings), from_b
    )
    encoded = encoder_tokenizer(text_a, return_tensors="pt")
    assert torch.equal(model.generate(**encoded, **settings), from_a)
    with pytest.raises(ValueError, match="encoder tokenizer"):
        model.get_latent_vector(text_a)


# --------------------------------------------------------------------------------------------------------------------
# Construction from modules, from pretrained backbones, save / load


def causal_lm_state_dict(model: LatentReasonerForConditionalGeneration) -> dict[str, torch.Tensor]:
    """The decoder's weights under the names of the causal LM it came from (GPT-2: `transformer.*`, `lm_head.*`)."""
    state = {f"transformer.{name}": tensor for name, tensor in model.model.decoder.state_dict().items()}
    state.update({f"lm_head.{name}": tensor for name, tensor in model.lm_head.state_dict().items()})
    return state


def test_build_from_modules_and_from_pretrained_backbones(tmp_path: Path) -> None:
    torch.manual_seed(4)
    encoder = BertModel(encoder_config("bert"))
    decoder = GPT2LMHeadModel(decoder_config("gpt2"))
    model = LatentReasonerForConditionalGeneration(encoder=encoder, decoder=decoder)
    # the causal LM is split: its base model is the decoder of the base model, its head is the model's LM head
    assert model.model.encoder is encoder and model.model.decoder is decoder.transformer
    assert model.lm_head is decoder.lm_head and model.lm_head.weight is model.model.decoder.wte.weight
    assert model.config.decoder.n_embd == 48 and model.config.idea_size == 256

    encoder.save_pretrained(tmp_path / "encoder")
    decoder.save_pretrained(tmp_path / "decoder")
    loaded = LatentReasonerForConditionalGeneration.from_encoder_decoder_pretrained(
        str(tmp_path / "encoder"),
        str(tmp_path / "decoder"),
        decoder_attn_implementation="eager",
        idea_size=8,
        num_prefix_tokens=2,
    )
    # A private is the point here: transformers has no public getter for the attention implementation, and
    # `_attn_implementation` is exactly what `decoder_attn_implementation=` must set on the decoder's config.
    assert loaded.config.decoder._attn_implementation == "eager"
    assert (loaded.config.idea_size, loaded.model.prefix_adapter.proj.out_features) == (8, 2 * 48)
    for name, tensor in encoder.state_dict().items():  # pretrained backbones are not re-initialised
        assert torch.equal(loaded.model.encoder.state_dict()[name], tensor), name
    for name, tensor in decoder.state_dict().items():
        assert torch.equal(causal_lm_state_dict(loaded)[name], tensor), name
    assert {name for name, p in loaded.named_parameters() if p.requires_grad} == mlp_names(loaded)

    # a backbone folder holding only a pickled `pytorch_model.bin` is refused, never unpickled
    pickled = tmp_path / "pickled_decoder"
    decoder.save_pretrained(pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(decoder.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        LatentReasonerForConditionalGeneration.from_encoder_decoder_pretrained(str(tmp_path / "encoder"), str(pickled))


def weight_keys(folder: Path) -> set[str]:
    keys: set[str] = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            keys.update(handle.keys())
    return keys


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, model: LatentReasonerForConditionalGeneration) -> Path:
    folder = tmp_path_factory.mktemp("latent_reasoner")
    model.save_pretrained(folder)
    return folder


def test_save_load_round_trip(model: LatentReasonerForConditionalGeneration, saved: Path) -> None:
    names = {file.name for file in saved.iterdir()}
    assert {"config.json", "configuration_latent_reasoner.py", "modeling_latent_reasoner.py"} <= names
    weight_files = {name for name in names if not name.endswith((".json", ".py"))}
    assert weight_files and all(name.endswith(".safetensors") for name in weight_files)
    auto_map = json.loads((saved / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSeq2SeqLM"].endswith("LatentReasonerForConditionalGeneration")
    assert auto_map["AutoModel"].endswith("LatentReasonerModel")

    keys = weight_keys(saved)
    assert "model.decoder.wte.weight" in keys and "lm_head.weight" not in keys  # tied: stored once
    assert any(key.startswith("model.encoder.") for key in keys) and mlp_names(model) <= keys

    loaded = AutoModelForSeq2SeqLM.from_pretrained(saved)
    assert type(loaded) is LatentReasonerForConditionalGeneration
    assert loaded.lm_head.weight is loaded.model.decoder.wte.weight  # tied again after loading
    assert {name for name, p in loaded.named_parameters() if p.requires_grad} == mlp_names(loaded)

    inputs = batch()
    decoder_input_ids = torch.randint(4, DECODER_VOCAB, (2, 5))
    torch.testing.assert_close(
        loaded(**inputs, decoder_input_ids=decoder_input_ids).logits,
        model(**inputs, decoder_input_ids=decoder_input_ids).logits,
        rtol=0,
        atol=0,
    )


def test_loads_and_generates_without_lmforge(
    model: LatentReasonerForConditionalGeneration, saved: Path, tmp_path: Path
) -> None:
    inputs = batch()
    rows = [ids[mask.bool()] for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)]
    expected = [oracle_generate(model, row, 6) for row in rows]  # plain forward passes, no generate()
    script = textwrap.dedent(
        f"""
        import json
        import torch
        from transformers import AutoModelForSeq2SeqLM

        model = AutoModelForSeq2SeqLM.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert "lmforge" not in type(model).__module__, type(model).__module__
        trainable = {{name.split(".")[1] for name, p in model.named_parameters() if p.requires_grad}}
        assert trainable == {{"compression", "middle", "prefix_adapter"}}, trainable
        input_ids = torch.tensor({inputs["input_ids"].tolist()})
        attention_mask = torch.tensor({inputs["attention_mask"].tolist()})
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, do_sample=False,
                             eos_token_id=None)
        print(json.dumps(out[:, 1:].tolist()))
        """
    )
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_tokenizers_saved_next_to_the_model(
    tmp_path: Path, encoder_tokenizer: PreTrainedTokenizerFast, decoder_tokenizer: PreTrainedTokenizerFast
) -> None:
    LatentReasonerProcessor(decoder_tokenizer, encoder_tokenizer).save_pretrained(tmp_path)
    assert (tmp_path / "encoder_tokenizer" / "tokenizer.json").exists() and (tmp_path / "tokenizer.json").exists()
    processor = LatentReasonerProcessor.from_pretrained(tmp_path)
    assert processor.encoder_tokenizer("the cat")["input_ids"] == encoder_tokenizer("the cat")["input_ids"]
    assert processor.tokenizer.bos_token == "<s>" and processor.tokenizer.convert_tokens_to_ids("cat") == 5
    # The deprecated functions of lmforge 0.1 still write and read the same layout, with a FutureWarning.
    with pytest.warns(FutureWarning, match="save_tokenizers is deprecated"):
        save_tokenizers(tmp_path / "old", encoder_tokenizer, decoder_tokenizer)
    with pytest.warns(FutureWarning, match="load_tokenizers is deprecated"):
        loaded_encoder, loaded_decoder = load_tokenizers(tmp_path / "old")
    assert loaded_encoder("the cat")["input_ids"] == encoder_tokenizer("the cat")["input_ids"]
    assert loaded_decoder.convert_tokens_to_ids("cat") == 5


def test_encoder_outputs_as_tuple_and_errors(model: LatentReasonerForConditionalGeneration) -> None:
    inputs = batch()
    decoder_input_ids = torch.randint(4, DECODER_VOCAB, (2, 3))
    reference = model(**inputs, decoder_input_ids=decoder_input_ids).logits
    assert model.get_encoder() is model.model.encoder and model.get_decoder() is model.model.decoder
    encoded = model.get_encoder()(**inputs)
    for encoder_outputs in (encoded, (encoded.last_hidden_state,), BaseModelOutput(encoded.last_hidden_state)):
        logits = model(
            attention_mask=inputs["attention_mask"],
            encoder_outputs=encoder_outputs,
            decoder_input_ids=decoder_input_ids,
        ).logits
        torch.testing.assert_close(logits, reference)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(**inputs)
    with pytest.raises(ValueError, match="input_ids"):
        model(decoder_input_ids=decoder_input_ids)
    with pytest.raises(NotImplementedError, match="separate vocabularies"):
        model.resize_token_embeddings(10)
    with pytest.raises(ValueError, match="cache does not hold the prefix"):
        model(decoder_input_ids=decoder_input_ids, **{CACHE_FIELD: DynamicCache()})


@pytest.mark.parametrize("decoder", ["gpt2", "llama"])
def test_pooled_encoder_output_gives_the_loss_and_gradients_of_reading_the_text(decoder: str) -> None:
    """The cached-encoder path: `pool_encoder_output` once, then `forward(pooled_encoder_output=)` skips the
    encoder and gives the live path's loss and MLP gradients; the bare model takes it too."""
    model = tiny_model(decoder=decoder)  # in eval mode: the cached outputs are the encoder's without dropout
    inputs = batch()
    labels = torch.tensor([[5, 6, 7, 2, -100], [8, 9, 2, -100, -100]])
    with torch.no_grad():
        pooled = model.pool_encoder_output(**inputs)
    assert pooled.shape == (2, model.config.encoder.hidden_size)
    results = []
    for encoder_side in (inputs, {"pooled_encoder_output": pooled}):
        model.zero_grad()
        out = model(**encoder_side, labels=labels)
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (live, live_grads), (cached, cached_grads) = results
    torch.testing.assert_close(cached.loss, live.loss)
    torch.testing.assert_close(cached.idea_vectors, live.idea_vectors)
    assert cached_grads.keys() == live_grads.keys() == mlp_names(model)
    for name, grad in live_grads.items():
        torch.testing.assert_close(cached_grads[name], grad, msg=name)
    assert cached.encoder_last_hidden_state is None and live.encoder_last_hidden_state is not None

    model.eval()
    decoder_input_ids = torch.randint(4, DECODER_VOCAB, (2, 3))
    bare = model.model(pooled_encoder_output=pooled, decoder_input_ids=decoder_input_ids).last_hidden_state
    torch.testing.assert_close(bare, model.model(**inputs, decoder_input_ids=decoder_input_ids).last_hidden_state)
    with pytest.raises(ValueError, match="either pooled_encoder_output or a text to read"):
        model(**inputs, pooled_encoder_output=pooled, labels=labels)
    with pytest.raises(ValueError, match=r"shape \(batch, encoder hidden size\)"):
        model(pooled_encoder_output=pooled[0], labels=labels)


def test_decoders_whose_head_does_more_than_the_output_embedding_are_refused() -> None:
    gemma = Gemma2Config(
        vocab_size=DECODER_VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
    )
    config = LatentReasonerConfig(encoder=encoder_config("bert"), decoder=gemma)
    with pytest.raises(ValueError, match=r"final_logit_softcapping=30\.0"):  # Gemma 2 soft-caps its logits
        LatentReasonerForConditionalGeneration(config)
