"""The command-line wrapper the scripts in ``training/`` share: :func:`lung_diffusers.command_line.run_command`."""

from __future__ import annotations

from collections.abc import Callable

from ..command_line import run_command
from ..evaluation.report_json import json_ready  # noqa: F401 (its old home)


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
