"""``python -m lsr.lucene ARGS``: Anserini's IndexCollection in a process of its own (what the builds run)."""

import sys

from lsr.lucene.java import _main

_main(sys.argv[1:])
