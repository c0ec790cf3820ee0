"""``python -m lsr``: the same as the `lsr` command."""

import sys

from lsr.cli import main

sys.exit(main())
