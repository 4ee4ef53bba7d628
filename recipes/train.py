"""Train any lmforge model from a YAML recipe through the HF Trainer.

    accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/train.py recipes/aksis/shakespeare.yaml
    accelerate launch --config_file accelerate_config.yaml recipes/train.py recipes/aksis/wikitext2.yaml  # GPU, fp16

Any recipe key can be overridden on the command line: `... recipes/aksis/shakespeare.yaml --max_steps 50`.
"""

import sys

from lmforge.training import main

if __name__ == "__main__":
    sys.exit(main())
