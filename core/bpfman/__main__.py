"""`python -m bpfman` is the `bpfman` command."""

import sys

from bpfman.cli.main import main

sys.exit(main())
