"""The `bpfman` command: a thin client of the daemon's JSON-RPC API.

Every subcommand becomes one method call (`request.build_request`); the result
is printed as tables for people (`render`) or, with ``-o json``, as the raw
result for scripts. `bpfman daemon ...` runs the daemon instead (`main`).

Modules, in the order a command line crosses them: `parser` (argparse tree,
examples), `args` and `attachopts` (typed values; attach options generated
from the plugins' parameter classes), `rawopts` (``--key value`` for types
without a schema here), `request`, `images` (commands that run locally:
image build, load-from-image), `render`, `main`; `completion` (shell
completion, computed at TAB time from the same parsers).

Exit status: 0 success, 1 the daemon answered with an error, 2 usage error
or the daemon could not be reached.

This package imports only `bpfman` itself (already imported as its parent):
`bpfman --version` is answered with it alone (docs/performance.md).
"""

from bpfman import __version__

VERSION_TEXT = f"bpfman {__version__}"
