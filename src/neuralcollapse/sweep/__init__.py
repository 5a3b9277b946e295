"""Sweeps: many training runs, each identified by its config, trained once and in parallel.

``compare`` and ``reproduce`` train through this package; it works from Python too::

    from neuralcollapse.sweep import RunSpec, Sweep
    from neuralcollapse.sweep.launchers import make_launcher
    from neuralcollapse.train.config import load_config

    specs = [RunSpec(load_config("configs/digits_lt.yaml", [f"train.seed={s}"])) for s in range(3)]
    with Sweep("runs/mine", make_launcher("local", jobs=2)) as sweep:
        results = sweep.run(specs)  # in the order of specs; finished runs are reused

See :mod:`neuralcollapse.sweep.core` (identity, reuse, resume), :mod:`.launchers` (this
process, local processes, Ray, SLURM through submitit), :mod:`.progress` and
:mod:`.suites` (the papers' grids for ``reproduce --suite``).
"""

from neuralcollapse.sweep.core import (
    NOT_IDENTITY,
    RunResult,
    RunSpec,
    RunsPending,
    Sweep,
    execute_run,
    finished_run,
    run_dir_name,
    run_key,
)
from neuralcollapse.sweep.progress import Progress

__all__ = [
    "NOT_IDENTITY",
    "Progress",
    "RunResult",
    "RunSpec",
    "RunsPending",
    "Sweep",
    "execute_run",
    "finished_run",
    "run_dir_name",
    "run_key",
]
