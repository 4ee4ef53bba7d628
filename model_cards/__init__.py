"""Model card templates, one per architecture (installed as the package `lmforge.model_cards`)."""
