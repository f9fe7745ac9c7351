"""`python -m bpfman` is the `bpfman` command."""

import sys

from bpfman.cli import main

sys.exit(main())
