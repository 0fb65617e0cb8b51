"""Old import paths of names that moved: each use warns with diffusers' ``deprecate()`` and gets the name from its
new home, so code written against an older lung-diffusers keeps working until the removal version."""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from importlib import import_module

from ._deprecation import REMOVAL_VERSION


def moved_names(
    old_module: str, new_module: str, names: Iterable[str], namespace: MutableMapping
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``old_module``, whose ``names`` now live in ``new_module``.

    Unlike :func:`lung_diffusers._lazy.lazy_exports`, nothing is cached in ``namespace``: every use warns, not
    only the first one of a process.
    """
    moved = frozenset(names)

    def __getattr__(name: str):
        if name not in moved:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        # Imported here: diffusers pulls in torch, which the data recipe's worker processes never need.
        from ._deprecation import deprecate

        deprecate(
            f"{old_module}.{name}",
            REMOVAL_VERSION,
            f"Import {name} from {new_module} instead.",
            stacklevel=3,  # the line that imported or used the old name
        )
        return getattr(import_module(new_module), name)

    def __dir__() -> list[str]:
        return sorted(set(namespace) | moved)

    return __getattr__, __dir__
