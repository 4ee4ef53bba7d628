"""`skip_logits`: Aksis's (and, by the copy, CharTransformer's) loss without its logits (torch's chunked
`linear_cross_entropy`), and the training argument `skip_logits: true` that asks for it in the real Trainer's steps
that need only the loss."""

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, set_seed

from lmforge import LmforgeError
from lmforge.models.aksis import AksisConfig, AksisForCausalLM
from lmforge.models.aksis.modeling_aksis import causal_lm_loss_without_logits
from lmforge.training import LmforgeTrainingArguments, parse_recipe, run_training
from lmforge.training.run import build_setup, build_trainer
from lmforge.training.trainer import LmforgeTrainer

from .conftest import TINY_AKSIS
from .test_training import tiny_recipe

VOCAB = 300


def tiny_aksis() -> AksisForCausalLM:
    torch.manual_seed(0)
    config = AksisConfig(vocab_size=VOCAB, hidden_dropout=0.0, attention_dropout=0.0, **TINY_AKSIS)
    return AksisForCausalLM(config).train()


def loss_and_grads(model: torch.nn.Module, **inputs) -> tuple[torch.Tensor, list[torch.Tensor], object]:
    model.zero_grad()
    out = model(**inputs)
    loss = out.loss if not isinstance(out, tuple) else out[0]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()], out


@pytest.mark.parametrize("num_items_in_batch", [None, torch.tensor(41)], ids=["mean", "sum-over-items"])
def test_loss_and_gradients_equal_the_logits_path(num_items_in_batch):
    model = tiny_aksis()
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 20))  # 3 x 20 positions: more than one chunk of 16 rows below
    labels = ids.clone()
    labels[0, :6] = -100  # ignored targets
    extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
    loss, grads, out = loss_and_grads(model, input_ids=ids, labels=labels, **extra)
    assert out.logits.shape == (3, 20, VOCAB)
    fused_loss, fused_grads, fused_out = loss_and_grads(model, input_ids=ids, labels=labels, skip_logits=True, **extra)
    assert fused_out.logits is None
    torch.testing.assert_close(fused_loss, loss, rtol=1e-6, atol=1e-6)
    for (name, _), grad, fused in zip(model.named_parameters(), grads, fused_grads, strict=True):
        torch.testing.assert_close(fused, grad, rtol=1e-5, atol=1e-6, msg=name)
    # the tuple output leads with the loss too
    tuple_loss, _, tuple_out = loss_and_grads(
        model, input_ids=ids, labels=labels, skip_logits=True, return_dict=False, **extra
    )
    assert isinstance(tuple_out, tuple)
    torch.testing.assert_close(tuple_loss, loss, rtol=1e-6, atol=1e-6)


def test_chunks_and_autocast():
    torch.manual_seed(0)
    hidden = torch.randn(2, 40, 16)
    weight = torch.randn(VOCAB, 16) * 0.1
    labels = torch.randint(0, VOCAB, (2, 40))
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
    reference = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, VOCAB), shifted.reshape(-1))
    for chunk_rows in (7, 80, 256):  # a ragged last chunk, exactly one chunk, fewer rows than a chunk
        loss = causal_lm_loss_without_logits(hidden, weight, labels, chunk_rows=chunk_rows)
        torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-6)
    # under autocast the product runs in bf16, as the head's would; the loss comes back in fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = causal_lm_loss_without_logits(hidden, weight, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=2e-2, atol=0.0)


def test_skip_logits_needs_labels():
    with pytest.raises(ValueError, match="pass labels"):
        tiny_aksis()(input_ids=torch.randint(0, VOCAB, (1, 5)), skip_logits=True)


def test_trainer_skips_logits_where_only_the_loss_is_needed(tmp_path, tiny_text_file):
    plain, skipping = tmp_path / "plain", tmp_path / "skip"
    run_training(*parse_recipe(tiny_recipe(tiny_text_file, plain)))
    recipe = tiny_recipe(tiny_text_file, skipping, skip_logits=True)
    set_seed(recipe["seed"])  # as run_training does
    setup = build_setup(*parse_recipe(recipe))
    calls: list[tuple[bool, bool]] = []  # (training, skip_logits) of every forward

    def spy(module, args, kwargs, output):
        calls.append((module.training, bool(kwargs.get("skip_logits"))))
        assert (output.logits is None) == bool(kwargs.get("skip_logits"))

    setup.model.register_forward_hook(spy, with_kwargs=True)
    trainer = build_trainer(setup, parse_recipe(recipe)[2])
    trainer.train()
    assert calls.count((True, True)) == 12 and (True, False) not in calls  # every training step, max_steps 12
    # the evaluations (no compute_metrics: the loss only) skipped them too
    assert (False, True) in calls and (False, False) not in calls
    calls.clear()
    predictions = trainer.predict(setup.eval_dataset)  # predictions need the logits: they are kept
    assert calls and set(calls) == {(False, False)}
    assert predictions.predictions[0].shape[-1] == setup.model.config.vocab_size
    trainer.save_model()
    trainer.state.save_to_json(str(skipping / "trainer_state.json"))
    # the same seeded run with and without skip_logits: the same losses and weights
    logs = [json.loads((folder / "trainer_state.json").read_text())["log_history"] for folder in (plain, skipping)]
    losses = [[entry["loss"] for entry in log if "loss" in entry] for log in logs]
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    eval_losses = [
        {entry["step"]: entry["eval_loss"] for entry in reversed(log) if "eval_loss" in entry} for log in logs
    ]
    assert set(eval_losses[1]) == {6, 12}
    assert [eval_losses[1][step] for step in (6, 12)] == pytest.approx([eval_losses[0][step] for step in (6, 12)])
    a = AutoModelForCausalLM.from_pretrained(plain).state_dict()
    b = AutoModelForCausalLM.from_pretrained(skipping).state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


def test_skip_logits_with_lora(tmp_path):
    model = get_peft_model(tiny_aksis(), LoraConfig(r=4, target_modules=["qkv_proj"]))
    args = LmforgeTrainingArguments(output_dir=str(tmp_path), skip_logits=True, use_cpu=True, report_to="none")
    trainer = LmforgeTrainer(model=model, args=args)  # PEFT passes skip_logits on to Aksis
    ids = torch.randint(0, VOCAB, (2, 10))
    loss = trainer.compute_loss(model.train(), {"input_ids": ids, "labels": ids})
    loss.backward()
    assert all(p.grad is not None for name, p in model.named_parameters() if p.requires_grad)


def test_models_without_skip_logits_and_label_smoothing_are_refused(tmp_path):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    args = LmforgeTrainingArguments(output_dir=str(tmp_path), skip_logits=True, use_cpu=True, report_to="none")
    with pytest.raises(LmforgeError, match="GPT2LMHeadModel does not: set skip_logits: false"):
        LmforgeTrainer(model=gpt2, args=args)
    smoothing = LmforgeTrainingArguments(
        output_dir=str(tmp_path), skip_logits=True, label_smoothing_factor=0.1, use_cpu=True, report_to="none"
    )
    with pytest.raises(LmforgeError, match="label_smoothing_factor: 0"):
        LmforgeTrainer(model=tiny_aksis(), args=smoothing)
