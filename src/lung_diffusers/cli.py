"""The ``lung-diffusers`` command: one entry point, one subcommand per task.

Each subcommand lives in its own module, which defines ``register(subparsers)``: it adds its parser(s) with
``subparsers.add_parser(...)`` and sets ``func`` (``set_defaults(func=run)``), a function of the parsed arguments
that returns an exit code (or `None` for 0), and may set ``interrupted``, the line printed on Ctrl-C (e.g. how to
resume). To add a subcommand (e.g. ``synthesize``), add its module to :data:`COMMAND_MODULES`. Command modules
import torch and diffusers inside ``func`` only, so ``--help`` is quick.

Every subcommand ends through :func:`lung_diffusers.command_line.run_command`: one line on stderr for an error,
exit status 2 for bad input (a missing file, wrong values), 1 for other failures (e.g. a failed write), 130 when
interrupted; ``--debug`` (before or after the subcommand) shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from . import __version__
from .command_line import add_debug_argument, run_command

COMMAND_MODULES: tuple[str, ...] = (
    "lung_diffusers.data.slice_export",
    "lung_diffusers.evaluation.commands",
    "lung_diffusers.evaluation.downstream.command",
    "lung_diffusers.inpainting.commands",
    "lung_diffusers.synthesis.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lung-diffusers",
        description="Synthetic lung CT slices with diffusion models. Every image it writes is marked synthetic.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_debug_argument(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        import_module(module).register(subparsers)
    for subparser in {id(p): p for p in subparsers.choices.values()}.values():  # an alias maps to its parser
        add_debug_argument(subparser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    interrupted = getattr(args, "interrupted", "interrupted")
    sys.exit(run_command(lambda: args.func(args), argv, prog=f"{parser.prog} {args.command}", interrupted=interrupted))


if __name__ == "__main__":
    main()
