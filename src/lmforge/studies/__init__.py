"""Studies that run on lmforge, beside the library: they use its public API and nothing in the library uses them.

- `forgetting`: catastrophic forgetting of full fine-tuning, LoRA and a routed mixture of adapters
  (`lmforge forgetting RECIPE.yaml`).
- `sampling`: decoding strategies compared on diversity, repetition and reference perplexity
  (`lmforge sampling-study --model-path DIR`).
- `routing`: the routed mixture of LoRA adapters (`AdapterRouter`, `RoutedAdapterModel`).
"""
