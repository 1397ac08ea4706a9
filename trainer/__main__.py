"""`python -m trainer ...`: the command-line entry point of the ShieldDiff core."""

import sys

from .cli import main

sys.exit(main())
