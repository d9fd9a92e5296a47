"""`python -m ctrdistill`: the command line (torchrun launches it this way)."""

import sys

from ctrdistill.cli import main

sys.exit(main())
