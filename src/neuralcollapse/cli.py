"""The ``neuralcollapse`` command line.

Each subcommand lives in its own module under :mod:`neuralcollapse.commands`, exposing

* ``add_parser(subparsers) -> argparse.ArgumentParser`` to declare its arguments, and
* ``run(args: argparse.Namespace) -> int`` to execute (returns the exit code).

Bad input is reported as one line on stderr with exit code 2, never a traceback: command
code raises :class:`ValueError` (or :class:`FileNotFoundError`) with a message that names
the offending value and the fix, and :func:`main` turns it into that line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from neuralcollapse import __version__

# Order here is the order shown in --help.
COMMANDS = ("train", "eval", "compare", "metrics", "frame", "ufm", "report")

EXIT_USAGE = 2


def _available_commands() -> list:
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"neuralcollapse.commands.{name}"))
        except ModuleNotFoundError as exc:
            # A command whose module is not part of this build is simply not offered;
            # a missing third-party dependency inside a real module must still surface.
            if exc.name != f"neuralcollapse.commands.{name}":
                raise
    return modules


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as a single line naming the problem and where to look, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(
        prog="neuralcollapse",
        description="Fixed-frame classifiers, their losses and neural-collapse metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _available_commands():
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may also come after the options (argparse only gathers the first
    # run of positionals); anything else left over is an error as usual.
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    target = "overrides" if hasattr(args, "overrides") else "configs"
    if extra and (len(overrides) != len(extra) or not hasattr(args, target)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        setattr(args, target, [*getattr(args, target), *overrides])
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError) as exc:
        print(f"neuralcollapse {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"neuralcollapse {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
