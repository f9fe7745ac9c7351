"""Names a package exports but imports on first use, through the package's
module-level ``__getattr__``: `bpfman` (the CLI imports it and is timed) and
the `bpfman.kernel` facade (plugins import a name or two; the CLI imports the
plugins to build `attach` options)."""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` is not imported: see bpfman/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


def loader(package: str, names: Mapping[str, tuple[str, str]], namespace: dict[str, Any], *,
           submodules: bool = False) -> Callable[[str], Any]:
    """The ``__getattr__`` of `package`: ``names`` maps an exported name to
    (module, name in it); a loaded value is kept in `namespace` (the package's
    globals) so later lookups skip this. With `submodules`, another name is
    tried as a submodule (``kernel.pins``)."""

    def __getattr__(name: str) -> Any:
        import importlib

        where = names.get(name)
        if where is None:
            if submodules:
                try:
                    return importlib.import_module(f"{package}.{name}")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{package}.{name}":
                        raise  # a submodule failing to import is that, not a missing name
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(where[0]), where[1])
        namespace[name] = value
        return value

    return __getattr__
