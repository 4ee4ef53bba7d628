"""Training recipes (`<model_type>/<recipe>.yaml`), accelerate configs and lm-eval tasks; installed as the package
`lmforge.recipes`, so that `lmforge quickstart` finds its recipe in an installed lmforge too."""
