"""`python -m dsilab` is the `dsilab` command."""
import sys

from .cli import main

sys.exit(main())
