"""Every pin path the daemon uses is built here, and nowhere else.

Layout under the daemon's bpffs root (default /run/bpfman/fs):
    prog_<program id>                  a loaded program
    maps/<map owner id>/<map name>     maps of the object whose first program is the owner
    links/<link id>                    a link, named by our link id (not a random number)
    dispatchers/...                    multi-prog dispatchers (XDP/TC plugins)

libbpf rewrites '.' in pin paths to '_', so no directory here contains a dot.
"""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class Bpffs:
    root: Path = attrs.field(converter=Path)

    def program_pin(self, program_id: int) -> Path:
        return self.root / f"prog_{program_id}"

    @property
    def maps_root(self) -> Path:
        return self.root / "maps"

    def maps_dir(self, map_owner_id: int) -> Path:
        return self.maps_root / str(map_owner_id)

    def map_pin(self, map_owner_id: int, map_name: str) -> Path:
        return self.maps_dir(map_owner_id) / map_name

    @property
    def links_root(self) -> Path:
        return self.root / "links"

    def link_pin(self, link_id: int) -> Path:
        return self.links_root / str(link_id)

    @property
    def dispatchers_root(self) -> Path:
        return self.root / "dispatchers"

    def dispatcher_dir(self, kind: str, netns_id: int, device: str | int) -> Path:
        """Pins of one multi-prog attach point (``device``: interface name or
        index): ``rev_<n>/`` per revision."""
        return self.dispatchers_root / kind / f"{netns_id}_{device}"

    def ensure_dirs(self) -> None:
        for d in (self.maps_root, self.links_root, self.dispatchers_root):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
