"""vLLM's Transformers modeling backend runs a custom decoder (`vllm serve DIR --trust-remote-code --model-impl
transformers`) when it follows the rules of vLLM's "Writing custom models": one test per rule, for Aksis and
CharTransformer. There is no GPU here, so vLLM itself is not run (docs/scaling.md says what is and is not tested).

1. `kwargs` are passed down from the base model to the attention layer;
2. attention goes through `ALL_ATTENTION_FUNCTIONS` (vLLM registers its own attention there, "vllm");
3. the `PreTrainedModel` has `_supports_attention_backend = True`;
4. a saved folder names the base model in `config.json`'s `auto_map.AutoModel`;
5. the config has a tensor-parallel plan `base_model_tp_plan` (and the head its `_tp_plan`) whose patterns name real
   linear layers, with styles both transformers and vLLM know, and which computes the same function when split;
6. the config has a pipeline-parallel plan `base_model_pp_plan` (and the head its `_pp_plan`) over the base model's
   direct children, with one `nn.ModuleList` of layers.
"""

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import lmforge  # noqa: F401  (registers the Auto classes)
from lmforge.models import AksisConfig, AksisForCausalLM, CharTransformerConfig, CharTransformerForCausalLM

# Styles vLLM's Transformers backend maps onto its parallel linear layers (vllm/model_executor/models/transformers)
VLLM_STYLES = {"colwise", "rowwise", "colwise_rep", "rowwise_rep", "replicate"}
SEEN: list[dict[str, Any]] = []


def probe_attention(module: nn.Module, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    """An attention function registered like vLLM's: it records what reaches it, then computes SDPA."""
    SEEN.append({"layer_idx": getattr(module, "layer_idx", None), "is_causal": module.is_causal, **kwargs})
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register("lmforge_probe", probe_attention)

MODELS = {
    "aksis": (AksisConfig, AksisForCausalLM),
    "char_transformer": (CharTransformerConfig, CharTransformerForCausalLM),
}


def tiny(model_type: str, attn: str = "sdpa") -> Any:
    config_class, model_class = MODELS[model_type]
    config = config_class(
        vocab_size=40, max_position_embeddings=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, hidden_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return model_class._from_config(config, attn_implementation=attn).eval()


@pytest.mark.parametrize("model_type", MODELS)
def test_rule_1_and_2_kwargs_reach_the_attention_interface(model_type: str) -> None:
    """A keyword given to the model's forward reaches the registered attention function of every layer, with the
    layer's index (vLLM keys its caches by `module.layer_idx`) and `is_causal`; the output is SDPA's."""
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    reference = tiny(model_type)(input_ids=ids).logits
    model = tiny(model_type, attn="lmforge_probe")
    assert model.config._attn_implementation == "lmforge_probe"
    SEEN.clear()
    marker = object()
    with torch.no_grad():
        logits = model(input_ids=ids, probe_marker=marker).logits
    assert [seen["layer_idx"] for seen in SEEN] == [0, 1]
    assert all(seen["probe_marker"] is marker and seen["is_causal"] is True for seen in SEEN)
    torch.testing.assert_close(logits, reference)


@pytest.mark.parametrize("model_type", MODELS)
def test_rule_3_the_model_supports_the_attention_backend(model_type: str) -> None:
    model = tiny(model_type)
    assert type(model.model)._supports_attention_backend is True
    assert type(model)._supports_attention_backend is True


@pytest.mark.parametrize("model_type", MODELS)
def test_rule_4_a_saved_folder_names_its_base_model_in_auto_map(model_type: str, tmp_path: Path) -> None:
    """What a training run's `save_pretrained` writes: `auto_map.AutoModel` (vLLM loads the base model from it) next to
    the head's Auto class, with the code file it names."""
    model = tiny(model_type)
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    module, name = auto_map["AutoModel"].split(".")
    assert (
        name == type(model.model).__name__ and auto_map["AutoModelForCausalLM"] == f"{module}.{type(model).__name__}"
    )
    assert (tmp_path / f"{module}.py").is_file()


def matching(model: nn.Module, pattern: str) -> list[nn.Module]:
    regex = re.compile(re.escape(pattern).replace(r"\*", r"\d+") + "$")
    return [module for name, module in model.named_modules() if regex.match(name)]


@pytest.mark.parametrize("model_type", MODELS)
def test_rule_5_the_tensor_parallel_plan_names_real_linear_layers(model_type: str) -> None:
    from transformers.integrations.tensor_parallel import ALL_PARALLEL_STYLES

    model = tiny(model_type)
    plan = model.config.base_model_tp_plan
    assert plan and type(model)._tp_plan == {"lm_head": "colwise_rep"}
    for pattern, style in {**plan}.items():
        layers = matching(model.model, pattern)
        assert len(layers) == model.config.num_hidden_layers, pattern
        assert all(isinstance(layer, nn.Linear) for layer in layers), pattern
        assert style in ALL_PARALLEL_STYLES and style in VLLM_STYLES, style
    # The fused q|k|v projection must not be split by plain columns (a shard would hold q and part of k).
    assert plan["layers.*.self_attn.qkv_proj"] == "colwise_rep"


@pytest.mark.parametrize("model_type", MODELS)
def test_rule_5_the_split_mlp_and_attention_compute_the_same_function(model_type: str) -> None:
    """Two simulated ranks: the MLP split column-then-row and summed, and the attention with its q|k|v projection
    split by columns and gathered, its output projection split by rows and summed, equal the whole layers."""
    model = tiny(model_type)
    layer = model.model.layers[0]
    hidden = torch.randn(1, 5, 32)
    with torch.no_grad():
        mlp = layer.mlp
        halves = [slice(0, 32), slice(32, 64)]
        split = sum(
            nn.functional.linear(mlp.act_fn(nn.functional.linear(hidden, mlp.up_proj.weight[h], mlp.up_proj.bias[h])),
                                 mlp.down_proj.weight[:, h])
            for h in halves
        ) + mlp.down_proj.bias  # fmt: skip
        torch.testing.assert_close(split, mlp(hidden))
        attention = layer.self_attn
        whole, _ = attention(hidden)
        qkv = attention.qkv_proj
        gathered = torch.cat(
            [nn.functional.linear(hidden, qkv.weight[h], qkv.bias[h]) for h in (slice(0, 48), slice(48, 96))], dim=-1
        )
        torch.testing.assert_close(gathered, qkv(hidden))
        o_proj = attention.o_proj
        inner = nn.functional.linear(whole - o_proj.bias, torch.linalg.pinv(o_proj.weight))  # the input of o_proj
        rows = sum(nn.functional.linear(inner[..., h], o_proj.weight[:, h]) for h in (slice(0, 16), slice(16, 32)))
        torch.testing.assert_close(rows + o_proj.bias, whole, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("model_type", MODELS)
def test_rule_6_the_pipeline_plan_covers_the_base_models_children(model_type: str) -> None:
    model = tiny(model_type)
    plan = model.config.base_model_pp_plan
    children = dict(model.model.named_children())
    assert set(plan) == {"embed_tokens", "layers", "norm"} and set(plan) <= set(children)
    assert [name for name, child in children.items() if isinstance(child, nn.ModuleList)] == ["layers"]
    assert plan["layers"] == (["hidden_states", "attention_mask"], ["hidden_states"])
    assert type(model)._pp_plan == {"lm_head": (["hidden_states"], ["logits"])}
    # the layer's forward takes what the plan says it takes
    parameters = inspect.signature(type(model.model.layers[0]).forward).parameters
    assert all(name in parameters for name in plan["layers"][0])


TP_SCRIPT = """
import os, sys, torch
import lmforge
from lmforge.models import AksisForCausalLM
model = AksisForCausalLM.from_pretrained(sys.argv[1], tp_plan="auto")
whole = AksisForCausalLM.from_pretrained(sys.argv[1])
ids = torch.tensor([[5, 6, 7, 8, 9]])
with torch.no_grad():
    difference = (model(input_ids=ids).logits - whole(input_ids=ids).logits).abs().max()
sharded = type(model.model.layers[0].mlp.up_proj.weight).__name__
# one file per rank: the two processes share stdout, where their lines can interleave
with open(os.path.join(sys.argv[2], "rank" + os.environ["RANK"] + ".txt"), "w") as out:
    out.write(str(float(difference)) + " " + sharded)
"""


@pytest.mark.slow
def test_tensor_parallel_from_pretrained_under_torchrun_on_cpu(tmp_path: Path) -> None:
    """`from_pretrained(tp_plan="auto")` in 2 CPU processes (torchrun, gloo): the weights are sharded (DTensors) and
    the logits are the unsharded model's."""
    import os
    import subprocess
    import sys

    tiny("aksis").save_pretrained(tmp_path / "model")
    (tmp_path / "tp.py").write_text(TP_SCRIPT)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(tmp_path / "tp.py"),
    ]
    result = subprocess.run(
        [*command, str(tmp_path / "model"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = [(tmp_path / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]
    assert len(results) == 2 and all(float(diff) < 1e-5 and kind == "DTensor" for diff, kind in results), results
