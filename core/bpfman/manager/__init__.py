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
from bpfman.rpc.methods import Binding


class Manager(Mutations, Views, Reconcile):
    """The API's handlers, by concern in `mutations`, `views` and `reconcile`;
    `bindings` says which implements which method."""

    def bindings(self) -> dict[str, Binding]:
        """API method -> its handler here (signatures: `bpfman.rpc.methods`)."""
        maps, images = self.maps, self.images
        return {
            "program.load": Binding(self.load, prepare=images.prepare_load),
            "program.unload": Binding(self.unload),
            "program.attach": Binding(self.attach),
            "program.detach": Binding(self.detach),
            "program.get": Binding(self.get_program),
            "program.list": Binding(self.list_programs),
            "link.get": Binding(self.get_link),
            "link.list": Binding(self.list_links),
            "link.update": Binding(self.update_link),
            "dispatcher.list": Binding(self.list_dispatchers),
            "map.list": Binding(maps.list),
            "map.get": Binding(maps.get),
            "map.dump": Binding(maps.dump),
            "map.update": Binding(maps.update),
            "map.delete": Binding(maps.delete),
            "image.pull": Binding(images.pull),
            "image.list": Binding(images.list),
            "image.inspect": Binding(images.inspect),
            "image.remove": Binding(images.remove),
            "plugin.list": Binding(self.list_plugins, inline=True),
            "daemon.reconcile": Binding(self.reconcile_now),
            "daemon.info": Binding(self.info, inline=True),
        }


__all__ = ["Manager"]
