"""Package names imported on first use (PEP 562), as diffusers does, so that importing a package stays cheap."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from importlib import import_module


def lazy_exports(
    package: str, exports: dict[str, str], namespace: MutableMapping
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package: ``exports`` maps each name to its module (relative to ``package``
    when it starts with a dot); a name, once resolved, is cached in ``namespace`` (the package's ``globals()``)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name], package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
