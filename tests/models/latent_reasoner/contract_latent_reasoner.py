"""The transformers model contract of a sequence-to-sequence LatentReasoner folder, built on `tests/models/contract.py`.

Each check takes a `Case` of kind "seq2seq": a saved LatentReasoner folder and encoder inputs (`input_ids`, the first
row left-padded, with its `attention_mask`). Like `contract.py`, this module imports only torch, transformers,
safetensors and `tests.models.contract` (never lmforge), so the same checks also run on the folder loaded with
`trust_remote_code=True` in an interpreter without lmforge (`run_in_subprocess(folder, "seq2seq",
"tests.models.latent_reasoner.contract_latent_reasoner:CHECKS")`).

The reference for generation is an independent oracle: `oracle_greedy` over the decoder tokens, each step a plain
full forward pass that reads the text again and runs the whole decoder (no cache, no `generate()`).

The decoder's cache and hidden states include the `num_prefix_tokens` prefix positions in front of the decoder
tokens; `last_hidden_state` and `logits` cover the decoder tokens only. There is no cross-attention.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    CompileConfig,
    DynamicCache,
    EncoderDecoderCache,
    GenerationConfig,
    PreTrainedModel,
    StaticCache,
)

from tests.models.contract import CACHE_FIELD, GREEDY, Case, oracle_greedy

DECODER_TOKENS = 4  # decoder tokens of the forward-pass checks: the start token and 3 more


def _get_cache(output: Any) -> Any:
    return getattr(output, CACHE_FIELD)


def _start_id(config: Any) -> int:
    return int(config.resolved_decoder_start_token_id)


def _decoder_ids(config: Any, batch: int, length: int = DECODER_TOKENS, seed: int = 0) -> torch.Tensor:
    """(batch, length) decoder tokens: the start token, then random ones (no special tokens)."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, config.decoder.vocab_size, (batch, length), generator=generator)
    tokens[:, 0] = _start_id(config)
    return tokens


class DecoderView:
    """The model seen as a decoder-only LM over its decoder tokens, for `oracle_greedy`: every call reads the text
    (one encoder row with its mask) again and runs a full forward pass."""

    def __init__(self, model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        self.model = model
        self.input_ids = input_ids
        self.attention_mask = attention_mask

    def __call__(self, input_ids: torch.Tensor, use_cache: bool = False, **kwargs: Any) -> Any:
        return self.model(
            input_ids=self.input_ids,
            attention_mask=self.attention_mask,
            decoder_input_ids=input_ids,
            use_cache=use_cache,
            **kwargs,
        )


def oracle_rows(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    new_tokens: int,
    decoder_prompt: torch.Tensor | None = None,
) -> torch.Tensor:
    """The oracle's (B, new_tokens) greedy tokens, one text at a time, after the start token (or `decoder_prompt`,
    one row shared by all texts)."""
    prompt = decoder_prompt if decoder_prompt is not None else torch.tensor([[_start_id(model.config)]])
    rows = [
        oracle_greedy(DecoderView(model, ids.unsqueeze(0), mask.unsqueeze(0)), prompt, new_tokens)[0]  # type: ignore[arg-type]
        for ids, mask in zip(input_ids, attention_mask, strict=True)
    ]
    return torch.stack(rows)


def _layers(config: Any) -> int:
    return int(config.num_hidden_layers)


def _heads(config: Any) -> int:
    return int(config.num_attention_heads)


# --------------------------------------------------------------------------------------------------------------------
# Forward-pass checks


def seq2seq_base_model(case: Case) -> None:
    """The folder names both classes in `auto_map`; `AutoModel` gives the bare `LatentReasonerModel` (the head's
    `model`), whose `last_hidden_state` (decoder tokens only) through the head's `lm_head` gives the head's logits;
    the head finds its encoder and decoder in it."""
    auto_map = json.loads((Path(case.folder) / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"].endswith(".LatentReasonerModel"), auto_map
    assert auto_map["AutoModelForSeq2SeqLM"].endswith(".LatentReasonerForConditionalGeneration"), auto_map
    head, base = case.load(), case.load(head=False)
    assert type(base).__name__ == "LatentReasonerModel" and head.base_model_prefix == "model"
    assert head.get_encoder() is head.model.encoder and head.get_decoder() is head.model.decoder
    for name, tensor in base.state_dict().items():
        assert torch.equal(tensor, head.model.state_dict()[name]), name
    ids, mask = case.input_ids, case.attention_mask
    decoder_ids = _decoder_ids(base.config, ids.shape[0])
    with torch.no_grad():
        out = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        logits = head(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    config = base.config
    assert out.last_hidden_state.shape == (*decoder_ids.shape, config.decoder.hidden_size)
    assert out.encoder_last_hidden_state.shape == (*ids.shape, config.encoder.hidden_size)
    assert out.idea_vectors.shape == (ids.shape[0], config.idea_size)
    torch.testing.assert_close(head.lm_head(out.last_hidden_state), logits)


def seq2seq_cache_argument_names(case: Case) -> None:
    """The cache goes in as `cache` (transformers >= 5.24) or `past_key_values` (the name before 5.24, deprecated with
    a FutureWarning from 5.24 on, as in-library models do); both continue the decoder (prefix + 3 tokens cached)
    alike, as one whole pass does."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    decoder_ids = _decoder_ids(model.config, ids.shape[0], length=5)
    inputs = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        prefix = model(**inputs, decoder_input_ids=decoder_ids[:, :-2], use_cache=True)
        assert _get_cache(prefix).get_seq_length() == model.config.num_prefix_tokens + 3
        results = {}
        for name in ("cache", "past_key_values"):
            cache = copy.deepcopy(_get_cache(prefix))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = model(**inputs, decoder_input_ids=decoder_ids[:, -2:], use_cache=True, **{name: cache})
            deprecated = [w for w in caught if "`past_key_values` is deprecated" in str(w.message)]
            assert bool(deprecated) == (name == "past_key_values" and CACHE_FIELD == "cache"), (name, caught)
            assert _get_cache(out).get_seq_length() == model.config.num_prefix_tokens + 5, name
            assert out.idea_vectors is None, name  # the cache held the prefix: the text was not read again
            results[name] = out.logits
        whole = model(**inputs, decoder_input_ids=decoder_ids).logits[:, -2:]
    torch.testing.assert_close(results["cache"], results["past_key_values"])
    torch.testing.assert_close(results["cache"], whole)


def seq2seq_hidden_states(case: Case) -> None:
    """`output_hidden_states=True`: the encoder's states (embeddings + one per layer, (B, S, H)) and the decoder's
    ((B, P + T, D), the prefix included) from the base model and the head; the last decoder state without the prefix
    is `last_hidden_state`. The config default is honoured, the decoder states keep their gradient (retain_grad)
    through the loss, and nothing is returned unasked."""
    ids, mask = case.input_ids, case.attention_mask
    base = case.load(head=False)
    config = base.config
    num_prefix = config.num_prefix_tokens
    decoder_ids = _decoder_ids(config, ids.shape[0])
    out = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, output_hidden_states=True)
    assert out.encoder_hidden_states is not None and out.decoder_hidden_states is not None, "no hidden states"
    assert len(out.encoder_hidden_states) == _layers(config.encoder) + 1, len(out.encoder_hidden_states)
    for state in out.encoder_hidden_states:
        assert state.shape == (*ids.shape, config.encoder.hidden_size), state.shape
    torch.testing.assert_close(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)
    assert len(out.decoder_hidden_states) == _layers(config.decoder) + 1, len(out.decoder_hidden_states)
    for state in out.decoder_hidden_states:
        assert state.shape == (ids.shape[0], num_prefix + DECODER_TOKENS, config.decoder.hidden_size), state.shape
    assert out.last_hidden_state.shape == (ids.shape[0], DECODER_TOKENS, config.decoder.hidden_size)
    torch.testing.assert_close(out.decoder_hidden_states[-1][:, num_prefix:], out.last_hidden_state)
    assert not torch.equal(out.decoder_hidden_states[0], out.decoder_hidden_states[1])

    model = case.load(attn_implementation="eager")
    model.config.output_hidden_states = True  # the config default is honoured too
    labels = _decoder_ids(model.config, ids.shape[0], seed=1)
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True)
    assert len(out.decoder_hidden_states) == _layers(config.decoder) + 1
    assert len(out.encoder_hidden_states) == _layers(config.encoder) + 1
    hidden, attention = out.decoder_hidden_states[0], out.decoder_attentions[0]
    hidden.retain_grad()
    attention.retain_grad()
    out.loss.backward()
    assert hidden.grad is not None and attention.grad is not None
    plain = case.load()(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    assert plain.decoder_hidden_states is None and plain.encoder_hidden_states is None, "outputs must be opt-in"
    assert plain.decoder_attentions is None and plain.encoder_attentions is None, "outputs must be opt-in"


def seq2seq_attentions(case: Case) -> None:
    """`output_attentions=True` (eager): the encoder's (B, heads, S, S) maps attend to no padding; the decoder's
    (B, heads, P + T, P + T) maps are causal over prefix and tokens; rows sum to 1; no cross-attention."""
    ids, mask = case.input_ids, case.attention_mask
    model = case.load(attn_implementation="eager")
    config = model.config
    num_prefix = config.num_prefix_tokens
    out = model(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=_decoder_ids(config, ids.shape[0]),
        output_attentions=True,
    )
    assert out.encoder_attentions is not None and len(out.encoder_attentions) == _layers(config.encoder)
    for attention in out.encoder_attentions:
        assert attention.shape == (ids.shape[0], _heads(config.encoder), ids.shape[1], ids.shape[1]), attention.shape
        real_rows = mask[:, None, :, None].bool().expand_as(attention)
        sums = attention.sum(-1, keepdim=True).expand_as(attention)
        torch.testing.assert_close(sums[real_rows], torch.ones_like(sums[real_rows]))
        padded_keys = ~mask[:, None, None, :].bool().expand_as(attention)
        assert attention[padded_keys & real_rows].abs().max() == 0
    assert out.decoder_attentions is not None and len(out.decoder_attentions) == _layers(config.decoder)
    length = num_prefix + DECODER_TOKENS
    future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
    for attention in out.decoder_attentions:
        assert attention.shape == (ids.shape[0], _heads(config.decoder), length, length), attention.shape
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))
        assert attention[future.expand_as(attention)].abs().max() == 0
    assert out.cross_attentions is None


def seq2seq_eager_sdpa_padding(case: Case) -> None:
    """Eager and SDPA attention give the same logits (fp32) with left and with right padding of the text."""
    eager = case.load(attn_implementation="eager")
    sdpa = case.load(attn_implementation="sdpa")
    ids, left_mask = case.input_ids, case.attention_mask
    right_mask = torch.ones_like(left_mask)
    right_mask[0, -2:] = 0
    decoder_ids = _decoder_ids(eager.config, ids.shape[0])
    for mask in (left_mask, right_mask):
        want = eager(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        got = sdpa(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def seq2seq_tuple_outputs(case: Case) -> None:
    """`return_dict=False` (argument or config) gives the tuple form: (loss, logits, ...) equal to the dict's, for
    the head and the base model."""
    ids, mask = case.input_ids[1:], case.attention_mask[1:]
    model = case.load()
    labels = _decoder_ids(model.config, ids.shape[0], seed=1)
    as_dict = model(input_ids=ids, attention_mask=mask, labels=labels)
    as_tuple = model(input_ids=ids, attention_mask=mask, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple), type(as_tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    assert len(as_tuple) == len(as_dict.to_tuple())
    base = case.load(head=False)
    decoder_ids = _decoder_ids(model.config, ids.shape[0])
    base_tuple = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, return_dict=False)
    assert isinstance(base_tuple, tuple)
    torch.testing.assert_close(
        base_tuple[0], base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).last_hidden_state
    )
    model.config.return_dict = False
    assert isinstance(model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids), tuple)


def seq2seq_inputs_embeds(case: Case) -> None:
    """`inputs_embeds` (the encoder's input embeddings) in place of `input_ids`: the same logits, and
    `generate(inputs_embeds=...)` the same tokens."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    embeds = model.get_input_embeddings()(ids)
    decoder_ids = _decoder_ids(model.config, ids.shape[0])
    torch.testing.assert_close(
        model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_ids).logits,
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits,
    )
    new = 5
    from_ids = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, **GREEDY)
    from_embeds = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new, **GREEDY)
    assert torch.equal(from_embeds, from_ids), (from_embeds.tolist(), from_ids.tolist())


# --------------------------------------------------------------------------------------------------------------------
# Generation checks


def seq2seq_generate_dict_outputs(case: Case) -> None:
    """`return_dict_in_generate` with scores, logits, attentions and hidden states is complete for greedy,
    sampling, beam search and beam sampling: the encoder's outputs once, the decoder's per step (the first step with
    the prefix)."""
    model = case.load(attn_implementation="eager")
    config = model.config
    num_prefix = config.num_prefix_tokens
    vocab = config.decoder.vocab_size
    ids, mask = case.input_ids, case.attention_mask
    batch, source = ids.shape
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
            **settings,
        )
        rows = batch * settings.get("num_return_sequences", 1)
        beams = batch * settings.get("num_beams", 1)
        assert out.sequences.shape == (rows, 1 + new), (name, out.sequences.shape)
        assert len(out.scores) == new and len(out.logits) == new, name
        for scores, logits in zip(out.scores, out.logits, strict=True):
            assert scores.shape == (beams, vocab) and logits.shape == (beams, vocab), name
        assert len(out.encoder_attentions) == _layers(config.encoder), name
        assert len(out.encoder_hidden_states) == _layers(config.encoder) + 1, name
        for attention in out.encoder_attentions:
            assert attention.shape[1:] == (_heads(config.encoder), source, source), (name, attention.shape)
        for state in out.encoder_hidden_states:
            assert state.shape[1:] == (source, config.encoder.hidden_size), (name, state.shape)
        assert len(out.decoder_attentions) == new and len(out.decoder_hidden_states) == new, name
        for step, (attentions, hidden_states) in enumerate(
            zip(out.decoder_attentions, out.decoder_hidden_states, strict=True)
        ):
            assert len(attentions) == _layers(config.decoder), name
            assert len(hidden_states) == _layers(config.decoder) + 1, name
            query_len = num_prefix + 1 if step == 0 else 1
            key_len = num_prefix + 1 + step
            assert attentions[0].shape == (beams, _heads(config.decoder), query_len, key_len), (name, step)
            assert hidden_states[0].shape == (beams, query_len, config.decoder.hidden_size), (name, step)
        assert _get_cache(out) is not None, name
        if "num_beams" in settings:
            assert out.sequences_scores is not None and out.beam_indices is not None, name


def seq2seq_cache_equivalence(case: Case) -> None:
    """Greedy, seeded sampling and beam search give the same tokens with and without the cache, on a batch with a
    padded text; greedy equals the oracle row by row."""
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
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, use_cache=use_cache, **kwargs)
            )
        assert torch.equal(results[0], results[1]), f"{name}: cached {results[0].tolist()} != {results[1].tolist()}"
    greedy = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, **GREEDY)
    assert (greedy[:, 0] == _start_id(model.config)).all()
    want = oracle_rows(model, ids, mask, new)
    assert torch.equal(greedy[:, 1:], want), f"generate {greedy[:, 1:].tolist()} != oracle {want.tolist()}"


def seq2seq_static_cache(case: Case) -> None:
    """`cache_implementation="static"`: a static cache with room for the prefix and the decoder tokens, and the
    oracle's tokens on a batch with a padded text."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    new = 6
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new,
        cache_implementation="static",
        return_dict_in_generate=True,
        **GREEDY,
    )
    cache = _get_cache(out)
    decoder_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
    assert isinstance(decoder_cache, StaticCache), type(decoder_cache)
    size = decoder_cache.get_max_length()
    assert size >= model.config.num_prefix_tokens + 1 + new - 1, size  # prefix, start token, tokens fed back
    want = oracle_rows(model, ids, mask, new)
    assert torch.equal(out.sequences[:, 1:], want), f"static {out.sequences[:, 1:].tolist()} != oracle {want.tolist()}"


def seq2seq_compile_fullgraph(case: Case) -> None:
    """`torch.compile(fullgraph=True)` of the forward pass with a `StaticCache` sized for prefix + tokens: the prefill
    (text, prefix and start token) and the decoding steps give the eager logits, and the tokens are the oracle's;
    `generate()` compiling its decoding steps (static cache, `compile_config`) gives them too."""
    model = case.load()
    ids, mask = case.input_ids[1:], case.attention_mask[1:]
    new = 3
    num_prefix = model.config.num_prefix_tokens
    static = StaticCache(config=model.config, max_cache_len=num_prefix + 1 + new)
    cache = EncoderDecoderCache(static, DynamicCache())
    compiled = torch.compile(model.forward, fullgraph=True)
    sequence = torch.full((ids.shape[0], 1), _start_id(model.config))
    with torch.no_grad():
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": sequence}
        for _ in range(new):
            out = compiled(use_cache=True, **inputs, **{CACHE_FIELD: cache})
            eager = model(input_ids=ids, attention_mask=mask, decoder_input_ids=sequence, use_cache=False).logits
            torch.testing.assert_close(out.logits[:, -1], eager[:, -1], rtol=1e-4, atol=1e-5)
            step = out.logits[:, -1:].argmax(dim=-1)
            sequence = torch.cat([sequence, step], dim=1)
            inputs = {"decoder_input_ids": step}  # the cache holds the prefix: the decoder token alone
    assert int(static.get_seq_length()) == num_prefix + new
    want = oracle_rows(model, ids, mask, new)
    assert torch.equal(sequence[:, 1:], want), (sequence[:, 1:].tolist(), want.tolist())

    # `generate()` with a static cache compiles its decoding steps (here on the CPU too) with fullgraph=True
    compile_config = CompileConfig(fullgraph=True)
    compile_config._compile_all_devices = True
    generated = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new,
        cache_implementation="static",
        compile_config=compile_config,
        **GREEDY,
    )
    assert torch.equal(generated[:, 1:], want), (generated[:, 1:].tolist(), want.tolist())


def seq2seq_continue_from_cache(case: Case) -> None:
    """Generating 3 tokens, then 3 more from the returned cache (prefix + start token + 2 tokens), gives the 6 tokens
    of one call, and the oracle's."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    first = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=3, return_dict_in_generate=True, **GREEDY
    )
    cache = _get_cache(first)
    assert cache is not None and cache.get_seq_length() == model.config.num_prefix_tokens + 1 + 2
    second = model.generate(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=first.sequences,
        max_new_tokens=3,
        **GREEDY,
        **{CACHE_FIELD: cache},
    )
    whole = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, **GREEDY)
    assert torch.equal(second, whole), (second.tolist(), whole.tolist())
    assert torch.equal(whole[:, 1:], oracle_rows(model, ids, mask, 6))


def seq2seq_assisted_decoding(case: Case) -> None:
    """Assisted decoding, with an assistant model (a LatentReasoner with other weights and the same tokenizers) and
    with prompt lookup (on a decoder prompt with repeats), gives the model's own greedy tokens."""
    model = case.load()
    assistant = type(model)(model.config).eval()  # same architecture, its own random weights
    ids, mask = case.input_ids[1:2], case.attention_mask[1:2]  # assisted decoding takes one sequence at a time
    new = 8
    want = oracle_rows(model, ids, mask, new)
    with_assistant = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=new, assistant_model=assistant, **GREEDY
    )
    assert torch.equal(with_assistant[:, 1:], want), (with_assistant.tolist(), want.tolist())
    repeated = _decoder_ids(model.config, 1, length=4, seed=2)
    prompt = torch.cat([repeated, repeated[:, 1:]], dim=1)  # start, a, b, c, a, b, c: n-grams for the lookup
    want = oracle_rows(model, ids, mask, new, decoder_prompt=prompt)
    lookup = model.generate(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=prompt,
        max_new_tokens=new,
        prompt_lookup_num_tokens=3,
        **GREEDY,
    )
    assert torch.equal(lookup[:, prompt.shape[1] :], want), (lookup.tolist(), want.tolist())


def seq2seq_generation_config_round_trip(case: Case) -> None:
    """A `GenerationConfig` passed to `generate()` is honoured (top_k=1 sampling is greedy)."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    config = GenerationConfig(do_sample=True, top_k=1, max_new_tokens=5, eos_token_id=None)
    torch.manual_seed(0)
    sampled = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert torch.equal(sampled[:, 1:], oracle_rows(model, ids, mask, 5))


CHECKS: dict[str, Callable[[Case], None]] = {
    "base_model": seq2seq_base_model,
    "cache_argument_names": seq2seq_cache_argument_names,
    "hidden_states": seq2seq_hidden_states,
    "attentions": seq2seq_attentions,
    "eager_sdpa_padding": seq2seq_eager_sdpa_padding,
    "tuple_outputs": seq2seq_tuple_outputs,
    "generate_dict_outputs": seq2seq_generate_dict_outputs,
    "cache_equivalence": seq2seq_cache_equivalence,
    "static_cache": seq2seq_static_cache,
    "compile_fullgraph": seq2seq_compile_fullgraph,
    "continue_from_cache": seq2seq_continue_from_cache,
    "inputs_embeds": seq2seq_inputs_embeds,
    "assisted_decoding": seq2seq_assisted_decoding,
    "generation_config": seq2seq_generation_config_round_trip,
}
