"""The ``neuralcollapse`` command line.

Each subcommand lives in its own module under :mod:`neuralcollapse.commands`, exposing

* ``add_parser(subparsers) -> argparse.ArgumentParser`` to declare its arguments, and
* ``run(args: argparse.Namespace) -> int`` to execute (returns the exit code).

:data:`COMMANDS` lists them with a one-line help each, so ``neuralcollapse --help`` and
``--version`` import no command module (no torch, numpy or yaml either); only the chosen
command's module is imported, and its parser parses the arguments. Command modules in
turn import their heavy dependencies (torch, the trainer, matplotlib) inside ``run``, so
that ``neuralcollapse COMMAND --help`` imports only what its help shows.
benchmarks/bench_startup.py measures both.

``KEY=VALUE`` overrides may come before or after a command's options: argparse gathers
only the first run of positionals, so :func:`main` hands the later ones (recognised by
:func:`neuralcollapse.config.split_overrides`) to the command's ``overrides`` argument,
or to ``configs`` for ``compare``.

Errors: :class:`~neuralcollapse.errors.UsageError` (bad input, including
:class:`~neuralcollapse.errors.ConfigError`) and :class:`OSError` (a missing file, a full
disk, ...) become one line on stderr and exit status 2;
:class:`~neuralcollapse.errors.RunFailed` one line and status 1; Ctrl-C status 130. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from neuralcollapse._version import __version__
from neuralcollapse.errors import RunFailed, UsageError

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

# (name, one-line help, module): the order here is the order shown in --help.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    (
        "train",
        "train a config (default: the embedded digits long-tailed demo)",
        "neuralcollapse.commands.train",
    ),
    ("eval", "re-evaluate a run directory or checkpoint", "neuralcollapse.commands.eval"),
    (
        "export",
        "export a run's model: weights, config and preprocessing",
        "neuralcollapse.commands.export",
    ),
    (
        "compare",
        "train variants of configs over paired seeds and compare them",
        "neuralcollapse.commands.compare",
    ),
    (
        "metrics",
        "neural-collapse metrics (NC1-NC4) of saved features",
        "neuralcollapse.commands.metrics",
    ),
    ("frame", "build a fixed class frame and print its geometry", "neuralcollapse.commands.frame"),
    (
        "ufm",
        "unconstrained feature model: simulate, or reproduce the theory",
        "neuralcollapse.commands.ufm",
    ),
    ("report", "write an HTML report of run directories", "neuralcollapse.commands.report"),
    (
        "reproduce",
        "verdicts on the papers' claims, paired seeds",
        "neuralcollapse.commands.reproduce",
    ),
)

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

# Errors that can only come from writing (a full disk, a read-only file system, a quota).
_WRITE_ERRNOS = {
    getattr(errno, name) for name in ("ENOSPC", "EROFS", "EDQUOT", "EFBIG") if hasattr(errno, name)
}


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as a single line naming the problem and where to look, exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see 'PROG --help')`` and exit with status 2.

        The message can echo what the user typed, line breaks and all (``\\n``, or
        separators such as ``\\x1e`` that ``str.splitlines`` breaks on): they are folded
        into single spaces, so it stays one line."""
        line = _one_line(message)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {line} (see '{self.prog} --help')\n")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option (the top-level
    parser has no option that takes a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(
    command: str | None = None,
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser | None]:
    """The top-level parser, and the parser of ``command`` (None when not a command).

    Every command is listed (with its help from :data:`COMMANDS`); only ``command``'s
    module is imported, to declare its real arguments.
    """
    parser = _OneLineErrorParser(
        prog="neuralcollapse",
        description="Fixed-frame classifiers, their losses and neural-collapse metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    chosen = None
    for name, help_text, module_name in COMMANDS:
        if name == command:
            module = importlib.import_module(module_name)
            chosen = module.add_parser(subparsers)
            chosen.set_defaults(_run=module.run)
        else:
            subparsers.add_parser(name, help=help_text, description=help_text)
    return parser, chosen


def _describe_os_error(exc: OSError) -> str:
    """One line naming the path and the operating system's reason."""
    if exc.filename is None or exc.strerror is None:
        return str(exc)
    path = str(exc.filename)
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    verb = "write" if exc.errno in _WRITE_ERRNOS else "access"
    return f"cannot {verb} {path}: [Errno {exc.errno}] {exc.strerror}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _StderrHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up at each record, so a replaced
    stream, as under test capture, is followed)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


def _log_to_stderr() -> None:
    """Show the library's warnings (logger "neuralcollapse") on stderr, once per process;
    an application that configured that logger itself keeps its own handlers."""
    logger = logging.getLogger("neuralcollapse")
    if any(getattr(h, "_neuralcollapse_cli", False) for h in logger.handlers):
        return
    if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    handler._neuralcollapse_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Argument errors, ``--help`` and ``--version`` exit through :class:`SystemExit`, as
    argparse does. Ctrl-C at any point (while modules load, while data loads, before the
    first epoch) is one line and status 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    prefix = f"neuralcollapse {_chosen_command(argv) or ''}".rstrip()
    with _InterruptWatch() as watch:
        try:
            code = _main(argv)
        except KeyboardInterrupt as exc:
            return _interrupted(prefix, _one_line(str(exc)))
        except Exception:
            if not watch.seen:
                raise
            # A Ctrl-C that a library swallowed while it loaded (an import interrupted
            # half-way) and that broke it later: the interrupt is the cause, not a bug.
            return _interrupted(prefix, "")
    if watch.seen and code == 0:
        return _interrupted(prefix, "a library lost the interrupt, so the command ran on")
    return code


def _interrupted(prefix: str, detail: str) -> int:
    said = f": {detail}" if detail else ""
    print(f"{prefix}: interrupted (Ctrl-C){said}", file=sys.stderr)
    return EXIT_INTERRUPTED


class _InterruptWatch:
    """Inside, Ctrl-C raises KeyboardInterrupt as usual and is also remembered, so that
    one a library swallows (Python ignores exceptions in some import callbacks) still
    ends the command with status 130. Installed only where Python's own handler is (the
    main thread; not where SIGINT is ignored or handled by the caller)."""

    def __init__(self) -> None:
        self.seen = False
        self._previous: object = None

    def __enter__(self) -> _InterruptWatch:
        import signal
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def _on_interrupt(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc_info: object) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _main(argv: list[str]) -> int:
    parser, command_parser = build_parser(_chosen_command(argv))
    args, extra = parser.parse_known_args(argv)
    # After parsing: --help and --version have exited, without the config machinery.
    from neuralcollapse.config import split_overrides

    overrides, unknown = split_overrides(extra)
    target = next((t for t in ("overrides", "configs") if hasattr(args, t)), None)
    reporter = command_parser or parser
    if unknown:
        reporter.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        if target is None:
            reporter.error(f"unrecognized arguments: {' '.join(overrides)}")
        setattr(args, target, [*(getattr(args, target) or []), *overrides])
    prefix = f"neuralcollapse {args.command}"
    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{prefix}: error: {_one_line(_describe_os_error(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as exc:
        print(f"{prefix}: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
