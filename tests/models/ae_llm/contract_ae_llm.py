"""The transformers encoder-decoder model contract, as checks an AE-LLM model folder must pass.

Built on tests/models/contract.py: each check takes a `Case` (a saved folder and the inputs saved beside it, row 0
left-padded) and raises `AssertionError` when the model breaks the contract. The module imports only torch,
transformers, safetensors and `tests.models.contract`, never lmforge, so the checks also run in a fresh interpreter on
the folder loaded with `trust_remote_code=True` (`run_in_subprocess(folder, "seq2seq",
"tests.models.ae_llm.contract_ae_llm:CHECKS")`).

The reference for generation is an independent oracle (`oracle_seq2seq_greedy`): per unpadded row, the encoder once,
then plain full forward passes of the decoder over the whole decoder prefix (`use_cache=False`), no `generate()`.

Groups that do not apply to a GRU model are checked for the documented behaviour: attentions (the GRUs have none: the
decoder's field stays None) and the static cache (refused with a clear error; the GRU state is already fixed in
size).

The same checks cover the additions to the seed's design when the folder's config turns them on: with
`decoder_attention` the decoder's attention over the encoder states is returned as `cross_attentions`, with
`encoder_self_attention` the encoder's self-attention weights as `encoder_attentions`, with
`bidirectional_encoder` the encoder states are twice as wide, and with `copy_head` the head's logits are the log of the
pointer-generator mixture, computed here from the base model's outputs by the documented formula.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel

from tests.models.contract import CACHE_FIELD, GREEDY, Case

# --------------------------------------------------------------------------------------------------------------------
# Helpers and the oracle


def _get_cache(output: Any) -> Any:
    return getattr(output, CACHE_FIELD)


def _unpadded_rows(case: Case) -> list[torch.Tensor]:
    return [ids[mask.bool()] for ids, mask in zip(case.input_ids, case.attention_mask, strict=True)]


def _decoder_input_ids(config: Any, batch_size: int, length: int = 4) -> torch.Tensor:
    """The start token, then `length - 1` fixed ordinary tokens, for every row: (B, length)."""
    tokens = torch.arange(length).remainder(config.vocab_size - 4) + 4
    tokens[0] = config.decoder_start_token_id
    return tokens.unsqueeze(0).expand(batch_size, -1).clone()


def _labels(case: Case, length: int = 4) -> torch.Tensor:
    """Targets for a loss: the last `length` tokens of each row (the padding is on the left)."""
    return case.input_ids[:, -length:].clone()


@torch.no_grad()
def oracle_seq2seq_greedy(
    model: PreTrainedModel, input_ids: torch.Tensor, new_tokens: int, **model_kwargs: Any
) -> torch.Tensor:
    """Greedy decoding by plain forward passes, one row at a time: the row's encoder output once, then the decoder over
    the whole decoder sequence (start token + tokens so far) at each step, without cache, padding or `generate()`.
    `input_ids` (B, S) holds no padding. Returns the (B, new_tokens) new tokens."""
    start = model.config.decoder_start_token_id
    rows = []
    for row in input_ids:
        encoder_outputs = model.get_encoder()(input_ids=row.unsqueeze(0), return_dict=True)
        sequence = torch.tensor([[start]])
        for _ in range(new_tokens):
            logits = model(
                encoder_outputs=encoder_outputs, decoder_input_ids=sequence, use_cache=False, **model_kwargs
            ).logits  # (1, T, V)
            sequence = torch.cat([sequence, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
        rows.append(sequence[0, 1:])
    return torch.stack(rows)


def _oracle_rows(model: PreTrainedModel, case: Case, new_tokens: int) -> list[torch.Tensor]:
    return [oracle_seq2seq_greedy(model, row.unsqueeze(0), new_tokens)[0] for row in _unpadded_rows(case)]


def _encoder_width(config: Any) -> int:
    """D, the width of the encoder's GRU outputs: hidden_size, twice that with `bidirectional_encoder`."""
    return config.hidden_size * (2 if getattr(config, "bidirectional_encoder", False) else 1)


def _attends(config: Any) -> bool:
    return bool(getattr(config, "decoder_attention", False))


def _expected_logits(head: PreTrainedModel, out: Any) -> torch.Tensor:
    """The head's logits from the base model's output: `lm_head(last_hidden_state)`, or with `copy_head` the log of
    copy_gate * softmax(lm_head(h)) + (1 - copy_gate) * (copy_attention summed per source token)."""
    logits = head.lm_head(out.last_hidden_state)
    if not getattr(head.config, "copy_head", False):
        return logits
    vocab = torch.softmax(logits.float(), dim=-1)
    copied = torch.zeros_like(vocab)
    for row in range(vocab.shape[0]):
        for position, token in enumerate(out.source_ids[row].tolist()):
            copied[row, :, token] += out.copy_attention[row, :, position]
    gate = out.copy_gate
    return torch.log((gate * vocab + (1 - gate) * copied).clamp(min=1e-12))


def _assert_attention_weights(weights: torch.Tensor, mask: torch.Tensor, where: str, heads: int = 1) -> None:
    """(B, heads, T, S) attention over the encoder: a distribution over the real input tokens of each row."""
    assert weights.dim() == 4 and weights.shape[1] == heads and weights.shape[-1] == mask.shape[1], (
        where,
        weights.shape,
    )
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)), msg=where)
    padded = (mask == 0)[:, None, None, :].expand_as(weights)
    if padded.any():
        assert weights[padded].abs().max() == 0, f"{where}: weight on padding"


def _assert_oracle(model: PreTrainedModel, case: Case, sequences: torch.Tensor, new: int, what: str) -> None:
    for row, want in enumerate(_oracle_rows(model, case, new)):
        got = sequences[row, -new:]
        assert torch.equal(got, want), f"row {row}: {what} {got.tolist()} != oracle {want.tolist()}"


# --------------------------------------------------------------------------------------------------------------------
# The checks


def seq2seq_base_model(case: Case) -> None:
    """The folder names both classes in `auto_map`; `AutoModel` gives the bare encoder-decoder, whose
    `last_hidden_state` through the head's `lm_head` gives the head's logits (with `copy_head`, mixed with the copy
    distribution by the documented formula); the head delegates its encoder and decoder to it."""
    auto_map = json.loads((Path(case.folder) / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"].endswith(".AELLMModel"), auto_map
    assert auto_map["AutoModelForSeq2SeqLM"].endswith(".AELLMForConditionalGeneration"), auto_map
    head, base = case.load(), case.load(head=False)
    assert type(base).__name__ == "AELLMModel" and head.base_model_prefix == "model"
    assert head.get_encoder() is head.model.encoder and head.get_decoder() is head.model.decoder
    for name, tensor in base.state_dict().items():
        assert torch.equal(tensor, head.model.state_dict()[name]), name
    ids, mask = case.input_ids, case.attention_mask
    decoder_input_ids = _decoder_input_ids(base.config, ids.shape[0])
    with torch.no_grad():
        out = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids)
        logits = head(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    config = base.config
    assert out.last_hidden_state.shape == (*decoder_input_ids.shape, config.hidden_size)
    assert out.encoder_last_hidden_state.shape == (ids.shape[0], 1, config.latent_size)
    torch.testing.assert_close(_expected_logits(head, out), logits)
    if getattr(config, "copy_head", False):  # a distribution: its probabilities add up to 1 at every step
        torch.testing.assert_close(logits.exp().sum(-1), torch.ones(logits.shape[:2]))


def seq2seq_hidden_states(case: Case) -> None:
    """`output_hidden_states=True` (argument or config): num_hidden_layers + 1 encoder states (input embeddings
    (B, S, E), then each GRU layer's outputs (B, S, H), zero on padding) and decoder states (token embeddings (B, T, E),
    then each GRU layer's outputs (B, T, H), the last one `last_hidden_state`), from the base model and the head; the
    embeddings and decoder outputs keep their gradient through the loss; outputs are opt-in."""
    ids, mask = case.input_ids, case.attention_mask
    base = case.load(head=False)
    config = base.config
    layers, emb, hidden = config.num_hidden_layers, config.embedding_size, config.hidden_size
    width = _encoder_width(config)
    decoder_input_ids = _decoder_input_ids(config, ids.shape[0])
    out = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, output_hidden_states=True)
    assert out.encoder_hidden_states is not None and out.decoder_hidden_states is not None
    assert len(out.encoder_hidden_states) == len(out.decoder_hidden_states) == layers + 1
    assert out.encoder_hidden_states[0].shape == (*ids.shape, emb)
    torch.testing.assert_close(out.encoder_hidden_states[0], base.get_input_embeddings()(ids))
    padded = ~mask.bool()
    for state in out.encoder_hidden_states[1:]:
        assert state.shape == (*ids.shape, width), state.shape
        assert state[padded].abs().max() == 0, "padded positions must hold zeros"
        assert state[~padded].abs().sum() > 0
    assert out.decoder_hidden_states[0].shape == (*decoder_input_ids.shape, emb)
    for state in out.decoder_hidden_states[1:]:
        assert state.shape == (*decoder_input_ids.shape, hidden), state.shape
    torch.testing.assert_close(out.decoder_hidden_states[-1], out.last_hidden_state)
    # the states of a padded row's real tokens are those of the row alone
    alone = base(input_ids=ids[:1, ~padded[0]], decoder_input_ids=decoder_input_ids[:1], output_hidden_states=True)
    for batched, single in zip(out.encoder_hidden_states, alone.encoder_hidden_states, strict=True):
        torch.testing.assert_close(batched[0, ~padded[0]], single[0])

    model = case.load()
    model.config.output_hidden_states = True  # the config default is honoured too
    out = model(input_ids=ids, attention_mask=mask, labels=_labels(case))
    assert len(out.encoder_hidden_states) == len(out.decoder_hidden_states) == layers + 1
    first, last = out.encoder_hidden_states[0], out.decoder_hidden_states[-1]
    first.retain_grad()
    last.retain_grad()
    out.loss.backward()
    assert first.grad is not None and last.grad is not None
    plain = case.load()(input_ids=ids, attention_mask=mask, labels=_labels(case))
    assert plain.encoder_hidden_states is None and plain.decoder_hidden_states is None, "outputs must be opt-in"


def _self_attention_heads(config: Any) -> int | None:
    """The heads of the encoder's self-attention layer (one per 64 channels, at least one), None without it."""
    if not getattr(config, "encoder_self_attention", False):
        return None
    width = _encoder_width(config)
    heads = max(1, width // 64)
    return heads if width % heads == 0 else 1


def seq2seq_attentions(case: Case) -> None:
    """The GRUs have no attention: `output_attentions=True` (argument or config) is accepted, changes no output and
    leaves the decoder attentions None. The encoder attentions too, unless `encoder_self_attention` is on: then they
    hold one (B, heads, S, S) tensor, each row a distribution over its real input tokens. The cross attentions too,
    unless `decoder_attention` is on: then they hold one (B, 1, T, S) tensor, a distribution over each row's real
    input tokens. Both are opt-in, the same whether asked by argument or config, and the cross attentions the same in
    the scheduled-sampling training path."""
    ids, mask = case.input_ids, case.attention_mask
    for head in (True, False):
        model = case.load(head=head)
        decoder_input_ids = _decoder_input_ids(model.config, ids.shape[0])
        kwargs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_input_ids}
        out = model(**kwargs, output_attentions=True)
        assert out.decoder_attentions is None
        heads = _self_attention_heads(model.config)
        if heads is not None:
            assert len(out.encoder_attentions) == 1
            _assert_attention_weights(out.encoder_attentions[0], mask, "encoder_attentions", heads)
            assert out.encoder_attentions[0].shape[2] == ids.shape[1]
            assert model(**kwargs).encoder_attentions is None, "attentions must be opt-in"
        else:
            assert out.encoder_attentions is None
        if _attends(model.config):
            assert len(out.cross_attentions) == 1
            _assert_attention_weights(out.cross_attentions[0], mask, "cross_attentions")
            assert out.cross_attentions[0].shape[2] == decoder_input_ids.shape[1]
            assert model(**kwargs).cross_attentions is None, "attentions must be opt-in"
        else:
            assert out.cross_attentions is None
        model.config.output_attentions = True
        again = model(**kwargs)
        assert again.decoder_attentions is None
        if heads is not None:
            torch.testing.assert_close(again.encoder_attentions[0], out.encoder_attentions[0])
        if _attends(model.config):
            torch.testing.assert_close(again.cross_attentions[0], out.cross_attentions[0])
        torch.testing.assert_close(again[0], model(**kwargs, output_attentions=False)[0])
        torch.testing.assert_close(again[0], out[0])
    model = case.load()
    if _attends(model.config):  # the step-by-step training path returns the same weights as the parallel one
        model.config.teacher_forcing_ratio = 0.999999
        labels = _labels(case)
        with torch.no_grad():
            parallel = model(input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True)
            torch.manual_seed(0)
            stepwise = model.train()(input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True)
        torch.testing.assert_close(stepwise.cross_attentions[0], parallel.cross_attentions[0])
        torch.testing.assert_close(stepwise.logits, parallel.logits)


def seq2seq_tuple_outputs(case: Case) -> None:
    """`return_dict=False` (argument or config) gives the tuple form: (loss, logits, ...) of the head and
    (last_hidden_state, ...) of the base model, equal to the dict's; the encoder returns (latent,)."""
    ids, mask, labels = case.input_ids, case.attention_mask, _labels(case)
    model = case.load()
    as_dict = model(input_ids=ids, attention_mask=mask, labels=labels)
    as_tuple = model(input_ids=ids, attention_mask=mask, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple), type(as_tuple)
    torch.testing.assert_close(as_tuple[0], as_dict.loss)
    torch.testing.assert_close(as_tuple[1], as_dict.logits)
    assert len(as_tuple) == len(as_dict.to_tuple())
    base = case.load(head=False)
    decoder_input_ids = _decoder_input_ids(base.config, ids.shape[0])
    base_dict = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids)
    base_tuple = base(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids, return_dict=False)
    assert isinstance(base_tuple, tuple) and len(base_tuple) == len(base_dict.to_tuple())
    torch.testing.assert_close(base_tuple[0], base_dict.last_hidden_state)
    encoded = model.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=False)
    assert isinstance(encoded, tuple)
    torch.testing.assert_close(encoded[0], as_dict.encoder_last_hidden_state)
    # the encoder's tuple goes back in as encoder_outputs, for the same logits, with hidden states and attentions too
    from_tuple = model(encoder_outputs=encoded, attention_mask=mask, labels=labels)
    torch.testing.assert_close(from_tuple.logits, as_dict.logits)
    encoded = model.get_encoder()(
        input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True, return_dict=False
    )
    everything = model(
        input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True
    )
    from_tuple = model(
        encoder_outputs=encoded, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True
    )
    torch.testing.assert_close(from_tuple.logits, as_dict.logits)
    for name in ("encoder_hidden_states", "encoder_attentions"):
        torch.testing.assert_close(getattr(from_tuple, name), getattr(everything, name), msg=name)
    model.config.return_dict = False
    assert isinstance(model(input_ids=ids, attention_mask=mask, labels=labels), tuple)


def seq2seq_generate_dict_outputs(case: Case) -> None:
    """`return_dict_in_generate` with scores, logits, hidden states (and attentions, which stay None) is complete
    for greedy, sampling, beam search and beam sampling."""
    model = case.load()
    config = model.config
    ids, mask = case.input_ids, case.attention_mask
    batch, prompt = ids.shape
    layers = config.num_hidden_layers
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
        assert out.sequences.shape == (rows, 1 + new), (name, out.sequences.shape)
        assert bool((out.sequences[:, 0] == config.decoder_start_token_id).all()), name
        assert len(out.scores) == new and len(out.logits) == new, name
        for scores, logits in zip(out.scores, out.logits, strict=True):
            assert scores.shape == (beams, config.vocab_size) and logits.shape == (beams, config.vocab_size), name
        assert len(out.encoder_hidden_states) == layers + 1, name
        assert out.encoder_hidden_states[0].shape == (batch, prompt, config.embedding_size), name
        for state in out.encoder_hidden_states[1:]:
            assert state.shape == (batch, prompt, _encoder_width(config)), name
        assert len(out.decoder_hidden_states) == new, name
        for step in out.decoder_hidden_states:
            assert len(step) == layers + 1, name
            assert step[0].shape == (beams, 1, config.embedding_size), name
            assert all(state.shape == (beams, 1, config.hidden_size) for state in step[1:]), name
        heads = _self_attention_heads(config)
        if heads is not None:  # once, for the prompt of each row (beams repeat their row's)
            assert len(out.encoder_attentions) == 1, name
            assert out.encoder_attentions[0].shape == (batch, heads, prompt, prompt), name
            _assert_attention_weights(out.encoder_attentions[0], mask, name, heads)
        else:
            assert out.encoder_attentions is None, name
        assert all(step is None for step in out.decoder_attentions or ()), name
        if _attends(config):  # per step, the attention of each beam over its row's input
            assert len(out.cross_attentions) == new, name
            row_mask = mask.repeat_interleave(beams // batch, dim=0)
            for step in out.cross_attentions:
                assert len(step) == 1 and step[0].shape == (beams, 1, 1, prompt), name
                _assert_attention_weights(step[0], row_mask, name)
        else:
            assert all(step is None for step in out.cross_attentions or ()), name
        cache = _get_cache(out)
        assert cache is not None and cache.get_seq_length() == new, name
        if "num_beams" in settings:
            assert out.sequences_scores is not None and out.sequences_scores.shape == (rows,), name
            assert out.beam_indices is not None and out.beam_indices.shape[0] == rows, name


def seq2seq_cache_equivalence(case: Case) -> None:
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
    greedy = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, **GREEDY)
    _assert_oracle(model, case, greedy, new, "generate")


def seq2seq_static_cache(case: Case) -> None:
    """Does not apply: the cache is the GRU state, already fixed in size. `cache_implementation="static"` is refused
    with an error that says so (rather than running uncompiled without a word); unset, generation gives the oracle's
    tokens."""
    model = case.load()
    new = 4
    try:
        model.generate(input_ids=case.input_ids, max_new_tokens=new, cache_implementation="static", **GREEDY)
    except ValueError as err:
        assert "fixed in size" in str(err) and "cache_implementation" in str(err), str(err)
    else:
        raise AssertionError("cache_implementation='static' must be refused")
    plain = model.generate(input_ids=case.input_ids, attention_mask=case.attention_mask, max_new_tokens=new, **GREEDY)
    _assert_oracle(model, case, plain, new, "generate")


def seq2seq_continue_from_cache(case: Case) -> None:
    """Generating 3 tokens, then 3 more from the returned cache (with the whole decoder sequence as
    `decoder_input_ids`), gives the 6 tokens of one call (and the oracle's), on a left-padded batch."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    first = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=3, return_dict_in_generate=True, **GREEDY
    )
    cache = _get_cache(first)
    assert cache is not None and cache.get_seq_length() == first.sequences.shape[1] - 1 == 3
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
    assert cache.get_seq_length() == 6
    _assert_oracle(model, case, whole, 6, "generate")


def seq2seq_inputs_embeds(case: Case) -> None:
    """Encoder `inputs_embeds` in place of `input_ids`: the same logits (head and base model), and
    `generate(inputs_embeds=...)` the same tokens; `decoder_inputs_embeds` the same logits too."""
    ids, mask = case.input_ids, case.attention_mask
    model = case.load()
    embed = model.get_input_embeddings()
    decoder_input_ids = _decoder_input_ids(model.config, ids.shape[0])
    with torch.no_grad():
        embeds = embed(ids)
        want = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        got = model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        torch.testing.assert_close(got, want)
        both = model(inputs_embeds=embeds, attention_mask=mask, decoder_inputs_embeds=embed(decoder_input_ids))
        torch.testing.assert_close(both.logits, want)
        base = case.load(head=False)
        base_kwargs = {"attention_mask": mask, "decoder_input_ids": decoder_input_ids}
        torch.testing.assert_close(
            base(inputs_embeds=embeds, **base_kwargs).last_hidden_state,
            base(input_ids=ids, **base_kwargs).last_hidden_state,
        )
    new = 5
    from_ids = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, **GREEDY)
    from_embeds = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new, **GREEDY)
    assert torch.equal(from_embeds, from_ids), (from_embeds.tolist(), from_ids.tolist())


def seq2seq_assisted_decoding(case: Case) -> None:
    """Assisted decoding with an assistant model and prompt lookup gives the oracle's greedy tokens, one sequence at
    a time. An assistant with other weights drafts tokens that get rejected, so the cache is cropped back; one with
    the same weights drafts only tokens that get accepted, so nothing is ever cropped (its own cache included)."""
    model = case.load()
    new = 8
    probe = model.generate(input_ids=case.input_ids[1:2], max_new_tokens=1, return_dict_in_generate=True, **GREEDY)
    cache_class = type(_get_cache(probe))
    crops: list[int] = []
    original_crop = cache_class.crop

    def recording_crop(self: Any, tokens_to_remove: int) -> None:
        crops.append(tokens_to_remove)
        original_crop(self, tokens_to_remove)

    with torch.random.fork_rng():
        torch.manual_seed(12345)  # not the seed the checks run under (the folder's model may come from it)
        other = type(model)(model.config).eval()  # same architecture, its own random weights
    assert not torch.equal(other.lm_head.weight, model.lm_head.weight)
    same = type(model)(model.config).eval()
    same.load_state_dict(model.state_dict())
    cache_class.crop = recording_crop  # type: ignore[method-assign]
    removed: dict[str, list[int]] = {"other assistant": [], "same assistant": [], "prompt lookup": []}
    try:
        for row in _unpadded_rows(case):
            ids = row.unsqueeze(0)
            want = oracle_seq2seq_greedy(model, ids, new)[0]
            for name, kwargs in (
                ("other assistant", {"assistant_model": other}),
                ("same assistant", {"assistant_model": same}),
                ("prompt lookup", {"prompt_lookup_num_tokens": 3}),
            ):
                crops.clear()
                got = model.generate(input_ids=ids, max_new_tokens=new, **kwargs, **GREEDY)[0, -new:]
                assert torch.equal(got, want), f"{name}: {got.tolist()} != oracle {want.tolist()}"
                removed[name] += crops
    finally:
        cache_class.crop = original_crop  # type: ignore[method-assign]
    assert any(count < 0 for count in removed["other assistant"]), "no draft was rejected: the check proves nothing"
    assert removed["same assistant"] and not any(removed["same assistant"]), removed["same assistant"]


def seq2seq_generation_config(case: Case) -> None:
    """A `GenerationConfig` passed to `generate()` is honoured (top_k=1 sampling is greedy)."""
    model = case.load()
    config = GenerationConfig(do_sample=True, top_k=1, max_new_tokens=5, eos_token_id=None)
    torch.manual_seed(0)
    sampled = model.generate(input_ids=case.input_ids, attention_mask=case.attention_mask, generation_config=config)
    _assert_oracle(model, case, sampled, 5, "top_k=1 sampling")


def seq2seq_cache_argument_names(case: Case) -> None:
    """The cache goes in as `cache` (transformers >= 5.24) or `past_key_values` (the name before 5.24, deprecated with
    a FutureWarning from 5.24 on, as in-library models do); both continue the decoder alike, as one whole pass does."""
    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    decoder_input_ids = _decoder_input_ids(model.config, ids.shape[0], 5)
    inputs = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        prefix = model(**inputs, decoder_input_ids=decoder_input_ids[:, :-2], use_cache=True)
        results = {}
        for name in ("cache", "past_key_values"):
            cache = copy.deepcopy(_get_cache(prefix))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = model(**inputs, decoder_input_ids=decoder_input_ids[:, -2:], use_cache=True, **{name: cache})
            deprecated = [w for w in caught if "`past_key_values` is deprecated" in str(w.message)]
            assert bool(deprecated) == (name == "past_key_values" and CACHE_FIELD == "cache"), (name, caught)
            assert _get_cache(out).get_seq_length() == decoder_input_ids.shape[1], name
            results[name] = out.logits
        whole = model(**inputs, decoder_input_ids=decoder_input_ids).logits[:, -2:]
    torch.testing.assert_close(results["cache"], results["past_key_values"])
    torch.testing.assert_close(results["cache"], whole)


def seq2seq_decoder_padding(case: Case) -> None:
    """`decoder_attention_mask` with padding before the decoder's tokens (a batch of decoder prompts of different
    lengths, left-padded) gives, at the real positions, the logits and the cache of the prompt without padding, as
    BART does; batched `generate()` from such prompts writes each row's tokens of the row alone."""
    model = case.load()
    ids, mask = case.input_ids[1:2], case.attention_mask[1:2]
    prompt = _decoder_input_ids(model.config, 1, 4)
    pad = model.config.pad_token_id
    padded = torch.cat([torch.full_like(prompt[:, :2], pad), prompt], dim=1)
    padded_mask = torch.cat([torch.zeros_like(prompt[:, :2]), torch.ones_like(prompt)], dim=1)
    with torch.no_grad():
        alone = model(input_ids=ids, attention_mask=mask, decoder_input_ids=prompt, use_cache=True)
        both = model(
            input_ids=ids,
            attention_mask=mask,
            decoder_input_ids=padded,
            decoder_attention_mask=padded_mask,
            use_cache=True,
        )
    torch.testing.assert_close(both.logits[:, 2:], alone.logits)
    torch.testing.assert_close(_get_cache(both).hidden_state, _get_cache(alone).hidden_state)
    longer = _decoder_input_ids(model.config, 1, 6)
    batch = {
        "input_ids": ids.expand(2, -1),
        "attention_mask": mask.expand(2, -1),
        "decoder_input_ids": torch.cat([padded, longer]),
        "decoder_attention_mask": torch.cat([padded_mask, torch.ones_like(longer)]),
    }
    out = model.generate(**batch, max_new_tokens=4, do_sample=False, num_beams=1, eos_token_id=None)
    for row, start in enumerate((prompt, longer)):
        single = model.generate(
            input_ids=ids,
            attention_mask=mask,
            decoder_input_ids=start,
            max_new_tokens=4,
            do_sample=False,
            num_beams=1,
            eos_token_id=None,
        )
        assert torch.equal(out[row, -4:], single[0, -4:]), f"row {row}: {out[row].tolist()} != {single[0].tolist()}"


def seq2seq_resize_token_embeddings(case: Case) -> None:
    """`resize_token_embeddings` grows every vocabulary-sized layer (the embedding, the output layer and the Thinking
    Net's bag-of-words logits): the old tokens' logits are unchanged (without the copy head, whose logits are
    log-probabilities), a new token embeds and is a label, and the resized model saves and loads back with the same
    logits."""
    import tempfile

    model = case.load()
    ids, mask = case.input_ids, case.attention_mask
    decoder_input_ids = _decoder_input_ids(model.config, ids.shape[0])
    old_vocab = int(model.config.vocab_size)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    model.resize_token_embeddings(old_vocab + 5, mean_resizing=False)
    assert model.config.vocab_size == old_vocab + 5
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    assert after.shape[-1] == old_vocab + 5
    if not model.config.copy_head:  # with the copy head the logits are log-probabilities: new tokens take some mass
        torch.testing.assert_close(after[..., :old_vocab], before)
    labels = _labels(case).clone()
    labels[:, 1] = old_vocab + 4
    new_ids = ids.clone()
    new_ids[:, -1] = old_vocab + 3
    assert torch.isfinite(model(input_ids=new_ids, attention_mask=mask, labels=labels).loss)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        reloaded = type(model).from_pretrained(folder).eval()
        with torch.no_grad():
            kwargs = {"input_ids": new_ids, "attention_mask": mask, "decoder_input_ids": decoder_input_ids}
            torch.testing.assert_close(reloaded(**kwargs).logits, model(**kwargs).logits)


CHECKS: dict[str, Callable[[Case], None]] = {
    "cache_argument_names": seq2seq_cache_argument_names,
    "base_model": seq2seq_base_model,
    "hidden_states": seq2seq_hidden_states,
    "attentions": seq2seq_attentions,
    "tuple_outputs": seq2seq_tuple_outputs,
    "generate_dict_outputs": seq2seq_generate_dict_outputs,
    "cache_equivalence": seq2seq_cache_equivalence,
    "static_cache": seq2seq_static_cache,
    "continue_from_cache": seq2seq_continue_from_cache,
    "inputs_embeds": seq2seq_inputs_embeds,
    "assisted_decoding": seq2seq_assisted_decoding,
    "generation_config": seq2seq_generation_config,
    "decoder_padding": seq2seq_decoder_padding,
    "resize_token_embeddings": seq2seq_resize_token_embeddings,
}
