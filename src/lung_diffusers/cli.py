"""The ``lung-diffusers`` command: one entry point, one subcommand per task.

Each subcommand lives in its own module, which defines ``register(subparsers)``: it adds its parser(s) with
``subparsers.add_parser(...)`` and sets ``func`` (``set_defaults(func=run)``), a function of the parsed arguments
that returns an exit code (or `None` for 0). To add a subcommand (e.g. ``synthesize``), add its module to
:data:`COMMAND_MODULES`. Command modules import torch and diffusers inside ``func`` only, so ``--help`` is quick.

Errors are one line on stderr, with the exit code of the failure: 2 bad input (a missing file, wrong values),
1 a failure to write, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from . import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "lung_diffusers.data.slice_export",
    "lung_diffusers.inpainting.commands",
    "lung_diffusers.synthesis.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lung-diffusers",
        description="Synthetic lung CT slices with diffusion models. Every image it writes is marked synthetic.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    try:
        code = args.func(args)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as error:
        parser.exit(2, f"{prog}: error: {error}\n")
    except OSError as error:
        parser.exit(1, f"{prog}: error: could not write the output: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted\n")
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
