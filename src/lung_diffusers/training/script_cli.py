"""The command-line wrapper the scripts in ``training/`` share: :func:`lung_diffusers.command_line.run_command`."""

from __future__ import annotations

from collections.abc import Callable

from ..command_line import run_command


def run_script(run: Callable[[], object], interrupted: str = "interrupted") -> int:
    """Call ``run`` (parse the arguments, then do the work) through :func:`~lung_diffusers.command_line.run_command`
    and return the exit status: 0 on success (whatever ``run`` returns); 2 with an ``error: ...`` line for bad
    input; 1 with one line for another error; 130 on Ctrl-C, printing ``interrupted`` (e.g. how to resume).
    ``LUNG_DIFFUSERS_DEBUG=1`` shows the traceback (a script whose parser has
    :func:`~lung_diffusers.command_line.add_debug_argument` should call ``run_command`` with its ``argv`` instead,
    which also reads ``--debug``)."""

    def work() -> None:
        run()

    return run_command(work, (), interrupted=interrupted)


def json_ready(value):
    """A report made JSON-ready: numpy scalars to Python, keys to strings, NaN or infinity (a figure undefined,
    e.g. the AUROC of a slice without a lesion) to null; dicts, lists and tuples converted all the way down."""
    import numpy as np

    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
