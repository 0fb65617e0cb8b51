"""``deprecate()`` keyed on lung-diffusers' own version.

diffusers' ``deprecate`` compares the removal version with *diffusers'* version, so our shims, all due for
removal in lung-diffusers 1.0.0, would start raising the day diffusers reached 1.0.0. This one warns the same
way (a `FutureWarning` naming what to use instead) and raises only once lung-diffusers itself reaches the version.
"""

from __future__ import annotations

import re
import warnings

REMOVAL_VERSION = "1.0.0"


def deprecate(name: str, removal_version: str, message: str, standard_warn: bool = True, stacklevel: int = 2) -> None:
    """Warn that ``name`` goes away in lung-diffusers ``removal_version``; an error once that version is here.

    Args:
        name: what is deprecated (a module, a function, an import path).
        removal_version: the lung-diffusers version that removes it.
        message: what to use instead.
        standard_warn: prefix "``name`` is deprecated and will be removed in version X." (as diffusers does).
        stacklevel: as :func:`warnings.warn` (2: the caller of ``deprecate``), as diffusers' ``deprecate``.
    """
    from . import __version__

    if _release(__version__) >= _release(removal_version):
        raise ValueError(
            f"{name} was to be removed in lung-diffusers {removal_version}, and this is {__version__}: remove the shim"
        )
    prefix = f"`{name}` is deprecated and will be removed in version {removal_version}. " if standard_warn else ""
    warnings.warn(prefix + message, FutureWarning, stacklevel=stacklevel)


def _release(version: str) -> tuple[int, ...]:
    """``"0.1.0.dev0"`` -> ``(0, 1, 0)``: the release numbers, pre-release tags ignored."""
    return tuple(int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group(0).split("."))
