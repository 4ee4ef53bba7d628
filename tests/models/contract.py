"""The transformers model contract, as checks that any saved model folder must pass.

Each check takes a `Case` (a saved model folder and the inputs saved beside it) and raises `AssertionError` when the
model breaks the contract. The module imports only torch, transformers and safetensors, never lmforge, so the same
checks run twice per architecture:

- in the test process, where `from_pretrained` resolves to the lmforge classes registered with the Auto classes;
- in an interpreter where `import lmforge` fails, on the folder loaded with `trust_remote_code=True` (the code
  saved next to the weights): the session's one remote-code worker (tests/remote_worker.py, `run_in_subprocess`
  below), shared by every architecture.

The reference for generation is an independent oracle: a loop of plain full forward passes, no cache, no
`generate()`. Everything `generate()` does (cached, static cache, compiled, batched with left padding, continued from
a returned cache, from `inputs_embeds`, assisted) must give the oracle's tokens.

The groups follow what transformers' common model and generation suites check on in-library models: hidden states
and attentions, tuple outputs, eager/SDPA equivalence with padding, complete `generate()` dict outputs, static cache
and `torch.compile(fullgraph=True)`, continuation from a returned cache, `inputs_embeds`, assisted decoding; and
`torch.export` through transformers' ExecuTorch entry point, as its export tests do for Llama.
"""

from __future__ import annotations

import copy
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    PreTrainedModel,
    StaticCache,
)
from transformers.modeling_outputs import BaseModelOutputWithPast

# transformers 5.24 renamed the cache field of outputs (and the cache argument) `past_key_values` -> `cache`.
CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
INPUTS_FILE = "contract_inputs.safetensors"


@dataclass
class Case:
    """A saved model folder with the inputs to check it on, loaded with the lmforge classes or as remote code."""

    folder: Path
    kind: str  # "causal" or "seq2seq"
    trust_remote_code: bool = False
    inputs: dict[str, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = load_file(str(Path(self.folder) / INPUTS_FILE))

    def load(self, head: bool = True, **kwargs: Any) -> PreTrainedModel:
        """The model with its head (`AutoModelForCausalLM` / `AutoModelForSeq2SeqLM`) or the base (`AutoModel`)."""
        if not head:
            auto: Any = AutoModel
        else:
            auto = AutoModelForCausalLM if self.kind == "causal" else AutoModelForSeq2SeqLM
        model = auto.from_pretrained(self.folder, trust_remote_code=self.trust_remote_code, **kwargs)
        return model.eval()

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def attention_mask(self) -> torch.Tensor:
        """The mask of `input_ids`: the first row is left-padded, the others are full."""
        return self.inputs["attention_mask"]


def save_case(model: PreTrainedModel, folder: Path, input_ids: torch.Tensor, pad_left: int = 2) -> Path:
    """Save `model` (with its code, as a training run does) and the inputs of the checks into `folder`.

    `input_ids` is (B, T) with B >= 2; the first `pad_left` positions of row 0 become left padding.
    """
    model.save_pretrained(folder)
    input_ids = input_ids.clone()
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, :pad_left] = 0
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    input_ids[0, :pad_left] = pad
    save_file({"input_ids": input_ids, "attention_mask": attention_mask}, str(Path(folder) / INPUTS_FILE))
    return Path(folder)


def _get_cache(output: Any) -> Any:
    return getattr(output, CACHE_FIELD)


def _layers(config: Any) -> int:
    return int(config.num_hidden_layers)


def _heads(config: Any) -> int:
    return int(config.num_attention_heads)


# --------------------------------------------------------------------------------------------------------------------
# The oracle


@torch.no_grad()
def oracle_greedy(
    model: PreTrainedModel, input_ids: torch.Tensor, new_tokens: int, **model_kwargs: Any
) -> torch.Tensor:
    """Greedy decoding by full forward passes over the whole sequence, one row at a time: no cache, no padding, no
    `generate()`. Returns the (1, new_tokens) new tokens of each row stacked as (B, new_tokens)."""
    rows = []
    for row in input_ids:
        sequence = row.unsqueeze(0)
        for _ in range(new_tokens):
            logits = model(input_ids=sequence, use_cache=False, **model_kwargs).logits  # (1, T, V)
            next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], dim=1)
        rows.append(sequence[0, row.shape[0] :])
    return torch.stack(rows)


def decoder_start_token_id(model: PreTrainedModel) -> int:
    """The token an encoder-decoder's decoder starts from: the generation config's, else the config's (LatentReasoner
    resolves an unset one to its decoder's `bos_token_id`)."""
    config = model.config
    for candidate in (
        getattr(model.generation_config, "decoder_start_token_id", None),
        getattr(config, "resolved_decoder_start_token_id", None),
        getattr(config, "decoder_start_token_id", None),
    ):
        if candidate is not None:
            return int(candidate)
    raise ValueError(f"{type(model).__name__} has no decoder start token")


@torch.no_grad()
def oracle_generate(
    model: PreTrainedModel,
    input_ids: Any,
    max_new_tokens: int,
    eos_token_id: int | list[int] | None = None,
    margins: list[float] | None = None,
    no_repeat_ngram_size: int = 0,
    decoder_prompt: list[int] | None = None,
    **model_kwargs: Any,
) -> list[int]:
    """The greedy new tokens for one prompt (a list of ids, no padding) by plain full forward passes: no cache, no
    `generate()`. A decoder-only model runs over the prompt and the tokens so far; an encoder-decoder reads the prompt
    with its encoder and runs over its decoder start token and the tokens so far. Stops after an end-of-sequence
    token (kept, as `generate()` keeps it). `no_repeat_ngram_size` n > 0: a token that would repeat an n-gram of the
    sequence (the decoder's, start token included) is never chosen. `margins`, when given, receives the gap between
    the best and the second best logit at each step (how far the choice is from a tie). `decoder_prompt` (an
    encoder-decoder's): the decoder reads it after its start token, and the n-grams are then the new tokens' only."""
    prompt = torch.as_tensor(input_ids, dtype=torch.long).reshape(1, -1)
    eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or [])
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    sequence = torch.tensor([[decoder_start_token_id(model), *(decoder_prompt or [])]]) if seq2seq else prompt
    ngram_start = sequence.shape[1] if decoder_prompt else 0
    new: list[int] = []
    for _ in range(max_new_tokens):
        if seq2seq:
            out = model(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                decoder_input_ids=sequence,
                use_cache=False,
                **model_kwargs,
            )
        else:
            out = model(input_ids=sequence, use_cache=False, **model_kwargs)
        logits = out.logits[0, -1].float()  # (V,)
        n = no_repeat_ngram_size
        if n > 0 and sequence.shape[1] - ngram_start >= n:
            tokens = sequence[0, ngram_start:].tolist()
            banned = [
                tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i : i + n - 1] == tokens[-(n - 1) :]
            ]
            logits[banned] = float("-inf")
        if margins is not None:
            top = logits.topk(2).values
            margins.append(float(top[0] - top[1]))
        token = int(logits.argmax())
        new.append(token)
        sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
        if token in eos:
            break
    return new


@torch.no_grad()
def oracle_beam_search(model: PreTrainedModel, input_ids: Any, num_beams: int, new_tokens: int) -> list[int]:
    """Beam search by plain full forward passes for a decoder-only model, with no end-of-sequence token: keep the
    `num_beams` sequences of highest total log-probability, extend each by every token, keep the best `num_beams`
    again; after `new_tokens` steps, the new tokens of the best (all beams have the same length, so no length
    penalty can reorder them)."""
    prompt = list(torch.as_tensor(input_ids).reshape(-1).tolist())
    beams: list[tuple[float, list[int]]] = [(0.0, [])]
    for _ in range(new_tokens):
        candidates = []
        for score, tokens in beams:
            logits = model(input_ids=torch.tensor([prompt + tokens]), use_cache=False).logits[0, -1].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            top = log_probs.topk(num_beams)
            candidates += [(score + float(v), [*tokens, int(i)]) for v, i in zip(top.values, top.indices, strict=True)]
        beams = sorted(candidates, key=lambda candidate: candidate[0], reverse=True)[:num_beams]
    return beams[0][1]


@torch.no_grad()
def oracle_sample(
    model: PreTrainedModel,
    input_ids: Any,
    new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
    bad_words_ids: list[list[int]] | None = None,
) -> list[int]:
    """Sampling by plain full forward passes for a decoder-only model: `torch` seeded with `seed`, then at each step
    the last token of every `bad_words_ids` sequence whose other tokens end the sequence so far banned, the last
    logits divided by `temperature`, cut to the `top_k` best and to the smallest set of best tokens whose
    probability reaches `top_p` (the best token always stays), and one `torch.multinomial` draw from their softmax:
    what a seeded sampling `generate()` must draw. Stops after `eos_token_id` (kept)."""
    torch.manual_seed(seed)
    sequence = list(torch.as_tensor(input_ids).reshape(-1).tolist())
    new: list[int] = []
    for _ in range(new_tokens):
        logits = model(input_ids=torch.tensor([sequence]), use_cache=False).logits[0, -1].float() / temperature
        for banned in bad_words_ids or []:
            if len(banned) == 1 or sequence[-(len(banned) - 1) :] == banned[:-1]:
                logits[banned[-1]] = float("-inf")
        if top_k:
            kept = logits.topk(min(top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < kept, float("-inf"))
        if top_p is not None and top_p < 1.0:
            ascending, order = logits.sort()
            drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1.0 - top_p  # the least likely tokens, up to 1 - top_p
            drop[-1] = False
            logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        token = int(torch.multinomial(logits.softmax(dim=-1), num_samples=1))
        new.append(token)
        sequence.append(token)
        if token == eos_token_id:
            break
    return new


def _unpadded_rows(case: Case) -> list[torch.Tensor]:
    return [ids[mask.bool()] for ids, mask in zip(case.input_ids, case.attention_mask, strict=True)]


def _oracle_rows(model: PreTrainedModel, case: Case, new_tokens: int) -> list[torch.Tensor]:
    return [oracle_greedy(model, row.unsqueeze(0), new_tokens)[0] for row in _unpadded_rows(case)]


GREEDY = {"do_sample": False, "num_beams": 1, "eos_token_id": None}


# --------------------------------------------------------------------------------------------------------------------
# Decoder-only checks


def causal_hidden_states(case: Case) -> None:
    """`output_hidden_states=True`: num_hidden_layers + 1 states (B, T, C) from the base model and the head, the last
    one the base model's `last_hidden_state`; they keep their gradient (retain_grad) through the loss."""
    ids, mask = case.input_ids, case.attention_mask
    base = case.load(head=False)
    out = base(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    config = base.config
    assert out.hidden_states is not None, "output_hidden_states=True returned no hidden states"
    assert len(out.hidden_states) == _layers(config) + 1, len(out.hidden_states)
    for state in out.hidden_states:
        assert state.shape == (*ids.shape, config.hidden_size), state.shape
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
    assert not torch.equal(out.hidden_states[0], out.hidden_states[1])

    model = case.load(attn_implementation="eager")
    model.config.output_hidden_states = True  # the config default is honoured too
    out = model(input_ids=ids, attention_mask=mask, labels=ids, output_attentions=True)
    assert len(out.hidden_states) == _layers(config) + 1
    hidden, attention = out.hidden_states[0], out.attentions[0]
    hidden.retain_grad()
    attention.retain_grad()
    out.loss.backward()
    assert hidden.grad is not None and attention.grad is not None
    plain = case.load()(input_ids=ids, attention_mask=mask)
    assert plain.hidden_states is None and plain.attentions is None, "outputs must be opt-in"


def causal_attentions(case: Case) -> None:
    """`output_attentions=True` (eager): one (B, heads, T, T) map per layer, rows summing to 1, nothing attended in
    the future or on padding."""
    ids, mask = case.input_ids, case.attention_mask
    model = case.load(attn_implementation="eager")
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    config = model.config
    assert out.attentions is not None and len(out.attentions) == _layers(config)
    seq_len = ids.shape[1]
    future = torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), diagonal=1)
    for attention in out.attentions:
        assert attention.shape == (ids.shape[0], _heads(config), seq_len, seq_len), attention.shape
        real_rows = mask[:, None, :, None].bool().expand_as(attention)
        sums = attention.sum(-1, keepdim=True).expand_as(attention)
        torch.testing.assert_close(sums[real_rows], torch.ones_like(sums[real_rows]))
        assert attention[future.expand_as(attention) & real_rows].abs().max() == 0
        padded_keys = ~mask[:, None, None, :].bool().expand_as(attention)
        assert attention[padded_keys & real_rows].abs().max() == 0


def causal_eager_sdpa_padding(case: Case) -> None:
    """Eager and SDPA attention give the same logits (fp32) with left padding and with right padding."""
    eager = case.load(attn_implementation="eager")
    sdpa = case.load(attn_implementation="sdpa")
    ids, left_mask = case.input_ids, case.attention_mask
    right_ids, right_mask = ids.clone(), torch.ones_like(left_mask)
    right_mask[0, -2:] = 0
    for batch, mask in ((ids, left_mask), (right_ids, right_mask)):
        want = eager(input_ids=batch, attention_mask=mask).logits
        got = sdpa(input_ids=batch, attention_mask=mask).logits
        keep = mask.bool()
        torch.testing.assert_close(got[keep], want[keep], rtol=1e-4, atol=1e-5)


def causal_tuple_outputs(case: Case) -> None:
    """`return_dict=False` (argument or config) gives the tuple form: (loss, logits, ...) equal to the dict's."""
    ids = case.input_ids[1:]
    model = case.load()
    as_dict = model(input_ids=ids, labels=ids)
    as_tuple = model(input_ids=ids, labels=ids, return_dict=False)
    assert isinstance(as_tuple, tuple), type(as_tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    assert len(as_tuple) == len(as_dict.to_tuple())
    base = case.load(head=False)
    base_tuple = base(input_ids=ids, return_dict=False)
    assert isinstance(base_tuple, tuple)
    torch.testing.assert_close(base_tuple[0], base(input_ids=ids).last_hidden_state)
    model.config.return_dict = False
    assert isinstance(model(input_ids=ids), tuple)


def causal_generate_dict_outputs(case: Case) -> None:
    """`return_dict_in_generate` with scores, logits, attentions and hidden states is complete for greedy,
    sampling, beam search and beam sampling."""
    model = case.load(attn_implementation="eager")
    config = model.config
    ids, mask = case.input_ids, case.attention_mask
    batch, prompt = ids.shape
    new = 4
    modes = {
        "greedy": {"do_sample": False},
        "sample": {"do_sample": True, "top_k": 0},
        "beam_search": {"do_sample": False, "num_beams": 2, "num_return_sequences": 2},
        "beam_sample": {"do_sample": True, "num_beams": 2},
    }
    for name, settings in modes.items():
        torch.manual_seed(0)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new,
            min_new_tokens=new,
            return_dict_in_generate=True,
            output_scores=True,
            output_logits=True,
            output_attentions=True,
            output_hidden_states=True,
            pad_token_id=config.pad_token_id,
            **settings,
        )
        rows = batch * settings.get("num_return_sequences", 1)
        beams = batch * settings.get("num_beams", 1)
        assert out.sequences.shape == (rows, prompt + new), (name, out.sequences.shape)
        assert len(out.scores) == new and len(out.logits) == new, name
        for scores, logits in zip(out.scores, out.logits, strict=True):
            assert scores.shape == (beams, config.vocab_size) and logits.shape == (beams, config.vocab_size), name
        assert len(out.attentions) == new and len(out.hidden_states) == new, name
        for step, (attentions, hidden_states) in enumerate(zip(out.attentions, out.hidden_states, strict=True)):
            assert len(attentions) == _layers(config) and len(hidden_states) == _layers(config) + 1, name
            query_len = prompt if step == 0 else 1
            assert attentions[0].shape == (beams, _heads(config), query_len, prompt + step), (name, step)
            assert hidden_states[0].shape == (beams, query_len, config.hidden_size), (name, step)
        assert _get_cache(out) is not None, name
        if "num_beams" in settings:
            assert out.sequences_scores is not None and out.beam_indices is not None, name


def causal_cache_equivalence(case: Case) -> None:
    """Greedy, seeded sampling and beam search give the same tokens with and without the cache, on a left-padded
    batch; greedy equals the oracle row by row."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    new = 6
    settings = {
        "greedy": dict(GREEDY),
        "sample": {"do_sample": True, "top_k": 0, "eos_token_id": None},
        "beam_search": {"do_sample": False, "num_beams": 3, "eos_token_id": None},
    }
    for name, kwargs in settings.items():
        results = []
        for use_cache in (True, False):
            torch.manual_seed(7)
            results.append(
                model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=new,
                    use_cache=use_cache,
                    pad_token_id=model.config.pad_token_id,
                    **kwargs,
                )
            )
        assert torch.equal(results[0], results[1]), f"{name}: cached {results[0].tolist()} != {results[1].tolist()}"
    greedy = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, **GREEDY)[:, -new:]
    for row, want in enumerate(_oracle_rows(model, case, new)):
        assert torch.equal(greedy[row], want), f"row {row}: generate {greedy[row].tolist()} != oracle {want.tolist()}"


def causal_static_cache(case: Case) -> None:
    """`cache_implementation="static"` gives the oracle's tokens on a left-padded batch."""
    model = case.load()
    new = 6
    out = model.generate(
        input_ids=case.input_ids,
        attention_mask=case.attention_mask,
        max_new_tokens=new,
        cache_implementation="static",
        **GREEDY,
    )[:, -new:]
    for row, want in enumerate(_oracle_rows(model, case, new)):
        assert torch.equal(out[row], want), f"row {row}: static {out[row].tolist()} != oracle {want.tolist()}"


def causal_compile_fullgraph(case: Case) -> None:
    """`torch.compile(fullgraph=True)` of the forward pass with a `StaticCache`: prefill and decoding steps give the
    eager logits, and generation through the compiled forward gives the oracle's tokens."""
    model = case.load()
    ids = case.input_ids[1:]
    new = 3
    cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + new)
    compiled = torch.compile(model.forward, fullgraph=True)
    sequence = ids
    with torch.no_grad():
        step_input = ids
        for _ in range(new):
            positions = torch.arange(sequence.shape[1] - step_input.shape[1], sequence.shape[1]).unsqueeze(0)
            out = compiled(input_ids=step_input, position_ids=positions, use_cache=True, **{CACHE_FIELD: cache})
            eager = model(input_ids=sequence, use_cache=False).logits[:, -1]
            torch.testing.assert_close(out.logits[:, -1], eager, rtol=1e-4, atol=1e-5)
            step_input = out.logits[:, -1:].argmax(dim=-1)
            sequence = torch.cat([sequence, step_input], dim=1)
    want = oracle_greedy(model, ids, new)
    assert torch.equal(sequence[:, -new:], want), (sequence[:, -new:].tolist(), want.tolist())


def causal_continue_from_cache(case: Case) -> None:
    """Generating 3 tokens, then 3 more from the returned cache, gives the 6 tokens of one call (and the oracle's)."""
    model = case.load()
    ids = case.input_ids[1:]
    first = model.generate(input_ids=ids, max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    cache = _get_cache(first)
    assert cache is not None and cache.get_seq_length() == ids.shape[1] + 2
    second = model.generate(input_ids=first.sequences, max_new_tokens=3, **GREEDY, **{CACHE_FIELD: cache})
    whole = model.generate(input_ids=ids, max_new_tokens=6, **GREEDY)
    assert torch.equal(second, whole), (second.tolist(), whole.tolist())
    assert torch.equal(whole[:, -6:], oracle_greedy(model, ids, 6))


def causal_inputs_embeds(case: Case) -> None:
    """`inputs_embeds` in place of `input_ids`: the same logits, and `generate(inputs_embeds=...)` the same new
    tokens."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    embeds = model.get_input_embeddings()(ids)
    torch.testing.assert_close(
        model(inputs_embeds=embeds, attention_mask=mask).logits, model(input_ids=ids, attention_mask=mask).logits
    )
    new = 5
    from_ids = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, **GREEDY)[:, -new:]
    from_embeds = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new, **GREEDY)
    assert torch.equal(from_embeds[:, -new:], from_ids), (from_embeds.tolist(), from_ids.tolist())


def causal_assisted_decoding(case: Case) -> None:
    """Assisted decoding, with an assistant model (other weights, same tokenizer) and with prompt lookup, gives the
    model's own greedy tokens."""
    model = case.load()
    assistant = type(model)(model.config).eval()  # same architecture, its own random weights
    ids = case.input_ids[1:2]  # assisted decoding takes one sequence at a time
    new = 8
    want = oracle_greedy(model, ids, new)
    with_assistant = model.generate(input_ids=ids, max_new_tokens=new, assistant_model=assistant, **GREEDY)
    assert torch.equal(with_assistant[:, -new:], want), (with_assistant.tolist(), want.tolist())
    repeated = torch.cat([ids, ids], dim=1)  # prompt lookup needs n-grams to find
    want = oracle_greedy(model, repeated, new)
    lookup = model.generate(input_ids=repeated, max_new_tokens=new, prompt_lookup_num_tokens=3, **GREEDY)
    assert torch.equal(lookup[:, -new:], want), (lookup.tolist(), want.tolist())


def exported_step(model: PreTrainedModel, ids: torch.Tensor, new_tokens: int) -> torch.export.ExportedProgram:
    """`model`'s decoding step for the (1, T) `ids` and `new_tokens` more, exported through transformers' ExecuTorch
    entry point (`convert_and_export_with_cache`, the path of `optimum-executorch`). Sets a static cache in the
    model's generation config."""
    from transformers.integrations.executorch import convert_and_export_with_cache

    model.generation_config.cache_implementation = "static"
    model.generation_config.cache_config = {"batch_size": 1, "max_cache_len": ids.shape[1] + new_tokens}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on the stateful buffers of the cache
        return convert_and_export_with_cache(model, ids[:, :1], torch.tensor([0]))


@torch.no_grad()
def greedy_through_step(
    step: Callable[..., torch.Tensor], model: PreTrainedModel, ids: torch.Tensor, new_tokens: int
) -> list[int]:
    """Feed the (1, T) `ids` to an exported step one token at a time, asserting the eager logits at every position,
    then `new_tokens` greedy tokens; returns the whole sequence. (The loop is written here: transformers'
    `TorchExportableModuleWithStaticCache.generate` feeds each new token one position too far, in 5.23 and 5.24.)"""
    eager = model(input_ids=ids, use_cache=False).logits[0]  # (T, V)
    sequence = ids[0].tolist()
    for position in range(ids.shape[1] + new_tokens - 1):
        logits = step(input_ids=torch.tensor([[sequence[position]]]), cache_position=torch.tensor([position]))
        if position < ids.shape[1]:
            torch.testing.assert_close(logits[0, -1], eager[position], rtol=1e-4, atol=1e-5)
        if position >= ids.shape[1] - 1:
            sequence.append(int(logits[0, -1].argmax()))
    return sequence


def causal_torch_export(case: Case) -> None:
    """`torch.export` through transformers' ExecuTorch entry point: the exported program, fed one token at a time,
    gives the eager logits at every position of the prompt, and greedy decoding through it the oracle's tokens."""
    model = case.load()
    ids = case.input_ids[1:2]  # the exported program decodes one sequence
    new = 6
    sequence = greedy_through_step(exported_step(model, ids, new).module(), model, ids, new)
    want = oracle_greedy(model, ids, new)[0].tolist()
    assert sequence[-new:] == want, (sequence[-new:], want)


def causal_generation_config_round_trip(case: Case) -> None:
    """A `GenerationConfig` passed to `generate()` is honoured (top_k=1 sampling is greedy)."""
    model = case.load()
    ids = case.input_ids[1:]
    config = GenerationConfig(do_sample=True, top_k=1, max_new_tokens=5, eos_token_id=None)
    torch.manual_seed(0)
    sampled = model.generate(input_ids=ids, generation_config=config)
    assert torch.equal(sampled[:, -5:], oracle_greedy(model, ids, 5))


def causal_generation_config_positional(case: Case) -> None:
    """`generate(input_ids, generation_config)`, the config given by position as `GenerationMixin.generate` allows,
    is honoured like the keyword: a static cache gives the oracle's tokens, `use_cache=False` returns no cache."""
    model = case.load()
    ids = case.input_ids[1:]
    static = GenerationConfig(cache_implementation="static", max_new_tokens=5, **GREEDY)
    assert torch.equal(model.generate(ids, static)[:, -5:], oracle_greedy(model, ids, 5))
    uncached = GenerationConfig(use_cache=False, max_new_tokens=3, return_dict_in_generate=True, **GREEDY)
    out = model.generate(ids, uncached)
    assert torch.equal(out.sequences[:, -3:], oracle_greedy(model, ids, 3))
    assert out.get(CACHE_FIELD) is None, "use_cache=False given by position still built a cache"


def causal_resize_token_embeddings(case: Case) -> None:
    """`resize_token_embeddings` grows every vocabulary-sized layer: the new ids embed and are predicted, the old
    ids' logits are unchanged, and the resized model saves and loads back with the same logits."""
    import tempfile

    model = case.load()
    ids = case.input_ids[1:]
    old_vocab = int(model.config.vocab_size)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.resize_token_embeddings(old_vocab + 5)
    assert model.config.vocab_size == old_vocab + 5
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert after.shape[-1] == old_vocab + 5
    torch.testing.assert_close(after[..., :old_vocab], before, rtol=1e-4, atol=1e-5)
    new_ids = torch.cat([ids, torch.full_like(ids[:, :1], old_vocab + 4)], dim=1)
    labels = new_ids.clone()
    loss = model(input_ids=new_ids, labels=labels).loss
    assert torch.isfinite(loss)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        reloaded = type(model).from_pretrained(folder).eval()
        with torch.no_grad():
            torch.testing.assert_close(reloaded(input_ids=new_ids).logits, model(input_ids=new_ids).logits)


def causal_padding_row_at_init(case: Case) -> None:
    """A model built from its config starts with the padding token's embedding row at zero (`padding_idx` rows get
    no gradient, so a random one would stay random), as in-library models do."""
    model = case.load()
    fresh = type(model)(model.config)
    embeddings = fresh.get_input_embeddings()
    assert embeddings.padding_idx == model.config.pad_token_id
    assert torch.count_nonzero(embeddings.weight[embeddings.padding_idx]) == 0
    assert torch.count_nonzero(embeddings.weight[embeddings.padding_idx + 1]) > 0


def causal_cache_argument_names(case: Case) -> None:
    """The cache goes in as `cache` (transformers >= 5.24) or `past_key_values` (the name before 5.24, deprecated with
    a FutureWarning from 5.24 on, as in-library models do); both continue the same sequence alike."""
    model = case.load()
    ids = case.input_ids[1:]
    with torch.no_grad():
        prefix = model(input_ids=ids[:, :-2], use_cache=True)
    results = {}
    for name in ("cache", "past_key_values"):
        cache = copy.deepcopy(_get_cache(prefix))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = model(input_ids=ids[:, -2:], use_cache=True, **{name: cache})
        deprecated = [w for w in caught if "`past_key_values` is deprecated" in str(w.message)]
        assert bool(deprecated) == (name == "past_key_values" and CACHE_FIELD == "cache"), (name, caught)
        assert _get_cache(out).get_seq_length() == ids.shape[1], name
        results[name] = out.logits
    torch.testing.assert_close(results["cache"], results["past_key_values"])
    torch.testing.assert_close(results["cache"], model(input_ids=ids).logits[:, -2:], rtol=1e-4, atol=1e-5)


CAUSAL_CHECKS: dict[str, Callable[[Case], None]] = {
    "cache_argument_names": causal_cache_argument_names,
    "hidden_states": causal_hidden_states,
    "attentions": causal_attentions,
    "eager_sdpa_padding": causal_eager_sdpa_padding,
    "tuple_outputs": causal_tuple_outputs,
    "generate_dict_outputs": causal_generate_dict_outputs,
    "cache_equivalence": causal_cache_equivalence,
    "static_cache": causal_static_cache,
    "compile_fullgraph": causal_compile_fullgraph,
    "continue_from_cache": causal_continue_from_cache,
    "inputs_embeds": causal_inputs_embeds,
    "assisted_decoding": causal_assisted_decoding,
    "torch_export": causal_torch_export,
    "generation_config": causal_generation_config_round_trip,
    "generation_config_positional": causal_generation_config_positional,
    "resize_token_embeddings": causal_resize_token_embeddings,
    "padding_row_at_init": causal_padding_row_at_init,
}


# --------------------------------------------------------------------------------------------------------------------
# Running the checks as remote code, in an interpreter without lmforge


def run_all(case: Case, checks: dict[str, Callable[[Case], None]]) -> dict[str, str]:
    """Every check: "ok" or the failure's traceback."""
    results = {}
    for name, check in checks.items():
        torch.manual_seed(0)
        try:
            check(case)
            results[name] = "ok"
        except Exception:
            results[name] = traceback.format_exc(limit=6)
    return results


def run_in_subprocess(
    folder: Path, kind: str, checks: str = "tests.models.contract:CAUSAL_CHECKS", timeout: int = 600
) -> dict[str, str]:
    """Run the checks named by `checks` ("module:attribute", a dict of checks in a module of this test package that
    needs no lmforge) on `folder` loaded with `trust_remote_code=True`, in an interpreter where `import lmforge`
    fails (as on a machine without lmforge): the session's shared remote-code worker. Returns the results by check
    name ("ok" or the traceback)."""
    from tests.remote_worker import run_checks

    return run_checks(folder, kind, checks, timeout=timeout)
