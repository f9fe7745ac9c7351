"""The manager: the only part of the daemon that combines the store, the
kernel and the plugins.

Every public method is one API call. Each runs synchronously in the daemon's
kernel lane (one worker thread at a time), so kernel mutations and store
transactions never interleave. A mutation follows one pattern:

    with ExitStack() as undo:          # inverse of every kernel change
        with store.transaction():      # one sqlite transaction
            ... kernel changes, each registering its inverse on `undo` ...
        undo.pop_all()                 # committed: keep the kernel changes

so a failure anywhere leaves neither a record without its kernel object nor a
kernel object without its record. Observers are told after the commit.
"""

from __future__ import annotations

from bpfman.manager.mutations import Mutations
from bpfman.manager.reconcile import Reconcile
from bpfman.manager.views import Views


class Manager(Mutations, Views, Reconcile):
    """Every public method is one API method (bound by `bpfman.rpc.methods`);
    `mutations`, `views` and `reconcile` hold them by concern."""


__all__ = ["Manager"]
