"""How every command of lung-diffusers ends: exit status, error line and ``--debug``.

The ``lung-diffusers`` subcommands, ``python -m lung_diffusers.demo``, ``python -m lung_diffusers.convert_sdm``,
``dataset_scripts/prepare_luna16.py`` and the ``training/`` scripts all run their work through
:func:`run_command`, so they fail the same way:

- **0** success (or the status the work returns, e.g. 1 when every scan of a dataset run failed).
- **2** usage: the command cannot run as given, and changing the command fixes it. argparse's own errors, and
  the work's `ValueError` (bad values, unreadable or mismatched inputs, an output folder that would lose files),
  `TypeError`, `FileNotFoundError`, `FileExistsError`, `NotADirectoryError` and `IsADirectoryError`.
- **1** any other error: a failed write (disk full, no permission), a missing optional dependency, a failure
  while sampling or training. The line names the exception's class, as it may be a bug.
- **130** Ctrl-C, with a line saying what is left (e.g. "rerun to resume") instead of a traceback.

An error is one line on stderr, ``PROG: error: MESSAGE`` (``error: MESSAGE`` for commands without a ``prog``).
``--debug`` on the command line (every command's parser takes it: :func:`add_debug_argument`) or
``LUNG_DIFFUSERS_DEBUG=1`` prints the full traceback before that line; the exit status stays the same.

This module is the bottom layer: the standard library only, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

DEBUG_FLAG = "--debug"
DEBUG_ENV = "LUNG_DIFFUSERS_DEBUG"

USAGE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _DebugFlag(argparse.Action):
    """``--debug``: accepted and left out of the parsed arguments, as :func:`run_command` reads the command line."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pass


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` the ``--debug`` flag and return it. :func:`run_command` reads the flag from the command line
    itself (so even an error while checking the arguments shows its traceback); it never appears in the parsed
    arguments, so settings files written from them (e.g. ``training_args.json``) do not change."""
    parser.add_argument(
        DEBUG_FLAG, action=_DebugFlag, help=f"on an error, show the full traceback (or set {DEBUG_ENV}=1)"
    )
    return parser


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """Whether ``argv`` (``None``: this process's command line) holds ``--debug`` before any ``--``, or the
    environment sets ``LUNG_DIFFUSERS_DEBUG`` to anything but empty, 0, false or no."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    words = list(sys.argv[1:] if argv is None else argv)
    return DEBUG_FLAG in words[: words.index("--") if "--" in words else len(words)]


def run_command(
    work: Callable[[], int | None],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    interrupted: str = "interrupted",
) -> int:
    """Call ``work`` and return the command's exit status (see the module docstring), printing one line on
    stderr for an error or Ctrl-C. ``work`` returns the status itself, or ``None`` for 0.

    Args:
        work: the command's work, usually ``lambda: main(args)`` or ``lambda: main(parse_args(argv))``.
        argv: the command line searched for ``--debug`` (``None``: ``sys.argv[1:]``; ``()``: only the
            environment decides).
        prog: the command's name, which starts every line (argparse's ``parser.prog``).
        interrupted: the line for Ctrl-C, e.g. how to resume.

    argparse's ``SystemExit`` (``--help``, a usage error: status 2 with its own message) passes through.
    """
    try:
        status = work()
    except KeyboardInterrupt as error:
        caught, code, message = error, EXIT_INTERRUPTED, interrupted
    except USAGE_ERRORS as error:
        caught, code, message = error, EXIT_USAGE, f"error: {_one_line(error)}"
    except Exception as error:
        detail = f"{type(error).__name__}: {_one_line(error)}" if str(error) else type(error).__name__
        hint = f"(rerun with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)"
        caught, code, message = error, EXIT_ERROR, f"error: {detail} {hint}"
    else:
        return EXIT_OK if status is None else int(status)
    if debug_requested(argv):
        traceback.print_exception(caught)
    print(f"{prog}: {message}" if prog else message, file=sys.stderr, flush=True)
    return code


def _one_line(error: BaseException) -> str:
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
