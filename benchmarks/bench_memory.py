"""Claim: the default job's peak memory (resident set) stays close to that of a hand-written
loop training the same model on the same data.

Each side runs in its own fresh Python process, one after the other, ``--rounds`` times:

* "trainer": ``neuralcollapse train`` on the recipe (default ``digits_lt``) into a
  temporary run directory, as ``make demo`` runs it (report included unless
  ``log.report=false`` is given);
* "hand loop": the minimal loop of ``bench_epoch_overhead.py`` over the same model, data,
  loss, optimiser and schedule, for the same number of epochs;
* "import torch": a process that imports torch and the package and stops (the floor
  every side pays).

The peak resident set of each side is ``ru_maxrss`` of ``RUSAGE_CHILDREN`` (KiB on Linux)
read by a small measuring process that starts only that one child, so no other process's
peak can hide it.

    python benchmarks/bench_memory.py [--config digits_lt] [--rounds 3] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

HAND_LOOP = """
import sys
sys.path.insert(0, {here!r})
from bench_epoch_overhead import hand_loop_seconds
from neuralcollapse.train import load_config
from neuralcollapse.train.recipes import resolve_config_path
config = load_config(resolve_config_path({config!r}), {overrides!r})
hand_loop_seconds(config, config.train.epochs)
"""

IMPORT_ONLY = "import torch, neuralcollapse.train.trainer"


def one_side(command: list[str]) -> float:
    """Peak MiB of ``command`` in a fresh measuring process (so that earlier children's
    peaks cannot hide a smaller one)."""
    code = (
        "import resource, subprocess, sys\n"
        f"subprocess.run({command!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="digits_lt")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = ["train.device=cpu", "log.progress=off", *args.overrides]
    print(
        f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, cpus {os.cpu_count()}, python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"config {args.config} {' '.join(overrides)}")
    sides = {"trainer": [], "hand loop": [], "import torch": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            train = [sys.executable, "-m", "neuralcollapse", "train", "--config", args.config]
            train += [*overrides, "--run-dir", str(Path(tmp) / "run")]
            sides["trainer"].append(one_side(train))
        hand = HAND_LOOP.format(here=str(HERE), config=args.config, overrides=overrides)
        sides["hand loop"].append(one_side([sys.executable, "-c", hand]))
        sides["import torch"].append(one_side([sys.executable, "-c", IMPORT_ONLY]))
    floor = min(sides["import torch"])
    for name, values in sides.items():
        best = min(values)
        print(
            f"{name:<13} peak RSS {best:7.1f} MiB (rounds: "
            f"{', '.join(f'{v:.1f}' for v in values)}); above import: {best - floor:6.1f} MiB"
        )
    print(f"trainer / hand loop: {min(sides['trainer']) / min(sides['hand loop']):.3f}x")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
