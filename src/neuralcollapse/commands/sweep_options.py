"""The options every sweeping command shares (``--jobs``, ``--launcher`` ...) and the
sweep they describe. Light to import: ``--help`` must stay instant."""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from neuralcollapse.errors import UsageError

if TYPE_CHECKING:
    from neuralcollapse.sweep import Sweep

__all__ = ["add_launcher_options", "make_sweep", "sigterm_interrupts"]


def add_launcher_options(parser: argparse.ArgumentParser) -> None:
    """``--jobs`` and ``--launcher`` with their options (compare and reproduce)."""
    group = parser.add_argument_group(
        "running the runs",
        "Runs are identified by their config and seed: the same command again reuses every "
        "finished run, resumes interrupted ones and trains only what is missing.",
    )
    group.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs at once on this machine, each in its own process on cores/N threads "
        "(default 1; same results as 1); with --launcher slurm and no SLURM, the local jobs",
    )
    group.add_argument(
        "--launcher",
        choices=("local", "ray", "slurm"),
        default="local",
        help="local processes (default), Ray tasks (extra 'ray') or SLURM jobs through "
        "submitit (extra 'slurm'; submitit's local executor where SLURM is absent)",
    )
    group.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster to use (default: start a local one)"
    )
    group.add_argument("--partition", metavar="NAME", help="SLURM partition")
    group.add_argument(
        "--time", type=int, default=24 * 60, metavar="MIN", help="SLURM time limit per run (min)"
    )
    group.add_argument(
        "--gpus-per-run",
        type=float,
        metavar="N",
        help="GPUs per run for Ray/SLURM (default: 1 when train.device is cuda, else 0)",
    )
    group.add_argument(
        "--cpus-per-run",
        type=int,
        metavar="N",
        help="CPUs per run for Ray/SLURM (default: train.num_threads, 1 under auto)",
    )
    group.add_argument(
        "--array-parallelism",
        type=int,
        default=256,
        metavar="N",
        help="SLURM: at most N runs of a job array at once (default 256)",
    )


def make_sweep(args: argparse.Namespace, runs_dir: Path, out: Path) -> Sweep:
    """The :class:`~neuralcollapse.sweep.Sweep` the launcher options describe, with
    progress lines on stdout."""
    from neuralcollapse.sweep import Progress, Sweep
    from neuralcollapse.sweep.launchers import make_launcher

    for name in ("jobs", "time", "array_parallelism", "cpus_per_run"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise UsageError(f"--gpus-per-run must be >= 0, got {args.gpus_per_run}")
    launcher = make_launcher(
        args.launcher,
        jobs=args.jobs,
        out=out,
        ray_address=args.ray_address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        partition=args.partition,
        time_min=args.time,
        array_parallelism=args.array_parallelism,
    )
    return Sweep(runs_dir, launcher, progress=Progress(lambda line: print(line, flush=True)))


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside, SIGTERM (a scheduler's or ``kill``'s stop) interrupts like Ctrl-C, so that
    what finished is written before the process ends."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
