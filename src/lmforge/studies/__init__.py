"""Studies that run on lmforge, beside the library: they use its public API and nothing in the library uses them.

- `forgetting`: catastrophic forgetting of full fine-tuning, LoRA and a routed mixture of adapters
  (`lmforge forgetting RECIPE.yaml`).
- `routing`: the routed mixture of LoRA adapters (`AdapterRouter`, `RoutedAdapterModel`).
"""
