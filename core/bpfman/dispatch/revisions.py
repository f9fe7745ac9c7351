"""An attach point's pin directory: one ``rev_<n>`` subdirectory per rebuild.

A rebuild pins the new chain in revision n+1, swaps it in, then removes the
older revisions; a crash in between leaves at most two, and the highest one
the interface runs is the live one.
"""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class Revisions:
    root: Path = attrs.field(converter=Path)

    def existing(self) -> list[tuple[int, Path]]:
        """(revision, directory) in increasing order."""
        out = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name.startswith("rev_") and entry.name[4:].isdigit():
                    out.append((int(entry.name[4:]), entry))
        return sorted(out)

    def next(self) -> tuple[int, Path]:
        """The revision a rebuild creates now, and its directory (not made)."""
        existing = self.existing()
        rev = (existing[-1][0] if existing else 0) + 1
        return rev, self.root / f"rev_{rev}"
