"""`python -m lmforge ...` is the `lmforge` command."""

import sys

from .cli.main import main

sys.exit(main())
